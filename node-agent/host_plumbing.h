// HostPlumbing: the agent's hands on its host, built from its configuration: the VMs' taps
// and Open vSwitch ports (network/ovs.h), the VXLAN tunnels to the other hosts, the storage
// pools (storage/pool.h), the VMs' cgroups (node-agent/host/cgroup.h), and the host's
// inventory and load for its report. It implements the VmManager's VmNetwork, VmStorage and
// VmCgroups.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/command.h"
#include "common/etcd/client.h"
#include "common/log.h"
#include "flotilla/v1/agent.pb.h"
#include "network/ovs.h"
#include "node-agent/config.h"
#include "node-agent/host/cgroup.h"
#include "node-agent/host/host_info.h"
#include "node-agent/host_resources.h"
#include "node-agent/pool_storage.h"
#include "storage/pool.h"

namespace flotilla::agent {

class HostPlumbing final : public VmNetwork, public VmStorage, public VmCgroups {
 public:
  // Opens the cgroup hierarchy, makes the integration bridge (and the underlay bridge when
  // configured) and opens every pool. Errors name the part and say what to fix.
  static absl::StatusOr<std::unique_ptr<HostPlumbing>> open(const AgentConfig& config);
  ~HostPlumbing() override;

  VmNetwork& network() { return *this; }
  VmStorage& storage() { return *this; }
  VmCgroups& cgroups() { return *this; }

  // VmNetwork
  absl::Status plug(const flotilla::v1::AgentNic& nic, const VmIdentity& vm) override;
  absl::StatusOr<UniqueFd> openTap(const flotilla::v1::AgentNic& nic) override;
  absl::Status unplug(const flotilla::v1::AgentNic& nic) override;
  // Removes Flotilla's VM ports (and their taps) that belong to none of `vms`; returns their
  // names. For the agent's start, after the VMs were loaded.
  absl::StatusOr<std::vector<std::string>> removeStalePorts(
      const std::vector<flotilla::v1::AgentVm>& vms);

  // VmStorage (PoolStorage's)
  absl::StatusOr<std::string> diskOption(std::string_view pool, std::string_view volume) override;
  absl::Status activate(std::string_view pool, std::string_view volume) override;
  absl::Status deactivate(std::string_view pool, std::string_view volume) override;
  absl::Status shareForMigration(std::string_view pool, std::string_view volume,
                                 bool shared) override;
  storage::VolumePool* pool(std::string_view name);
  // Null when the pool is not a DRBD pool of this host.
  storage::DrbdPool* drbdPool(std::string_view name);

  // VmCgroups
  absl::Status create(std::string_view vm, uint32_t vcpus, uint64_t memory_limit_bytes) override;
  absl::Status addProcess(std::string_view vm, int pid) override;
  absl::StatusOr<CgroupUsageSample> usage(std::string_view vm) override;
  absl::Status remove(std::string_view vm) override;

  // Inventory and load for the host report (VMs, addresses and lease are filled by others).
  flotilla::v1::HostStatus describe();

  // Keeps one VXLAN tunnel to every other host that reports a tunnel_ip in etcd, checking
  // every `interval`; nothing when this host has no tunnel_ip.
  void startPeerSync(etcd::EtcdClient& etcd, absl::Duration interval);
  void stopPeerSync();
  // One round of it (for tests and the first round at start).
  absl::Status syncPeers(etcd::EtcdClient& etcd);

 private:
  explicit HostPlumbing(const AgentConfig& config) : config_(config), log_("agent.host") {}
  absl::Status init();
  absl::Status openPools();

  const AgentConfig config_;
  const Logger log_;
  SystemCommandRunner runner_;
  std::unique_ptr<CgroupManager> cgroup_manager_;
  std::optional<network::OvsSwitch> ovs_;
  PoolStorage pools_;
  HostInventory inventory_;
  absl::Mutex load_mu_;
  std::optional<CpuTimes> last_cpu_times_ ABSL_GUARDED_BY(load_mu_);
  absl::Notification stop_sync_;
  std::thread sync_thread_;
};

}  // namespace flotilla::agent
