// VmManager: the agent's VMs. It creates, starts, stops and deletes them, one flotilla-vmm
// process each, supervises those processes (an exit is noticed through the VMM's pidfd at
// once), keeps a record of every VM on disk and re-attaches to the VMMs that kept running
// when the agent restarts, and carries out both ends of a live migration. It reports and
// executes; it never decides (placement, retries and HA are the controller's).
//
// Every operation on one VM is serialized; operations on different VMs run concurrently.
// A failed create or start leaves nothing behind: no record, tap, port, cgroup or process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "flotilla/v1/agent.pb.h"
#include "flotilla/v1/agent_state.pb.h"
#include "node-agent/host_resources.h"
#include "node-agent/vm_record_store.h"

namespace flotilla::agent {

struct VmManagerOptions {
  std::string vmm_binary;
  std::string run_dir;    // per-VM api socket, serial log and VMM log: RUN_DIR/vms/NAME/
  std::string state_dir;  // records: STATE_DIR/vms/NAME.pb
  std::string migration_address = "127.0.0.1";  // where incoming VMMs listen
  uint32_t migration_port_first = 7200;
  uint32_t migration_port_last = 7299;
  absl::Duration stop_grace = absl::Seconds(10);
  // How long a started VMM may take to serve its API before the start counts as failed.
  absl::Duration start_timeout = absl::Seconds(10);
  // Memory above the guest's that the VM's cgroup allows for the VMM itself.
  uint64_t vmm_memory_overhead_bytes = uint64_t{256} << 20;
};

class VmManager {
 public:
  // Loads the records and re-attaches to the VMMs still running; VMs whose VMM went away
  // meanwhile become Failed (or Stopped, when they were not meant to run).
  static absl::StatusOr<std::unique_ptr<VmManager>> create(VmManagerOptions options,
                                                           VmNetwork& network, VmStorage& storage,
                                                           VmCgroups& cgroups);
  ~VmManager();  // stops supervising; the VMMs keep running
  VmManager(const VmManager&) = delete;
  VmManager& operator=(const VmManager&) = delete;

  absl::StatusOr<flotilla::v1::AgentVm> createVm(const flotilla::v1::CreateVmRequest& request);
  absl::StatusOr<flotilla::v1::AgentVm> startVm(std::string_view name);
  absl::StatusOr<flotilla::v1::AgentVm> stopVm(std::string_view name, absl::Duration grace);
  absl::Status deleteVm(std::string_view name);
  absl::StatusOr<flotilla::v1::AgentVm> getVm(std::string_view name);
  std::vector<flotilla::v1::AgentVm> listVms();
  absl::StatusOr<flotilla::v1::ConsoleLogResponse> consoleLog(
      const flotilla::v1::ConsoleLogRequest& request);

  // Migration endpoints (AgentService). prepareOutgoing (on the source, first) readies the
  // VM's volumes for the target's VMM (DRBD: two primaries allowed); idempotent, a no-op for
  // other pools.
  absl::Status prepareOutgoing(std::string_view name);
  absl::StatusOr<flotilla::v1::PrepareIncomingResponse> prepareIncoming(
      const flotilla::v1::PrepareIncomingRequest& request);
  absl::Status startMigration(const flotilla::v1::StartMigrationRequest& request);
  absl::StatusOr<flotilla::v1::MigrationStatus> migrationStatus(std::string_view name);
  absl::StatusOr<flotilla::v1::AgentVm> finishMigration(
      std::string_view name, flotilla::v1::MigrationEndRequest::Role role);
  absl::StatusOr<flotilla::v1::AgentVm> abortMigration(
      std::string_view name, flotilla::v1::MigrationEndRequest::Role role);

  // Self-fencing: kills the VMM of every HA VM at once (SIGKILL; no grace: the controller
  // restarts them elsewhere soon). Returns how many were killed.
  int fenceHaVms(std::string_view reason);

  // Refreshes every running VM's usage (CPU time, RSS, cgroup memory; cpu_cores over the time
  // since the last refresh) for the host report.
  void refreshUsage();

 private:
  struct Entry;

  VmManager(VmManagerOptions options, VmNetwork& network, VmStorage& storage, VmCgroups& cgroups,
            VmRecordStore store, std::unique_ptr<EventLoop> loop);

  std::shared_ptr<Entry> find(std::string_view name);
  absl::StatusOr<std::shared_ptr<Entry>> lookup(std::string_view name);
  absl::Status reattach(const flotilla::v1::AgentVmRecord& record);

  // Validates the request and fills a new record (NICs named and MACs chosen, disks resolved;
  // iSCSI disks carry the VM's generation, which fences older copies off their LUNs).
  absl::StatusOr<flotilla::v1::AgentVmRecord> newRecord(
      std::string_view name, std::string_view uid, const flotilla::v1::VmSpec& spec,
      const google::protobuf::RepeatedPtrField<flotilla::v1::NetworkBinding>& networks,
      const google::protobuf::RepeatedPtrField<std::string>& macs, uint64_t generation);
  // Taps and ports, cgroup; undone on failure.
  absl::Status provision(const flotilla::v1::AgentVmRecord& record);
  void unprovision(const flotilla::v1::AgentVmRecord& record);
  // unprovision(), then the record and the map entry go: the VM is no longer on this host.
  absl::Status forget(const flotilla::v1::AgentVmRecord& record);
  // Readies the VM's volumes on this host (DRBD: primary; for an incoming migration, two
  // primaries allowed first), then spawnVmm(); a failed start undoes the volumes' step.
  absl::Status launch(Entry& entry, std::string_view incoming, std::string_view token);
  // Spawns the VMM for `entry` (its op lock held) and waits until it serves its API.
  absl::Status spawnVmm(Entry& entry, std::string_view incoming, std::string_view token);
  absl::Status stopLocked(Entry& entry, absl::Duration grace);
  // Waits (bounded) until onExit has recorded the VMM's exit.
  void waitPidfdClosed(Entry& entry);
  // Waits up to `timeout` for the VMM to exit, and then until its exit is recorded.
  void waitForExit(Entry& entry, absl::Duration timeout);
  void watchExit(const std::shared_ptr<Entry>& entry);
  void onExit(const std::shared_ptr<Entry>& entry);
  absl::Status save(Entry& entry);
  std::string vmDir(std::string_view name) const;
  // Where the VMM writes the final status of a migration out (flotilla-vmm
  // --migration-status): its API is gone by the time the controller asks.
  std::string migrationStatusPath(std::string_view name) const;
  absl::StatusOr<uint16_t> pickMigrationPort();

  const VmManagerOptions options_;
  VmNetwork& network_;
  VmStorage& storage_;
  VmCgroups& cgroups_;
  VmRecordStore store_;
  const Logger log_;
  absl::Mutex mu_;
  // Held from picking an incoming migration's port until its entry shows the port, so that
  // two migrations into this host at once never get the same one.
  absl::Mutex port_mu_;
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> vms_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<EventLoop> loop_;  // pidfds of the VMMs; last: stopped first
};

}  // namespace flotilla::agent
