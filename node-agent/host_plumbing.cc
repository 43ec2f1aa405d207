// The agent's hands on its host (see host_plumbing.h).
#include "node-agent/host_plumbing.h"

#include <set>

#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "network/mac_address.h"
#include "network/tap.h"
#include "storage/drbd_pool.h"
#include "storage/iscsi_pool.h"
#include "storage/local_dir_pool.h"

namespace flotilla::agent {

absl::StatusOr<std::unique_ptr<HostPlumbing>> HostPlumbing::open(const AgentConfig& config) {
  std::unique_ptr<HostPlumbing> host(new HostPlumbing(config));
  RETURN_IF_ERROR(host->init());
  return host;
}

HostPlumbing::~HostPlumbing() {
  stopPeerSync();
}

absl::Status HostPlumbing::init() {
  ASSIGN_OR_RETURN(inventory_, readHostInventory());
  CgroupOptions cgroup_options;
  cgroup_options.parent = config_.cgroup_parent;
  auto cgroups = CgroupManager::open(cgroup_options);
  if (!cgroups.ok()) return annotate(cgroups.status(), "cgroups");
  cgroup_manager_ = std::move(*cgroups);

  network::OvsSwitchOptions ovs_options;
  ovs_options.db = config_.ovs.db;
  ovs_options.datapath_type = config_.ovs.datapath;
  auto ovs = network::OvsSwitch::create(runner_, ovs_options);
  if (!ovs.ok()) return annotate(ovs.status(), "Open vSwitch");
  ovs_.emplace(std::move(*ovs));
  RETURN_IF_ERROR(annotate(ovs_->ensureIntegrationBridge(config_.ovs.bridge),
                           fmt::format("Open vSwitch bridge {}", config_.ovs.bridge)));
  if (!config_.ovs.underlay_port.empty()) {
    network::UnderlaySpec underlay;
    underlay.bridge = config_.ovs.underlay_bridge;
    underlay.physical_port = config_.ovs.underlay_port;
    underlay.cidr = config_.ovs.underlay_cidr;
    if (!config_.ovs.underlay_hwaddr.empty()) {
      ASSIGN_OR_RETURN(underlay.hwaddr, network::MacAddress::parse(config_.ovs.underlay_hwaddr));
    }
    RETURN_IF_ERROR(annotate(ovs_->ensureUnderlayBridge(underlay),
                             fmt::format("underlay bridge {}", underlay.bridge)));
  }
  return openPools();
}

absl::Status HostPlumbing::openPools() {
  for (const PoolConfig& config : config_.pools) {
    std::unique_ptr<storage::VolumePool> pool;
    if (config.type == "drbd") {
      storage::LoopFileBacking::Options backing_options;
      backing_options.pool = config.name;
      backing_options.directory = config.path;
      backing_options.losetup = config.drbd.losetup;
      ASSIGN_OR_RETURN(auto backing, storage::LoopFileBacking::open(runner_, backing_options));
      storage::DrbdPoolOptions options;
      options.name = config.name;
      options.local = {config.drbd.node.host, config.drbd.node.address, config.drbd.node.node_id};
      options.peer = {config.drbd.peer.host, config.drbd.peer.address, config.drbd.peer.node_id};
      options.resource_dir = config.drbd.resource_dir;
      options.drbdadm = config.drbd.drbdadm;
      options.dry_run = config.drbd.dry_run;
      ASSIGN_OR_RETURN(auto drbd, storage::DrbdPool::open(runner_, options, std::move(backing)));
      // Loop devices and DRBD resources do not survive a reboot: attach and bring up what the
      // resource files describe. A failure is one volume's; the agent starts anyway.
      ASSIGN_OR_RETURN(storage::DrbdReconcileReport report, drbd->reconcile());
      for (const std::string& failure : report.failed) {
        log_.warn("pool {}: {}", config.name, failure);
      }
      pools_.add(std::move(drbd));
      continue;
    }
    if (config.type == "dir") {
      storage::LocalDirPoolOptions options;
      options.name = config.name;
      options.directory = config.path;
      options.create_directory = true;
      ASSIGN_OR_RETURN(pool, storage::LocalDirPool::open(options));
    } else if (config.manage) {
      storage::IscsiPoolOptions options;
      options.name = config.name;
      options.directory = config.path;
      options.create_directory = true;
      options.portal = config.portal;
      options.iqn_prefix = config.iqn_prefix;
      options.tgt_control = config.tgt_instance;
      ASSIGN_OR_RETURN(auto iscsi, storage::IscsiPool::open(runner_, options));
      ASSIGN_OR_RETURN(storage::IscsiReconcileReport report, iscsi->reconcile());
      for (const std::string& failure : report.failed) {
        log_.warn("pool {}: {}", config.name, failure);
      }
      pool = std::move(iscsi);
    } else {
      storage::IscsiPoolClientOptions options;
      options.name = config.name;
      options.portal = config.portal;
      options.iqn_prefix = config.iqn_prefix;
      ASSIGN_OR_RETURN(pool, storage::IscsiPoolClient::open(options));
    }
    pools_.add(std::move(pool));
  }
  return absl::OkStatus();
}

absl::Status HostPlumbing::plug(const flotilla::v1::AgentNic& nic, const VmIdentity& vm) {
  absl::Status created = network::createPersistentTap(nic.tap());
  if (!created.ok() && !absl::IsAlreadyExists(created)) return created;
  if (absl::Status up = network::setLinkUp(nic.tap()); !up.ok()) {
    (void)network::deleteTap(nic.tap());
    return annotate(up, fmt::format("VM '{}' NIC {}", vm.name, nic.tap()));
  }
  auto mac = network::MacAddress::parse(nic.mac());
  if (!mac.ok()) {
    (void)network::deleteTap(nic.tap());
    return annotate(mac.status(), fmt::format("VM '{}' NIC {}", vm.name, nic.tap()));
  }
  network::VmPort port;
  port.bridge = config_.ovs.bridge;
  port.port = nic.port();
  port.vlan_tag = static_cast<uint16_t>(nic.vlan());
  port.vm_id = vm.uid;
  port.interface_id = nic.tap();
  port.mac = *mac;
  absl::Status added = ovs_->addVmPort(port);
  if (!added.ok()) {
    (void)network::deleteTap(nic.tap());
    return annotate(added, fmt::format("VM '{}' NIC {}", vm.name, nic.tap()));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> HostPlumbing::openTap(const flotilla::v1::AgentNic& nic) {
  ASSIGN_OR_RETURN(network::Tap tap, network::Tap::open(nic.tap()));
  return tap.release();
}

absl::Status HostPlumbing::unplug(const flotilla::v1::AgentNic& nic) {
  RETURN_IF_ERROR(ovs_->removePort(config_.ovs.bridge, nic.port()));
  absl::Status deleted = network::deleteTap(nic.tap());
  if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> HostPlumbing::removeStalePorts(
    const std::vector<flotilla::v1::AgentVm>& vms) {
  std::vector<std::string> keep;
  for (const auto& vm : vms) {
    for (const auto& nic : vm.nics()) keep.push_back(nic.port());
  }
  ASSIGN_OR_RETURN(std::vector<std::string> removed,
                   ovs_->removeStalePorts(config_.ovs.bridge, keep));
  for (const std::string& port : removed) {
    absl::Status deleted = network::deleteTap(port);
    if (!deleted.ok() && !absl::IsNotFound(deleted)) {
      log_.warn("cannot delete the stale tap {}: {}", port, deleted.message());
    }
  }
  return removed;
}

storage::VolumePool* HostPlumbing::pool(std::string_view name) {
  return pools_.pool(name);
}

storage::DrbdPool* HostPlumbing::drbdPool(std::string_view name) {
  return pools_.drbdPool(name);
}

absl::StatusOr<std::string> HostPlumbing::diskOption(std::string_view pool_name,
                                                     std::string_view volume) {
  return pools_.diskOption(pool_name, volume);
}

absl::Status HostPlumbing::activate(std::string_view pool_name, std::string_view volume) {
  return pools_.activate(pool_name, volume);
}

absl::Status HostPlumbing::deactivate(std::string_view pool_name, std::string_view volume) {
  return pools_.deactivate(pool_name, volume);
}

absl::Status HostPlumbing::shareForMigration(std::string_view pool_name, std::string_view volume,
                                             bool shared) {
  return pools_.shareForMigration(pool_name, volume, shared);
}

absl::Status HostPlumbing::create(std::string_view vm, uint32_t vcpus,
                                  uint64_t memory_limit_bytes) {
  VmLimits limits;
  limits.cpu_millicores = uint64_t{vcpus} * 1000;
  limits.memory_max_bytes = memory_limit_bytes;
  return cgroup_manager_->createVmGroup(vm, limits).status();
}

absl::Status HostPlumbing::addProcess(std::string_view vm, int pid) {
  return cgroup_manager_->addProcess(vm, pid);
}

absl::StatusOr<CgroupUsageSample> HostPlumbing::usage(std::string_view vm) {
  ASSIGN_OR_RETURN(CgroupUsage usage, cgroup_manager_->usage(vm));
  return CgroupUsageSample{.cpu_time_ns = usage.cpu_ns, .memory_bytes = usage.memory_bytes};
}

absl::Status HostPlumbing::remove(std::string_view vm) {
  return cgroup_manager_->removeVmGroup(vm);
}

flotilla::v1::HostStatus HostPlumbing::describe() {
  flotilla::v1::HostStatus status;
  flotilla::v1::HostInventory& inventory = *status.mutable_inventory();
  inventory.set_cpus(inventory_.cpu_count);
  inventory.set_cpu_model_name(inventory_.cpu_model_name);
  for (const std::string& flag : inventory_.cpu_flags) inventory.add_cpu_flags(flag);
  for (const std::string& model : inventory_.runnableCpuModels()) inventory.add_cpu_models(model);
  inventory.set_memory_bytes(inventory_.memory_total_bytes);
  for (const std::string& name : pools_.names()) inventory.add_pools(name);
  flotilla::v1::HostLoad& load = *status.mutable_load();
  if (auto host_load = readHostLoad(); host_load.ok()) {
    load.set_memory_available_bytes(host_load->memory_available_bytes);
    load.set_load_average_1m(host_load->load1);
  }
  if (auto times = readCpuTimes(); times.ok()) {
    absl::MutexLock lock(&load_mu_);
    if (last_cpu_times_) load.set_cpu_busy(cpuUtilisation(*last_cpu_times_, *times).busy);
    last_cpu_times_ = *times;
  }
  return status;
}

absl::Status HostPlumbing::syncPeers(etcd::EtcdClient& etcd) {
  if (config_.ovs.tunnel_ip.empty()) return absl::OkStatus();
  etcd::RangeOptions options;
  options.prefix = true;
  ASSIGN_OR_RETURN(etcd::RangeResult hosts, etcd.get("/flotilla/v1/hosts-status/", options));
  std::vector<network::TunnelSpec> tunnels;
  for (const auto& kv : hosts.kvs) {
    flotilla::v1::HostStatus peer;
    if (!peer.ParseFromString(kv.value) || peer.name() == config_.host ||
        peer.tunnel_ip().empty()) {
      continue;
    }
    network::TunnelSpec tunnel;
    tunnel.peer_host = peer.name();
    tunnel.remote_ip = peer.tunnel_ip();
    tunnel.local_ip = config_.ovs.tunnel_ip;
    tunnel.vni = config_.ovs.vni;
    tunnels.push_back(std::move(tunnel));
  }
  ASSIGN_OR_RETURN(network::TunnelChanges changes, ovs_->syncTunnels(config_.ovs.bridge, tunnels));
  if (!changes.empty()) {
    log_.info("tunnels: {} added, {} updated, {} removed", changes.added.size(),
              changes.updated.size(), changes.removed.size());
  }
  return absl::OkStatus();
}

void HostPlumbing::startPeerSync(etcd::EtcdClient& etcd, absl::Duration interval) {
  if (config_.ovs.tunnel_ip.empty()) return;
  sync_thread_ = std::thread([this, &etcd, interval] {
    setCurrentThreadName("tunnel-sync");
    LogRateLimiter limiter(systemClock(), 3, absl::Minutes(1));
    do {
      absl::Status status = syncPeers(etcd);
      if (!status.ok()) {
        log_.limited(limiter, LogLevel::kWarn, "cannot sync the VXLAN tunnels: {}",
                     status.message());
      }
    } while (!stop_sync_.WaitForNotificationWithTimeout(interval));
  });
}

void HostPlumbing::stopPeerSync() {
  if (!stop_sync_.HasBeenNotified()) stop_sync_.Notify();
  if (sync_thread_.joinable()) sync_thread_.join();
}

}  // namespace flotilla::agent
