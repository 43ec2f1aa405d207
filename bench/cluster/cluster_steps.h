// cluster_bench's steps (docs/simulator.md "cluster_bench"): placement rate against an etcd
// baseline, leader failover, and HA restart of a killed host's VMs. Each step returns rows of
// the result table; a step fails only when a measurement itself could not be made (a call
// failed, nothing progressed for a minute), never because a target was missed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/cluster/controller_replicas.h"
#include "bench/cluster/vm_status_tracker.h"
#include "common/etcd/client.h"
#include "controller/sim/simulator.h"

namespace flotilla::bench {

struct ClusterBenchOptions {
  int hosts = 1000;
  int vms = 20000;     // the placement step's backlog
  int api_vms = 2000;  // then created through ClusterService.CreateVm
  int clients = 16;    // client threads creating VMs (and writing the etcd baseline)
  int failover_rounds = 3;
  int ha_vms = 10;
  bool quick = false;
  std::string only;                 // "": every step; placement, failover or ha
  bool without_controller = false;  // the simulator and the etcd baseline only
  std::string controller_binary;
  // 1s: this bench's etcd runs with a 500 ms election timeout, so it grants 1 s leases.
  absl::Duration election_ttl = absl::Seconds(1);
  absl::Duration host_lease_ttl = absl::Seconds(5);
  absl::Duration host_fence_timeout = absl::Seconds(5);
  // A wait fails when nothing changed for this long.
  absl::Duration stall = absl::Seconds(60);
};

// What every step works with.
struct BenchCluster {
  etcd::EtcdClient* etcd = nullptr;
  sim::Simulator* sim = nullptr;
  ControllerReplicas* controllers = nullptr;  // nullptr: without_controller
  VmStatusTracker* tracker = nullptr;
};

// One line of the result table.
struct ResultRow {
  std::string step;
  std::string what;
  std::string value;
  std::string peer = "-";    // the peer's figure measured in the same run, or a floor
  std::string ratio = "-";   // value / peer
  std::string target = "-";  // e.g. ">= 2000/s"
  std::string verdict;       // "met", "MISSED" or ""
};

struct StepResult {
  std::vector<ResultRow> rows;
  std::vector<std::string> notes;
};

// The etcd baseline alone (without_controller) or with the controller: a backlog of `vms`
// pending VMs placed by a leader that starts, then `api_vms` created through
// ClusterService.CreateVm(start=true) from `clients` threads, until all are placed and Running.
absl::StatusOr<StepResult> runPlacementStep(BenchCluster& cluster,
                                            const ClusterBenchOptions& options);
// kill -9 of the leader among 3 replicas: time to a new leader and to a VM created after the
// kill being placed, `failover_rounds` times.
absl::StatusOr<StepResult> runFailoverStep(BenchCluster& cluster,
                                           const ClusterBenchOptions& options);
// A simulated host with `ha_vms` HA VMs killed: time until they all run on other hosts.
absl::StatusOr<StepResult> runHaStep(BenchCluster& cluster, const ClusterBenchOptions& options);

// Prints rows as a fixed-width table.
std::string formatResults(const std::vector<ResultRow>& rows);

}  // namespace flotilla::bench
