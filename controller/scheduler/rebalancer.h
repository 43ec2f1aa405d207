// The rebalancer's planner (docs/scheduler.md "Rebalance"): an imbalance score from the
// agents' load reports and a greedy plan of live migrations, each the best gain net of its
// cost, with a threshold to start and a hysteresis margin so that VMs do not bounce. Pure
// logic: the controller runs the moves like a drain does.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "controller/model/cluster_view.h"
#include "controller/scheduler/scheduler.h"

namespace flotilla::controller {

struct RebalanceOptions {
  // Plan nothing while the score (standard deviation of host utilisation, 0..1) is at or
  // below this.
  double threshold = 0.1;
  uint32_t max_moves = 10;
  // A plan stops once the score is at or below threshold * target_ratio: a band between the
  // level where rebalancing starts and where it stops, so that the cluster does not hover
  // at the threshold and trigger a new round at every small change of load.
  double target_ratio = 0.5;
  // A margin in utilisation: a move is made only when its gain exceeds its cost plus
  // hysteresis * (the utilisation it takes off its source + the utilisation it adds to its
  // target). Between two hosts of one size that reads: the gap between them must exceed the
  // VM's share, the cost, and this margin; so a misreading of either host's load by less than
  // this cannot make the reverse move pay off (VMs do not bounce).
  double hysteresis = 0.05;
  // The cost of moving a VM, per GiB of its memory (a live migration copies all of it), in
  // the units of the gain (N times the variance of host utilisation).
  double cost_per_gib = 0.0005;
};

// Utilisation of one host that counts in the score, as the rebalancer sees it.
struct HostLoadShare {
  std::string host;
  double cpu = 0;     // busy cores (its VMs' cpu_cores plus the host's own load) / cpus
  double memory = 0;  // memory of its VMs / memory_bytes
  double utilisation() const { return cpu > memory ? cpu : memory; }
};

struct Move {
  std::string vm, source, target;
  double gain = 0;         // imbalance removed, net of the cost (RebalanceMove.gain)
  double cost = 0;         // memory GiB * cost_per_gib
  double score_after = 0;  // the score once this move (and the ones before it) are done
  uint64_t memory_bytes = 0;
};

struct RebalanceResult {
  double score_before = 0;
  double score_after = 0;
  std::vector<Move> moves;
  std::string message;  // why nothing moves, or a summary of the plan
};

// The hosts that count in the score (ready, schedulable, not draining, reporting CPUs and
// memory), sorted by name, with their utilisation from the agents' reports.
std::vector<HostLoadShare> hostLoads(const ClusterView& view);

// The score: the standard deviation of the hosts' utilisation (0 with fewer than 2).
double imbalanceScore(const std::vector<HostLoadShare>& loads);

// Plans moves on a copy of `base` (a Scheduler loaded with `view`): VMs in `recently_moved`
// (cooldown), with an active migration, not running, pinned, with a cold-only migration
// policy or a disk on a local pool never move; cordoned or draining hosts receive nothing;
// every target passes the scheduler's filters for a live migration. Deterministic.
RebalanceResult planRebalance(const ClusterView& view, const Scheduler& base,
                              const RebalanceOptions& options,
                              const std::set<std::string>& recently_moved);

// `view` as it will be once `moves` completed: each VM's entry in its source's report
// (HostStatus.vms, with its CPU use and memory) and its status move to the target. For
// dry-run output, tests and benchmarks.
void applyMoves(ClusterView& view, const std::vector<Move>& moves);

}  // namespace flotilla::controller
