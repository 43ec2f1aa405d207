// The rebalancer's planner on synthetic clusters: the score from the agents' reports, no
// moves when balanced, moves that lower the score on a skewed cluster, the VMs and hosts it
// must leave alone, and no bouncing once a plan was applied.
#include "controller/scheduler/rebalancer.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/controller/scheduler/cluster_builder.h"

namespace flotilla::controller {
namespace {

using testing::ClusterBuilder;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::kGiB;
using ::testing::Not;

// Four 16-CPU, 64 GiB hosts; 4 GiB VMs using one core each: h1 runs 12 (75%), h2 8 (50%),
// h3 2 (12.5%), h4 none.
void skewed(ClusterBuilder& cluster) {
  const int counts[] = {12, 8, 2, 0};
  for (int h = 0; h < 4; ++h) {
    std::string host = "h" + std::to_string(h + 1);
    cluster.host(host);
    for (int v = 0; v < counts[h]; ++v) {
      cluster.vm(host + "-vm" + std::to_string(v), host, 2, 4096, 1.0);
    }
  }
}

RebalanceResult plan(const ClusterView& view, RebalanceOptions options = {},
                     const std::set<std::string>& recently_moved = {}) {
  Scheduler scheduler({});
  scheduler.load(view);
  return planRebalance(view, scheduler, options, recently_moved);
}

TEST(RebalanceScoreTest, UtilisationIsTheBusierOfCpuAndMemoryAndCountsTheHostsOwnLoad) {
  ClusterBuilder cluster;
  cluster.host("h1", 16, 64);
  cluster.vm("a", "h1", 2, 16 * 1024, 2.0);  // memory 25%, VM cpu 12.5%
  cluster.host("h2", 8, 64);
  cluster.vm("b", "h2", 2, 8 * 1024, 1.0);
  cluster.view().hosts.at("h2").status->mutable_load()->set_cpu_busy(0.5);  // + 3 cores of its own
  cluster.host("h3").record.set_cordoned(true);                             // not counted
  cluster.host("h4").status.reset();                                        // not counted

  std::vector<HostLoadShare> loads = hostLoads(cluster.view());
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_EQ(loads[0].host, "h1");
  EXPECT_DOUBLE_EQ(loads[0].cpu, 0.125);
  EXPECT_DOUBLE_EQ(loads[0].memory, 0.25);
  EXPECT_DOUBLE_EQ(loads[0].utilisation(), 0.25);
  EXPECT_DOUBLE_EQ(loads[1].cpu, 0.5);
  EXPECT_DOUBLE_EQ(loads[1].memory, 0.125);
  EXPECT_DOUBLE_EQ(loads[1].utilisation(), 0.5);
  // Two hosts at 0.25 and 0.5: standard deviation 0.125.
  EXPECT_DOUBLE_EQ(imbalanceScore(loads), 0.125);
  EXPECT_EQ(imbalanceScore({}), 0);
}

TEST(RebalanceTest, ABalancedClusterHasNoMoves) {
  ClusterBuilder cluster;
  for (int h = 1; h <= 4; ++h) {
    std::string host = "h" + std::to_string(h);
    cluster.host(host);
    for (int v = 0; v < 4; ++v) cluster.vm(host + "-vm" + std::to_string(v), host, 2, 4096, 1.0);
  }
  RebalanceResult result = plan(cluster.view());
  EXPECT_THAT(result.moves, IsEmpty());
  EXPECT_DOUBLE_EQ(result.score_before, 0);
  EXPECT_EQ(result.message, "imbalance 0.000 is at or below the threshold 0.100: no moves");
}

TEST(RebalanceTest, FewerThanTwoHostsHaveNothingToBalance) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.vm("a", "h1", 2, 4096, 1.0);
  EXPECT_THAT(plan(cluster.view()).message, HasSubstr("1 host can take VMs"));
}

TEST(RebalanceTest, ASkewedClusterGetsMovesThatLowerTheScoreEachStep) {
  ClusterBuilder cluster;
  skewed(cluster);
  RebalanceResult result = plan(cluster.view(), {.max_moves = 100});
  ASSERT_THAT(result.moves, Not(IsEmpty()));
  EXPECT_GT(result.score_before, 0.25);
  EXPECT_LT(result.score_after, 0.1);
  double previous = result.score_before;
  for (const Move& move : result.moves) {
    EXPECT_LT(move.score_after, previous) << move.vm;
    previous = move.score_after;
    EXPECT_GT(move.gain, 0) << move.vm;
    EXPECT_DOUBLE_EQ(move.cost, 4 * 0.0005);  // 4 GiB at the default cost per GiB
    EXPECT_EQ(move.memory_bytes, 4 * kGiB);
    EXPECT_NE(move.source, move.target);
    EXPECT_THAT(move.target, Not("h1"));  // the busiest host receives nothing
  }
  EXPECT_DOUBLE_EQ(previous, result.score_after);
  EXPECT_THAT(result.message, HasSubstr(std::to_string(result.moves.size()) + " moves"));

  // The view after the moves scores what the plan predicted.
  ClusterView after = cluster.view();
  applyMoves(after, result.moves);
  EXPECT_NEAR(imbalanceScore(hostLoads(after)), result.score_after, 1e-9);

  // Deterministic.
  RebalanceResult again = plan(cluster.view(), {.max_moves = 100});
  ASSERT_EQ(again.moves.size(), result.moves.size());
  for (size_t i = 0; i < result.moves.size(); ++i) {
    EXPECT_EQ(again.moves[i].vm, result.moves[i].vm);
    EXPECT_EQ(again.moves[i].target, result.moves[i].target);
  }
}

TEST(RebalanceTest, AppliedPlanReplansToNothingSoVmsDoNotBounce) {
  ClusterBuilder cluster;
  skewed(cluster);
  RebalanceResult first = plan(cluster.view(), {.max_moves = 100});
  ASSERT_THAT(first.moves, Not(IsEmpty()));
  ClusterView after = cluster.view();
  applyMoves(after, first.moves);
  RebalanceResult second = plan(after, {.max_moves = 100});
  EXPECT_THAT(second.moves, IsEmpty());
  EXPECT_THAT(second.message, HasSubstr("at or below the threshold"));
}

TEST(RebalanceTest, APlanRunToTheEndOfItsGainsLeavesNoMoveThatPaysOff) {
  ClusterBuilder cluster;
  skewed(cluster);
  // No threshold and no target: only gain, cost and hysteresis stop the plan.
  RebalanceOptions eager{.threshold = 0, .max_moves = 100};
  RebalanceResult first = plan(cluster.view(), eager);
  ASSERT_THAT(first.moves, Not(IsEmpty()));
  EXPECT_THAT(first.message, HasSubstr("no further move gains more than its cost"));
  ClusterView after = cluster.view();
  applyMoves(after, first.moves);
  RebalanceResult second = plan(after, eager);
  EXPECT_THAT(second.moves, IsEmpty());
  EXPECT_THAT(second.message, HasSubstr("no move gains more than its cost plus the hysteresis"));
}

TEST(RebalanceTest, AMoveWithinTheHysteresisMarginIsNotMade) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2");
  for (int v = 0; v < 7; ++v) cluster.vm("h1-vm" + std::to_string(v), "h1", 2, 4096, 1.0);
  for (int v = 0; v < 5; ++v) cluster.vm("h2-vm" + std::to_string(v), "h2", 2, 4096, 1.0);
  // 7 and 5 VMs of 1/16 of a host: one move evens them out, but it gains
  // 2 * (1/16)^2 = 0.0078, minus 0.002 of cost: less than the margin 0.05 * 2/16 = 0.0063.
  RebalanceOptions eager{.threshold = 0, .max_moves = 100};
  EXPECT_THAT(plan(cluster.view(), eager).moves, IsEmpty());
  eager.hysteresis = 0;
  RebalanceResult no_margin = plan(cluster.view(), eager);
  ASSERT_EQ(no_margin.moves.size(), 1u);
  EXPECT_NEAR(no_margin.moves[0].gain, 2.0 / 256 - 0.002, 1e-12);
  EXPECT_DOUBLE_EQ(no_margin.score_after, 0);
}

