// A Clock for tests: time moves only when the test advances it (or when code under test
// sleeps, which advances it by the slept duration without blocking).
#pragma once

#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace flotilla {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000)) : now_(start) {}

  absl::Time now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  absl::Duration monotonicNow() const override {
    absl::MutexLock lock(&mu_);
    return now_ - absl::UnixEpoch();
  }
  void sleepFor(absl::Duration d) override { advance(d); }

  void advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla
