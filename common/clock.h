// Time as an injectable dependency: production code reads time through a Clock so that
// tests can drive it with FakeClock (common/testing/fake_clock.h).
#pragma once

#include "absl/time/time.h"

namespace flotilla {

class Clock {
 public:
  virtual ~Clock() = default;

  // Wall-clock time, for timestamps shown to people and stored in etcd.
  virtual absl::Time now() const = 0;
  // Monotonic time since an arbitrary origin, for deadlines, timeouts and rates.
  virtual absl::Duration monotonicNow() const = 0;
  // Blocks the calling thread for `d` of this clock's time.
  virtual void sleepFor(absl::Duration d) = 0;
};

// The process-wide real clock (CLOCK_REALTIME and CLOCK_MONOTONIC).
Clock& systemClock();

// poll(2)'s timeout argument for `remaining`: rounded up to whole milliseconds so that poll
// never returns before the deadline, 0 when it has passed, -1 (wait forever) when infinite.
int pollTimeoutMs(absl::Duration remaining);

}  // namespace flotilla