TEST(RebalanceTest, APlanStopsAtTheTargetBelowTheThreshold) {
  ClusterBuilder cluster;
  skewed(cluster);
  RebalanceResult result = plan(cluster.view(), {.threshold = 0.2, .max_moves = 100});
  ASSERT_THAT(result.moves, Not(IsEmpty()));
  EXPECT_LE(result.score_after, 0.1);
  // The move before the last was still above the target.
  ASSERT_GE(result.moves.size(), 2u);
  EXPECT_GT(result.moves[result.moves.size() - 2].score_after, 0.1);
  EXPECT_THAT(result.message, HasSubstr("(reached the target 0.100)"));
}

TEST(RebalanceTest, MaxMovesStopsThePlanAndSaysSo) {
  ClusterBuilder cluster;
  skewed(cluster);
  RebalanceResult result = plan(cluster.view(), {.max_moves = 2});
  EXPECT_EQ(result.moves.size(), 2u);
  EXPECT_THAT(result.message, HasSubstr("stopped at max_moves"));
  // The rest comes in the next round, from where this one left off.
  ClusterView after = cluster.view();
  applyMoves(after, result.moves);
  EXPECT_THAT(plan(after, {.max_moves = 100}).moves, Not(IsEmpty()));
}

TEST(RebalanceTest, CordonedAndDrainingHostsReceiveNothing) {
  ClusterBuilder cluster;
  skewed(cluster);
  cluster.host("empty-cordoned");
  cluster.cordon("empty-cordoned");
  cluster.host("empty-draining");
  cluster.drain("empty-draining");
  RebalanceResult result = plan(cluster.view(), {.max_moves = 100});
  ASSERT_THAT(result.moves, Not(IsEmpty()));
  for (const Move& move : result.moves) {
    EXPECT_NE(move.target, "empty-cordoned");
    EXPECT_NE(move.target, "empty-draining");
  }
}

