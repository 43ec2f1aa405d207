// planRebalanceMoves (see rebalance_plan.h).
#include "controller/rebalance_plan.h"

#include "absl/time/clock.h"
#include "controller/reconciler.h"
#include "controller/scheduler/rebalancer.h"

namespace flotilla::controller {

v1::RebalancePlan planRebalanceMoves(const ControllerConfig& config, const ClusterView& view,
                                     const v1::PlanRebalanceRequest& request) {
  Scheduler scheduler(schedulerOptions(config));
  scheduler.load(view);
  std::set<std::string> recent;
  const int64_t cutoff =
      absl::ToUnixMillis(absl::Now()) - absl::ToInt64Milliseconds(config.rebalance.cooldown);
  for (const auto& [name, migration] : view.migrations) {
    if (migration.finished_unix_ms() >= cutoff || migrationActive(migration.phase())) {
      recent.insert(migration.vm());
    }
  }
  RebalanceOptions options;
  options.threshold = request.threshold() > 0 ? request.threshold() : config.rebalance.threshold;
  options.max_moves = request.max_moves() > 0 ? request.max_moves() : config.rebalance.max_moves;
  RebalanceResult result = planRebalance(view, scheduler, options, recent);
  v1::RebalancePlan plan;
  plan.set_score_before(result.score_before);
  plan.set_score_after(result.score_after);
  plan.set_message(result.message);
  for (const Move& move : result.moves) {
    v1::RebalanceMove* out = plan.add_moves();
    out->set_vm(move.vm);
    out->set_source(move.source);
    out->set_target(move.target);
    out->set_gain(move.gain);
    out->set_cost(move.cost);
  }
  return plan;
}

}  // namespace flotilla::controller
