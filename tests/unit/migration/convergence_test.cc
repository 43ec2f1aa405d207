// The convergence policy: when pre-copy switches over, gives up, and throttles.
#include "migration/convergence.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::migration {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;

ConvergenceLimits limits(uint32_t round) {
  return {.downtime_limit = absl::Milliseconds(100),
          .max_rounds = 5,
          .timeout = absl::Minutes(1),
          .elapsed = absl::Seconds(1),
          .round = round};
}

TEST(PredictDowntimeTest, IsTheDirtyBytesAtTheBandwidthPlusTheFixedCost) {
  EXPECT_EQ(predictDowntime(100 * kMiB, 100.0 * kMiB), absl::Seconds(1) + kSwitchoverFixedCost);
  EXPECT_EQ(predictDowntime(0, 1e9), kSwitchoverFixedCost);
  // No measurement yet: the assumed bandwidth.
  EXPECT_EQ(predictDowntime(1'000'000'000, 0), absl::Seconds(1) + kSwitchoverFixedCost);
}

TEST(ConvergenceTrackerTest, SwitchesOverWhenThePredictedPauseFits) {
  ConvergenceTracker tracker(false);
  // 1 GiB/s measured; 1 MiB dirty: ~1 ms.
  auto decision = tracker.afterRound(
      {.sent_bytes = 1024 * kMiB, .dirty_bytes = 1 * kMiB, .duration = absl::Seconds(1)},
      limits(1));
  EXPECT_EQ(decision.action, ConvergenceAction::kSwitchover);
  EXPECT_DOUBLE_EQ(tracker.bandwidth(), 1024.0 * kMiB);
  EXPECT_LT(decision.predicted_downtime, absl::Milliseconds(100));
}

TEST(ConvergenceTrackerTest, WhileRoundsStillHalveAFewMoreShortenThePause) {
  ConvergenceTracker tracker(false);
  ConvergenceLimits many = limits(1);
  many.max_rounds = 100;
  // 10 MiB left of 1 GiB sent: it fits (~10 ms), but another round would leave far less.
  const RoundFigures halving{
      .sent_bytes = 1024 * kMiB, .dirty_bytes = 10 * kMiB, .duration = absl::Seconds(1)};
  for (int extra = 0; extra < kMaxExtraRounds; ++extra) {
    EXPECT_EQ(tracker.afterRound(halving, many).action, ConvergenceAction::kAnotherRound);
  }
  EXPECT_EQ(tracker.afterRound(halving, many).action, ConvergenceAction::kSwitchover);
}

TEST(ConvergenceTrackerTest, NoExtraRoundWhenTheRoundsStopShrinking) {
  ConvergenceTracker tracker(false);
  // A round that left 6 of 100 MiB: the pause fits, but the rounds still shrink fast.
  auto decision = tracker.afterRound(
      {.sent_bytes = 100 * kMiB, .dirty_bytes = 6 * kMiB, .duration = absl::Milliseconds(100)},
      limits(1));
  EXPECT_EQ(decision.action, ConvergenceAction::kAnotherRound);
  // Then 4 of 6 MiB: the guest dirties as fast as the link carries; waiting would not help.
  auto stalled = tracker.afterRound(
      {.sent_bytes = 6 * kMiB, .dirty_bytes = 4 * kMiB, .duration = absl::Milliseconds(6)},
      limits(2));
  EXPECT_EQ(stalled.action, ConvergenceAction::kSwitchover);
}

TEST(ConvergenceTrackerTest, GoesOnWhileThePauseWouldBeTooLong) {
  ConvergenceTracker tracker(false);
  auto decision = tracker.afterRound(
      {.sent_bytes = 100 * kMiB, .dirty_bytes = 50 * kMiB, .duration = absl::Seconds(1)},
      limits(1));
  EXPECT_EQ(decision.action, ConvergenceAction::kAnotherRound);
  EXPECT_EQ(decision.predicted_downtime, absl::Milliseconds(500) + kSwitchoverFixedCost);
  EXPECT_DOUBLE_EQ(tracker.dirtyRate(), 50.0 * kMiB);
}

TEST(ConvergenceTrackerTest, GivesUpAfterTheLastRoundAndAtTheTimeout) {
  ConvergenceTracker tracker(false);
  const RoundFigures busy{
      .sent_bytes = 100 * kMiB, .dirty_bytes = 80 * kMiB, .duration = absl::Seconds(1)};
  auto last = tracker.afterRound(busy, limits(5));
  EXPECT_EQ(last.action, ConvergenceAction::kGiveUp);
  EXPECT_THAT(last.reason, HasSubstr("after 5 rounds"));
  ConvergenceLimits late = limits(2);
  late.elapsed = absl::Minutes(2);
  auto timed_out = tracker.afterRound(busy, late);
  EXPECT_EQ(timed_out.action, ConvergenceAction::kGiveUp);
  EXPECT_THAT(timed_out.reason, HasSubstr("2 rounds"));
}

TEST(ConvergenceTrackerTest, ASmallRoundDoesNotMeasureTheBandwidth) {
  ConvergenceTracker tracker(false);
  (void)tracker.afterRound(
      {.sent_bytes = 512 * kMiB, .dirty_bytes = 300 * kMiB, .duration = absl::Seconds(1)},
      limits(1));
  (void)tracker.afterRound(
      {.sent_bytes = 4096, .dirty_bytes = 300 * kMiB, .duration = absl::Seconds(1)}, limits(2));
  EXPECT_DOUBLE_EQ(tracker.bandwidth(), 512.0 * kMiB);
}

TEST(ConvergenceTrackerTest, AutoConvergeThrottlesInStepsWhileTheGuestDirtiesFast) {
  ConvergenceTracker tracker(true);
  const RoundFigures fast{
      .sent_bytes = 100 * kMiB, .dirty_bytes = 90 * kMiB, .duration = absl::Seconds(1)};
  ConvergenceLimits many = limits(1);
  many.max_rounds = 1000;
  auto first = tracker.afterRound(fast, many);
  EXPECT_FALSE(first.throttle_changed);  // one fast round is not a trend
  auto second = tracker.afterRound(fast, many);
  EXPECT_TRUE(second.throttle_changed);
  EXPECT_EQ(second.throttle_percent, kThrottleInitial);
  (void)tracker.afterRound(fast, many);
  auto fourth = tracker.afterRound(fast, many);
  EXPECT_EQ(fourth.throttle_percent, kThrottleInitial + kThrottleStep);
  for (int i = 0; i < 40; ++i) (void)tracker.afterRound(fast, many);
  EXPECT_EQ(tracker.throttle(), kThrottleMax);
  // A slow round resets the trend but keeps the throttle.
  auto calm = tracker.afterRound(
      {.sent_bytes = 100 * kMiB, .dirty_bytes = 10 * kMiB, .duration = absl::Seconds(1)}, many);
  EXPECT_FALSE(calm.throttle_changed);
  EXPECT_EQ(calm.throttle_percent, kThrottleMax);
}

TEST(ConvergenceTrackerTest, WithoutAutoConvergeNeverThrottles) {
  ConvergenceTracker tracker(false);
  ConvergenceLimits many = limits(1);
  many.max_rounds = 1000;
  for (int i = 0; i < 10; ++i) {
    auto decision = tracker.afterRound(
        {.sent_bytes = 100 * kMiB, .dirty_bytes = 99 * kMiB, .duration = absl::Seconds(1)}, many);
    EXPECT_EQ(decision.throttle_percent, 0);
    EXPECT_FALSE(decision.throttle_changed);
  }
}

}  // namespace
}  // namespace flotilla::migration
