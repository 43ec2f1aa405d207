// Ctrl-C for clusterctl (see interrupt.h).
#include "cli/interrupt.h"

#include <utility>
#include <vector>

namespace flotilla::cli {

Interrupt::Subscription::~Subscription() {
  if (owner_ != nullptr) owner_->unsubscribe(id_);
}

void Interrupt::trigger() {
  absl::MutexLock lock(&mu_);
  if (notification_.HasBeenNotified()) return;
  notification_.Notify();
  // Under the lock, so that a subscription being destroyed waits until its callback is done.
  for (auto& [id, callback] : callbacks_) callback();
}

Interrupt::Subscription Interrupt::subscribe(std::function<void()> callback) const {
  absl::MutexLock lock(&mu_);
  if (notification_.HasBeenNotified()) {
    callback();
    return Subscription(nullptr, 0);
  }
  const uint64_t id = next_id_++;
  callbacks_.emplace(id, std::move(callback));
  return Subscription(this, id);
}

bool Interrupt::sleepFor(absl::Duration duration) const {
  return !notification_.WaitForNotificationWithTimeout(duration);
}

void Interrupt::unsubscribe(uint64_t id) const {
  absl::MutexLock lock(&mu_);
  callbacks_.erase(id);
}

}  // namespace flotilla::cli
