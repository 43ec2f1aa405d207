// Synthetic ClusterViews for the scheduler and rebalancer tests: ready hosts with an
// inventory, VMs placed on them (in the controller's records and in the agent's report),
// networks and pools.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/model/cluster_view.h"

namespace flotilla::controller::testing {

constexpr uint64_t kMiB = 1024ull * 1024;
constexpr uint64_t kGiB = 1024 * kMiB;

class ClusterBuilder {
 public:
  ClusterBuilder() {
    network("net-a");
    pool("shared", v1::POOL_TYPE_ISCSI, true);
  }

  // A ready, schedulable host reporting `cpus` CPUs and `memory_gib` GiB, CPU "Xeon" with
  // flags sse4_2 and avx2, cpu models "host" and "baseline-v1", pool "shared".
  HostView& host(const std::string& name, uint32_t cpus = 16, uint64_t memory_gib = 64) {
    HostView& host = view_.hosts[name];
    host.name = name;
    host.record.mutable_meta()->set_name(name);
    host.record.set_state(v1::HOST_STATE_READY);
    v1::HostStatus status;
    status.set_name(name);
    v1::HostInventory& inventory = *status.mutable_inventory();
    inventory.set_cpus(cpus);
    inventory.set_memory_bytes(memory_gib * kGiB);
    inventory.set_cpu_model_name("Xeon");
    inventory.add_cpu_flags("sse4_2");
    inventory.add_cpu_flags("avx2");
    inventory.add_cpu_models("host");
    inventory.add_cpu_models("baseline-v1");
    inventory.add_pools("shared");
    host.status = status;
    return host;
  }

  // A running VM with `vcpus` and `memory_mib`, placed on `host` ("" for not placed), using
  // `cpu_cores` there (also added to the host's cpu_busy). Its NIC is on net-a, its disk on
  // pool "shared".
  VmView& vm(const std::string& name, const std::string& host, uint32_t vcpus = 1,
             uint64_t memory_mib = 1024, double cpu_cores = 0) {
    VmView& vm = view_.vms[name];
    vm.name = name;
    vm.record.mutable_meta()->set_name(name);
    v1::VmSpec& spec = *vm.record.mutable_spec();
    spec.set_vcpus(vcpus);
    spec.set_memory_bytes(memory_mib * kMiB);
    spec.set_cpu_model("host");
    spec.set_migration_policy(v1::MIGRATION_POLICY_LIVE);
    spec.add_nics()->set_network("net-a");
    v1::DiskSpec& disk = *spec.add_disks();
    disk.set_pool("shared");
    disk.set_volume(name + "-root");
    vm.record.set_want_running(true);
    if (host.empty()) {
      vm.status.set_state(v1::VM_STATE_PENDING);
      return vm;
    }
    vm.status.set_state(v1::VM_STATE_RUNNING);
    vm.status.set_host(host);
    HostView& where = view_.hosts.at(host);
    if (where.status.has_value()) {
      v1::HostVm& reported = *where.status->add_vms();
      reported.set_name(name);
      reported.set_state(v1::VM_STATE_RUNNING);
      reported.set_memory_bytes(memory_mib * kMiB);
      reported.set_vcpus(vcpus);
      reported.mutable_usage()->set_cpu_cores(cpu_cores);
      v1::HostLoad& load = *where.status->mutable_load();
      load.set_cpu_busy(load.cpu_busy() + cpu_cores / where.status->inventory().cpus());
      load.set_vm_memory_bytes(load.vm_memory_bytes() + memory_mib * kMiB);
      load.set_vms_running(load.vms_running() + 1);
    }
    return vm;
  }

  void network(const std::string& name) { view_.networks[name].mutable_meta()->set_name(name); }

  void pool(const std::string& name, v1::PoolType type, bool shared) {
    v1::PoolRecord& pool = view_.pools[name];
    pool.mutable_meta()->set_name(name);
    pool.set_type(type);
    pool.set_shared(shared);
  }

  void cordon(const std::string& host, const std::string& reason = "") {
    view_.hosts.at(host).record.set_cordoned(true);
    view_.hosts.at(host).record.set_cordon_reason(reason);
  }

  void drain(const std::string& host) {
    v1::DrainRecord& drain = view_.drains[host];
    drain.mutable_meta()->set_name(host);
    drain.set_phase(v1::DRAIN_PHASE_RUNNING);
  }

  void migration(const std::string& name, const std::string& vm, const std::string& source,
                 const std::string& target, v1::MigrationPhase phase) {
    v1::MigrationRecord& migration = view_.migrations[name];
    migration.mutable_meta()->set_name(name);
    migration.set_vm(vm);
    migration.set_source(source);
    migration.set_target(target);
    migration.set_phase(phase);
  }

  ClusterView& view() { return view_; }

 private:
  ClusterView view_;
};

}  // namespace flotilla::controller::testing
