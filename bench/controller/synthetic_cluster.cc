// Synthetic clusters for controller_bench (see synthetic_cluster.h).
#include "bench/controller/synthetic_cluster.h"

#include <random>
#include <vector>

#include "fmt/format.h"

namespace flotilla::bench {
namespace {

constexpr uint64_t kGiB = 1024ull * 1024 * 1024;

// rng() % n: the same sequence on every standard library (the distributions are not).
uint64_t below(std::mt19937_64& rng, uint64_t n) {
  return rng() % n;
}
bool chance(std::mt19937_64& rng, uint32_t percent) {
  return below(rng, 100) < percent;
}
double uniform(std::mt19937_64& rng, double low, double high) {
  return low + (high - low) * static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

controller::HostView& addHost(controller::ClusterView& view, const std::string& name, uint32_t cpus,
                              uint64_t memory_gib, bool epyc) {
  controller::HostView& host = view.hosts[name];
  host.name = name;
  host.record.mutable_meta()->set_name(name);
  host.record.set_state(v1::HOST_STATE_READY);
  v1::HostStatus status;
  status.set_name(name);
  v1::HostInventory& inventory = *status.mutable_inventory();
  inventory.set_cpus(cpus);
  inventory.set_memory_bytes(memory_gib * kGiB);
  inventory.set_cpu_model_name(epyc ? "AMD EPYC 7302" : "Intel Xeon Gold 6230");
  for (const char* flag : {"sse4_2", "avx", "avx2", "aes", "popcnt"}) inventory.add_cpu_flags(flag);
  inventory.add_cpu_flags(epyc ? "sse4a" : "avx512f");
  inventory.add_cpu_models("host");
  inventory.add_cpu_models("baseline-v1");
  if (!epyc) inventory.add_cpu_models("skylake-v4");
  inventory.add_pools("shared");
  host.status = std::move(status);
  return host;
}

v1::VmRecord vmRecord(const std::string& name, uint32_t vcpus, uint64_t memory_gib,
                      const std::string& network) {
  v1::VmRecord record;
  record.mutable_meta()->set_name(name);
  v1::VmSpec& spec = *record.mutable_spec();
  spec.set_vcpus(vcpus);
  spec.set_memory_bytes(memory_gib * kGiB);
  spec.set_cpu_model("host");
  spec.set_migration_policy(v1::MIGRATION_POLICY_LIVE);
  spec.add_nics()->set_network(network);
  v1::DiskSpec& disk = *spec.add_disks();
  disk.set_pool("shared");
  disk.set_volume(name + "-root");
  record.set_want_running(true);
  return record;
}

void commonObjects(controller::ClusterView& view) {
  for (const char* network : {"net-a", "net-b"}) {
    view.networks[network].mutable_meta()->set_name(network);
  }
  for (const char* name : {"shared", "fast"}) {
    v1::PoolRecord& pool = view.pools[name];
    pool.mutable_meta()->set_name(name);
    pool.set_type(v1::POOL_TYPE_ISCSI);
    pool.set_shared(true);
  }
}

}  // namespace

PlacementWorkload placementWorkload(uint32_t hosts, uint32_t vms, uint64_t seed) {
  std::mt19937_64 rng(seed);
  PlacementWorkload workload;
  commonObjects(workload.view);
  struct Size {
    uint32_t cpus;
    uint64_t memory_gib;
  };
  const Size sizes[] = {{16, 64}, {32, 128}, {48, 256}, {64, 384}, {96, 512}};
  for (uint32_t i = 0; i < hosts; ++i) {
    const Size& size = sizes[below(rng, std::size(sizes))];
    bool epyc = chance(rng, 30);
    controller::HostView& host =
        addHost(workload.view, fmt::format("host-{:04}", i), size.cpus, size.memory_gib, epyc);
    auto& labels = *host.record.mutable_meta()->mutable_labels();
    labels["zone"] = fmt::format("z{}", i % 4);
    if (chance(rng, 30)) labels["ssd"] = "yes";
    if (chance(rng, 50)) host.status->mutable_inventory()->add_pools("fast");
  }

  const uint32_t vcpu_choices[] = {1, 2, 2, 4, 4, 4, 8, 8, 16};
  const uint64_t memory_choices[] = {1, 2, 2, 4, 4, 8, 8, 16, 32};
  workload.vms.reserve(vms);
  for (uint32_t i = 0; i < vms; ++i) {
    controller::VmView vm;
    vm.name = fmt::format("vm-{:05}", i);
    vm.record = vmRecord(vm.name, vcpu_choices[below(rng, std::size(vcpu_choices))],
                         memory_choices[below(rng, std::size(memory_choices))],
                         chance(rng, 50) ? "net-a" : "net-b");
    v1::VmPlacement& placement = *vm.record.mutable_placement();
    if (chance(rng, 10)) (*placement.mutable_host_labels())["zone"] = fmt::format("z{}", i % 4);
    if (chance(rng, 5)) (*placement.mutable_host_labels())["ssd"] = "yes";
    if (chance(rng, 10)) vm.record.mutable_spec()->set_cpu_model("skylake-v4");
    if (chance(rng, 20)) {
      v1::DiskSpec& data = *vm.record.mutable_spec()->add_disks();
      data.set_pool("fast");
      data.set_volume(vm.name + "-data");
    }
    // Groups of 10: VMs i = 20k+1 share "aa-<i/200>", VMs i = 20k+2 share "af-<i/200>".
    if (i % 20 == 1) placement.set_anti_affinity_group(fmt::format("aa-{}", i / 200));
    if (i % 20 == 2) placement.set_affinity_group(fmt::format("af-{}", i / 200));
    vm.status.set_state(v1::VM_STATE_PENDING);
    workload.vms.push_back(std::move(vm));
  }
  return workload;
}

const char* shapeName(SkewShape shape) {
  switch (shape) {
    case SkewShape::kHotspot:
      return "hotspot";
    case SkewShape::kRamp:
      return "ramp";
    case SkewShape::kNewHosts:
      return "new-hosts";
    case SkewShape::kCpuHot:
      return "cpu-hot";
    case SkewShape::kBigVms:
      return "big-vms";
    case SkewShape::kMixedCpu:
      return "mixed-cpu";
  }
  return "?";
}

controller::ClusterView skewedCluster(SkewShape shape, uint32_t hosts, uint64_t seed) {
  std::mt19937_64 rng(seed);
  controller::ClusterView view;
  commonObjects(view);
  const std::vector<uint64_t> memory_choices = shape == SkewShape::kBigVms
                                                   ? std::vector<uint64_t>{16, 32, 32, 64}
                                                   : std::vector<uint64_t>{2, 4, 4, 8, 8, 16};
  uint32_t vm_count = 0;
  for (uint32_t i = 0; i < hosts; ++i) {
    bool big = i % 2 == 1;
    bool epyc = shape == SkewShape::kMixedCpu && i % 5 == 0;
    std::string name = fmt::format("host-{:02}", i);
    controller::HostView& host = addHost(view, name, big ? 64 : 32, big ? 256 : 128, epyc);
    double level = 0;
    bool cpu_hungry = false;
    switch (shape) {
      case SkewShape::kHotspot:
        level = i % 10 == 0 ? 0.9 : 0.45;
        break;
      case SkewShape::kRamp:
      case SkewShape::kBigVms:
      case SkewShape::kMixedCpu:
        level = 0.1 + 0.8 * i / std::max<uint32_t>(1, hosts - 1);
        break;
      case SkewShape::kNewHosts:
        level = i >= hosts - hosts / 5 ? 0 : 0.7;
        break;
      case SkewShape::kCpuHot:
        level = 0.5;
        cpu_hungry = i % 6 == 0;
        break;
    }
    const uint32_t cpus = host.status->inventory().cpus();
    const uint64_t capacity = host.status->inventory().memory_bytes();
    uint64_t used = 0;
    double cores = 0.02 * cpus;  // the host's own load
    uint32_t running = 0;
    while (true) {
      uint64_t memory_gib = memory_choices[below(rng, memory_choices.size())];
      if (static_cast<double>(used + memory_gib * kGiB) > level * static_cast<double>(capacity)) {
        break;
      }
      uint32_t vcpus = static_cast<uint32_t>(std::max<uint64_t>(1, memory_gib / 2));
      double usage = vcpus * (cpu_hungry ? uniform(rng, 0.85, 0.95) : uniform(rng, 0.1, 0.6));
      std::string vm_name = fmt::format("vm-{:04}", vm_count++);
      controller::VmView& vm = view.vms[vm_name];
      vm.name = vm_name;
      vm.record = vmRecord(vm_name, vcpus, memory_gib, "net-a");
      vm.status.set_state(v1::VM_STATE_RUNNING);
      vm.status.set_host(name);
      v1::HostVm& reported = *host.status->add_vms();
      reported.set_name(vm_name);
      reported.set_state(v1::VM_STATE_RUNNING);
      reported.set_memory_bytes(memory_gib * kGiB);
      reported.set_vcpus(vcpus);
      reported.mutable_usage()->set_cpu_cores(usage);
      used += memory_gib * kGiB;
      cores += usage;
      ++running;
    }
    v1::HostLoad& load = *host.status->mutable_load();
    load.set_cpu_busy(std::min(1.0, cores / cpus));
    load.set_vm_memory_bytes(used);
    load.set_memory_available_bytes(capacity - used);
    load.set_vms_running(running);
  }
  return view;
}

}  // namespace flotilla::bench