TEST(RebalanceTest, PinnedRecentlyMovedMigratingStoppedAndColdOnlyVmsNeverMove) {
  ClusterBuilder cluster;
  skewed(cluster);
  ClusterView& view = cluster.view();
  std::set<std::string> recently_moved;
  std::set<std::string> frozen;
  for (int v = 0; v < 12; ++v) {
    std::string name = "h1-vm" + std::to_string(v);
    frozen.insert(name);
    switch (v % 5) {
      case 0:
        view.vms.at(name).record.mutable_placement()->set_host("h1");
        break;
      case 1:
        recently_moved.insert(name);
        break;
      case 2:
        cluster.migration("m-" + name, name, "h1", "h2", v1::MIGRATION_PHASE_PENDING);
        break;
      case 3:
        view.vms.at(name).status.set_state(v1::VM_STATE_PAUSED);
        break;
      case 4:
        view.vms.at(name).record.mutable_spec()->set_migration_policy(v1::MIGRATION_POLICY_COLD);
        break;
    }
  }
  RebalanceResult result = plan(view, {.max_moves = 100}, recently_moved);
  EXPECT_GT(result.score_before, 0.1);
  for (const Move& move : result.moves) EXPECT_FALSE(frozen.contains(move.vm)) << move.vm;
  // h2 still sheds load to the empty hosts.
  EXPECT_THAT(result.moves, Not(IsEmpty()));

  // With every VM frozen, the message says why nothing moves.
  for (auto& [name, vm] : view.vms) vm.record.mutable_placement()->set_host(vm.status.host());
  RebalanceResult none = plan(view, {.max_moves = 100}, recently_moved);
  EXPECT_THAT(none.moves, IsEmpty());
  EXPECT_THAT(none.message, HasSubstr("but no VM can move (pinned, cooling down"));
}

TEST(RebalanceTest, TargetsPassTheSchedulersFiltersForALiveMigration) {
  ClusterBuilder cluster;
  skewed(cluster);
  // h4 (empty) has another CPU: VMs with cpu model "host" cannot move there live; h3 does
  // not reach the VMs' pool.
  cluster.view().hosts.at("h4").status->mutable_inventory()->set_cpu_model_name("EPYC");
  cluster.view().hosts.at("h3").status->mutable_inventory()->clear_pools();
  RebalanceResult result = plan(cluster.view(), {.max_moves = 100});
  ASSERT_THAT(result.moves, Not(IsEmpty()));
  for (const Move& move : result.moves) EXPECT_EQ(move.target, "h2") << move.vm;
}

TEST(RebalanceTest, AMoveMustBeatItsCostAndTheHysteresis) {
  ClusterBuilder cluster;
  skewed(cluster);
  // Free moves with no margin go further than the defaults; an expensive move never pays.
  RebalanceResult cheap = plan(
      cluster.view(),
      {.threshold = 0.05, .max_moves = 100, .target_ratio = 0, .hysteresis = 0, .cost_per_gib = 0});
  RebalanceResult normal =
      plan(cluster.view(), {.threshold = 0.05, .max_moves = 100, .target_ratio = 0});
  EXPECT_GE(cheap.moves.size(), normal.moves.size());
  EXPECT_LE(cheap.score_after, normal.score_after);
  RebalanceResult expensive = plan(cluster.view(), {.max_moves = 100, .cost_per_gib = 1});
  EXPECT_THAT(expensive.moves, IsEmpty());
  EXPECT_THAT(expensive.message, HasSubstr("no move gains more than its cost"));
}

}  // namespace
}  // namespace flotilla::controller
