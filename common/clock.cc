// The real clock (see clock.h).
#include "common/clock.h"

#include <time.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "absl/time/clock.h"

namespace flotilla {
namespace {

class SystemClock final : public Clock {
 public:
  absl::Time now() const override { return absl::Now(); }

  absl::Duration monotonicNow() const override {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return absl::DurationFromTimespec(ts);
  }

  void sleepFor(absl::Duration d) override { absl::SleepFor(d); }
};

}  // namespace

Clock& systemClock() {
  static SystemClock clock;
  return clock;
}

int pollTimeoutMs(absl::Duration remaining) {
  if (remaining == absl::InfiniteDuration()) return -1;
  if (remaining <= absl::ZeroDuration()) return 0;
  int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(remaining, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

}  // namespace flotilla
