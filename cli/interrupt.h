// Ctrl-C for clusterctl: main() turns SIGINT/SIGTERM into Interrupt::trigger(); long waits
// (watch streams, --wait, backoff sleeps, calls in flight) subscribe to it and end promptly.
// Tests trigger it directly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace flotilla::cli {

class Interrupt {
 public:
  // Removes its callback when destroyed.
  class Subscription {
   public:
    Subscription(const Interrupt* owner, uint64_t id) : owner_(owner), id_(id) {}
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

   private:
    const Interrupt* owner_;
    uint64_t id_;
  };

  Interrupt() = default;
  Interrupt(const Interrupt&) = delete;
  Interrupt& operator=(const Interrupt&) = delete;

  // Marks the interrupt and runs every subscribed callback (once; later calls do nothing).
  void trigger();
  bool triggered() const { return notification_.HasBeenNotified(); }

  // Runs `callback` when the interrupt fires (at once when it already has), until the returned
  // subscription is destroyed. The callback must be quick (it may run on a signal thread).
  Subscription subscribe(std::function<void()> callback) const;

  // Sleeps for `duration` or until triggered; false when triggered.
  bool sleepFor(absl::Duration duration) const;

 private:
  void unsubscribe(uint64_t id) const;

  absl::Notification notification_;
  mutable absl::Mutex mu_;
  mutable uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  mutable std::map<uint64_t, std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::cli
