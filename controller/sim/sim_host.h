// SimHost: one simulated host: its inventory, its VMs in memory with the real agent's
// semantics (node-agent/vm_manager.h, docs/agent.md: idempotent create by name + uid and
// spec, NotFound-is-OK delete, both ends of a live migration with roles), memory accounting,
// and the HostStatus its agent would report. No process, tap or cgroup is made: a "running"
// VM is a record whose CPU and memory use are fixed by a hash of its name.
//
// Every method takes the host's lock for its whole run; the migration registry is the only
// thing called with it held (its lock is a leaf), so hosts never wait on each other.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/sim/sim_options.h"
#include "flotilla/v1/agent.pb.h"

namespace flotilla::sim {

class SimFleet;

class SimHost {
 public:
  SimHost(SimFleet& fleet, std::string name, HostShape shape);
  SimHost(const SimHost&) = delete;
  SimHost& operator=(const SimHost&) = delete;

  const std::string& name() const { return name_; }
  const HostShape& shape() const { return shape_; }

  // AgentService, as the real agent answers it.
  absl::StatusOr<flotilla::v1::AgentVm> createVm(const flotilla::v1::CreateVmRequest& request);
  absl::StatusOr<flotilla::v1::AgentVm> startVm(std::string_view name);
  absl::StatusOr<flotilla::v1::AgentVm> stopVm(std::string_view name);
  absl::Status deleteVm(std::string_view name);
  absl::StatusOr<flotilla::v1::AgentVm> getVm(std::string_view name);
  std::vector<flotilla::v1::AgentVm> listVms();
  absl::StatusOr<flotilla::v1::PrepareIncomingResponse> prepareIncoming(
      const flotilla::v1::PrepareIncomingRequest& request);
  absl::Status startMigration(const flotilla::v1::StartMigrationRequest& request);
  absl::StatusOr<flotilla::v1::MigrationStatus> migrationStatus(std::string_view name);
  absl::StatusOr<flotilla::v1::AgentVm> finishMigration(
      std::string_view name, flotilla::v1::MigrationEndRequest::Role role);
  absl::StatusOr<flotilla::v1::AgentVm> abortMigration(
      std::string_view name, flotilla::v1::MigrationEndRequest::Role role);

  // What the agent reports: inventory, load, VMs, addresses, the lease (setLeaseId) and now
  // as updated_unix_ms.
  flotilla::v1::HostStatus status();
  // The etcd lease the host's status is bound to (0: none yet).
  void setLeaseId(int64_t lease);

  // Fault injection. powerOff: the host is gone (its VMs with it, its migrations fail);
  // powerOn: it boots again, and its agent finds the VMs that ran Failed, as the real agent
  // does when their VMMs went away while it was not running.
  void powerOff();
  void powerOn();
  bool alive() const;

  // Whether `name` is defined here (running, stopped or incoming).
  bool hasVm(std::string_view name) const;

  // Memory of the VMs whose VMM runs (or would run: Creating, Running, Paused, Migrating,
  // incoming), the figure CreateVm/StartVm/PrepareIncoming check against the host's memory.
  uint64_t memoryInUse();

 private:
  struct Vm {
    flotilla::v1::AgentVm vm;
    bool want_running = false;
    absl::Duration running_since;  // monotonic, while the VMM runs
    uint64_t cpu_ns_before = 0;    // CPU time of earlier runs
    bool migrating_out = false;    // the migration away completed: Stopped, "migrated away"
    std::string outgoing_token;    // the migration this VM is the source of, until it ends
    std::string incoming_token;    // the migration this VM is the target of
    std::string incoming_address;
    flotilla::v1::MigrationStatus last_migration;
  };

  static bool vmmRuns(const Vm& vm);
  Vm* findLocked(std::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Vm*> lookupLocked(std::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies the progress of migrations (a source whose migration completed is Stopped, an
  // incoming VM whose migration failed is Failed).
  void settleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void settleVmLocked(Vm& vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t memoryInUseLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ResourceExhausted when `memory_bytes` more do not fit.
  absl::Status checkMemoryLocked(std::string_view vm, uint64_t memory_bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Validates a create or prepare request and fills the AgentVm (NICs with MACs and taps,
  // disks), as the real agent's newRecord does.
  absl::StatusOr<flotilla::v1::AgentVm> newVm(
      std::string_view name, std::string_view uid, const flotilla::v1::VmSpec& spec,
      const google::protobuf::RepeatedPtrField<flotilla::v1::NetworkBinding>& networks,
      const google::protobuf::RepeatedPtrField<std::string>& macs) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The VMM starts (Running, or Migrating for an incoming VM) / ends.
  void launchLocked(Vm& vm, bool incoming) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void endVmmLocked(Vm& vm, flotilla::v1::VmState state, std::string message, std::string last_exit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends this VM's part in its migrations: the peer sees it fail with `reason`.
  void dropMigrationsLocked(Vm& vm, std::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The AgentVm with its current usage.
  flotilla::v1::AgentVm snapshotLocked(const Vm& vm) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SimFleet& fleet_;
  const std::string name_;
  const HostShape shape_;
  mutable absl::Mutex mu_;
  bool alive_ ABSL_GUARDED_BY(mu_) = true;
  int64_t lease_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Vm, std::less<>> vms_ ABSL_GUARDED_BY(mu_);
  uint32_t next_migration_port_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::sim
