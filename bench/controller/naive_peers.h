// The peers controller_bench measures Flotilla's scheduler and rebalancer against: what a
// straightforward implementation does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "controller/model/cluster_view.h"
#include "controller/scheduler/rebalancer.h"
#include "controller/scheduler/scheduler.h"

namespace flotilla::bench {

// The same filters and score as controller::Scheduler (host schedulable, labels, CPU model,
// pools, anti-affinity, memory and vCPUs with overcommit; spread or pack; affinity first;
// ties to the first host by name), but it keeps no counters: every placement recomputes
// each host's use and group members by scanning all placed VMs. It serves fresh placements
// of the workload (no networks, pins or live migrations to check).
class NaiveScheduler {
 public:
  NaiveScheduler(controller::SchedulerOptions options, const controller::ClusterView& view);
  std::optional<std::string> place(const v1::VmRecord& record) const;
  void assign(const v1::VmRecord& record, const std::string& host);

 private:
  struct Host {
    std::string name;
    bool schedulable = false;
    double vcpu_capacity = 0;
    double memory_capacity = 0;
    const v1::HostRecord* record = nullptr;
    const v1::HostInventory* inventory = nullptr;
  };
  struct Placed {
    size_t host = 0;
    const v1::VmRecord* record = nullptr;
  };
  controller::SchedulerOptions options_;
  std::vector<Host> hosts_;
  std::vector<Placed> placed_;
};

struct NaiveRebalanceResult {
  double score_after = 0;
  std::vector<controller::Move> moves;
  bool gave_up = false;  // hit the move cap or found no movable VM before the threshold
};

// "Move the biggest VM from the most to the least loaded host until the score is below the
// threshold": each step takes the most and the least utilised host, and moves the largest VM
// (by memory) of the first that the scheduler's filters allow onto the second. Stops below
// the threshold, when no VM of the most loaded host fits, or after `max_moves`.
NaiveRebalanceResult naiveRebalance(const controller::ClusterView& view,
                                    const controller::SchedulerOptions& scheduler_options,
                                    double threshold, uint32_t max_moves);

}  // namespace flotilla::bench
