// The rebalance plan as the API shows it: the scheduler and the rebalancer (scheduler/) run
// on a view with the controller's configured options.
#pragma once

#include "controller/config.h"
#include "controller/model/cluster_view.h"
#include "flotilla/v1/cluster.pb.h"

namespace flotilla::controller {

v1::RebalancePlan planRebalanceMoves(const ControllerConfig& config, const ClusterView& view,
                                     const v1::PlanRebalanceRequest& request);

}  // namespace flotilla::controller
