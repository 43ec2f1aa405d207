// ConvergenceTracker (see convergence.h).
#include "migration/convergence.h"

#include <algorithm>

#include "fmt/format.h"

namespace flotilla::migration {

absl::Duration predictDowntime(uint64_t dirty_bytes, double bandwidth) {
  const double rate = bandwidth > 0 ? bandwidth : kAssumedBandwidth;
  return absl::Seconds(static_cast<double>(dirty_bytes) / rate) + kSwitchoverFixedCost;
}

ConvergenceDecision ConvergenceTracker::afterRound(const RoundFigures& figures,
                                                   const ConvergenceLimits& limits) {
  const double seconds = absl::ToDoubleSeconds(figures.duration);
  if (figures.sent_bytes >= kMinMeasuredBytes && seconds > 0) {
    bandwidth_ = static_cast<double>(figures.sent_bytes) / seconds;
  }
  dirty_rate_ = seconds > 0 ? static_cast<double>(figures.dirty_bytes) / seconds : 0;

  ConvergenceDecision decision;
  decision.predicted_downtime = predictDowntime(figures.dirty_bytes, bandwidth_);
  const bool out_of_rounds =
      limits.round >= static_cast<uint32_t>(std::max(limits.max_rounds, 1)) ||
      limits.elapsed >= limits.timeout;
  if (decision.predicted_downtime <= limits.downtime_limit) {
    // The pause fits. While a round still leaves at most half of what it sent, one more
    // (a few at most) shortens the pause for little total time: such a round costs about
    // twice the pause it saves, and the guest runs meanwhile.
    const bool shrinking = figures.dirty_bytes * 2 <= figures.sent_bytes;
    if (shrinking && figures.dirty_bytes > kWorthAnotherRound && extra_rounds_ < kMaxExtraRounds &&
        !out_of_rounds) {
      ++extra_rounds_;
    } else {
      decision.action = ConvergenceAction::kSwitchover;
    }
  } else if (limits.round >= static_cast<uint32_t>(std::max(limits.max_rounds, 1))) {
    decision.action = ConvergenceAction::kGiveUp;
    decision.reason = fmt::format(
        "after {} rounds {} bytes are still dirty, a pause of about {} (limit {})", limits.round,
        figures.dirty_bytes, absl::FormatDuration(decision.predicted_downtime),
        absl::FormatDuration(limits.downtime_limit));
  } else if (limits.elapsed >= limits.timeout) {
    decision.action = ConvergenceAction::kGiveUp;
    decision.reason =
        fmt::format("after {} ({} rounds) {} bytes are still dirty, a pause of about {} (limit {})",
                    absl::FormatDuration(limits.elapsed), limits.round, figures.dirty_bytes,
                    absl::FormatDuration(decision.predicted_downtime),
                    absl::FormatDuration(limits.downtime_limit));
  }

  // Auto-converge: two rounds in a row in which the guest dirtied more than half of what was
  // sent mean the rounds are not shrinking fast enough: take another step of vCPU time.
  if (auto_converge_ && decision.action == ConvergenceAction::kAnotherRound) {
    rounds_dirtying_fast_ =
        figures.dirty_bytes * 2 > figures.sent_bytes ? rounds_dirtying_fast_ + 1 : 0;
    if (rounds_dirtying_fast_ >= 2 && throttle_ < kThrottleMax) {
      throttle_ =
          throttle_ == 0 ? kThrottleInitial : std::min(kThrottleMax, throttle_ + kThrottleStep);
      decision.throttle_changed = true;
      rounds_dirtying_fast_ = 0;
    }
  }
  decision.throttle_percent = throttle_;
  return decision;
}

}  // namespace flotilla::migration
