// Synthetic clusters for controller_bench: a large cluster of varied hosts with a stream of
// varied VMs to place, and small clusters whose load is skewed in known shapes for the
// rebalancer. Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/model/cluster_view.h"

namespace flotilla::bench {

// Hosts (ready, reporting, no VMs), networks and pools; `vms` to place in this order.
struct PlacementWorkload {
  controller::ClusterView view;
  std::vector<controller::VmView> vms;
};

// Hosts of 16..96 CPUs and 64..512 GiB in 4 zones, 30% with ssd=yes, two CPU vendors, half
// reaching the "fast" pool; VMs of 1..16 vCPUs and 1..32 GiB, some with zone, ssd, cpu model
// or pool constraints, 5% in anti-affinity groups of 10 and 5% in affinity groups of 10.
PlacementWorkload placementWorkload(uint32_t hosts, uint32_t vms, uint64_t seed);

enum class SkewShape {
  kHotspot,   // every tenth host at 90% memory, the others at 45%
  kRamp,      // host i at 10% + 80% * i / (hosts - 1)
  kNewHosts,  // the last fifth of the hosts empty (just added), the others at 70%
  kCpuHot,    // memory even at 50%; every sixth host runs CPU-hungry VMs (~90% CPU)
  kBigVms,    // the ramp with VMs of 16..64 GiB (up to half a small host)
  kMixedCpu,  // the ramp, every fifth host (the least loaded among them) with another CPU
              // vendor: VMs with cpu model "host" move live only between hosts of one vendor
};
const char* shapeName(SkewShape shape);

// Hosts alternately of 32 CPUs / 128 GiB and 64 CPUs / 256 GiB, filled with running VMs of
// 2..16 GiB (kBigVms: 16..64 GiB) to the shape's memory level; every VM's record, status and
// agent report agree.
controller::ClusterView skewedCluster(SkewShape shape, uint32_t hosts, uint64_t seed);

}  // namespace flotilla::bench
