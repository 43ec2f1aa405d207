// When pre-copy stops: after each round, the predicted pause (the bytes still dirty at the
// rate the last round handled guest memory — the link's, or the compressor's when it is the
// slower — plus a fixed cost for the device state and the handshake) is compared
// with the downtime limit; auto-converge throttles the vCPUs in steps while the guest keeps
// dirtying more than half of what a round sends. Pure arithmetic, unit-tested on its own.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace flotilla::migration {

// What the switchover costs besides the pages: device state, loading it, the handshake.
inline constexpr absl::Duration kSwitchoverFixedCost = absl::Milliseconds(2);
// The bandwidth assumed before any round measured one (bytes per second).
inline constexpr double kAssumedBandwidth = 1e9;
// A round that sent less than this does not measure the bandwidth.
inline constexpr uint64_t kMinMeasuredBytes = 256 * 1024;
// When the pause already fits but the rounds still shrink by half or more, up to this many
// more rounds make it shorter, while more than this many bytes are dirty.
inline constexpr int kMaxExtraRounds = 2;
inline constexpr uint64_t kWorthAnotherRound = 1 << 20;
// Auto-converge: the first throttle, each step, the most.
inline constexpr int kThrottleInitial = 20;
inline constexpr int kThrottleStep = 10;
inline constexpr int kThrottleMax = 99;

struct RoundFigures {
  uint64_t sent_bytes = 0;   // guest memory handled during the round (before compression)
  uint64_t dirty_bytes = 0;  // dirty at its end: the next round's work
  absl::Duration duration;
};

struct ConvergenceLimits {
  absl::Duration downtime_limit;
  int max_rounds = 30;
  absl::Duration timeout;
  absl::Duration elapsed;  // since pre-copy began
  uint32_t round = 0;      // the round just finished (round 0 sent the touched memory)
};

enum class ConvergenceAction { kAnotherRound, kSwitchover, kGiveUp };

struct ConvergenceDecision {
  ConvergenceAction action = ConvergenceAction::kAnotherRound;
  absl::Duration predicted_downtime;
  int throttle_percent = 0;
  bool throttle_changed = false;
  std::string reason;  // for kGiveUp
};

class ConvergenceTracker {
 public:
  explicit ConvergenceTracker(bool auto_converge) : auto_converge_(auto_converge) {}

  ConvergenceDecision afterRound(const RoundFigures& figures, const ConvergenceLimits& limits);

  double bandwidth() const { return bandwidth_; }   // bytes per second; 0 before a measurement
  double dirtyRate() const { return dirty_rate_; }  // bytes per second in the last round
  int throttle() const { return throttle_; }

 private:
  bool auto_converge_;
  double bandwidth_ = 0;
  double dirty_rate_ = 0;
  int throttle_ = 0;
  int rounds_dirtying_fast_ = 0;
  int extra_rounds_ = 0;
};

// The pause a switchover with `dirty_bytes` left would take at `bandwidth` bytes per second.
absl::Duration predictDowntime(uint64_t dirty_bytes, double bandwidth);

}  // namespace flotilla::migration
