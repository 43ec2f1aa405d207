// Building blocks of etcd's long-lived streams (watch, lease keep-alive, election observe):
// StreamWorker runs a stream loop on its own thread and can stop it at any moment, even in a
// blocking gRPC read; EventQueue hands the stream's items to a consumer with a timeout.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fmt/format.h"
#include "grpcpp/client_context.h"

namespace flotilla::etcd {

class StreamWorker {
 public:
  StreamWorker() = default;
  ~StreamWorker() { stop(); }
  StreamWorker(const StreamWorker&) = delete;
  StreamWorker& operator=(const StreamWorker&) = delete;

  // Runs `loop` on a thread named `name`; the loop should return soon after stopping().
  void start(std::string name, std::function<void()> loop);

  // Stops the loop (cancelling the attached call) and joins the thread. Idempotent.
  void stop();
  bool stopping() const;

  // Makes `context` the call that stop() cancels. False when already stopping: do not start
  // the call then.
  bool attach(grpc::ClientContext* context);
  void detach();

  // Sleeps up to `d`; false when stopped meanwhile.
  bool sleepFor(absl::Duration d);

 private:
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

// Exponential backoff between reconnections: 50 ms doubling to 1 s; reset() after a stream
// was established.
class Backoff {
 public:
  absl::Duration next() {
    absl::Duration d = delay_;
    delay_ = std::min(delay_ * 2, absl::Seconds(1));
    return d;
  }
  void reset() { delay_ = absl::Milliseconds(50); }

 private:
  absl::Duration delay_ = absl::Milliseconds(50);
};

template <typename T>
class EventQueue {
 public:
  void push(T item) {
    absl::MutexLock lock(&mu_);
    items_.push_back(std::move(item));
  }

  // Ends the queue: once the items before it are taken, next() returns `status`. Only the
  // first call counts.
  void finish(absl::Status status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    final_status_ = std::move(status);
  }

  // The next item; the final status once finished; DeadlineExceeded when nothing came within
  // `timeout` (the stream goes on).
  absl::StatusOr<T> next(absl::Duration timeout, std::string_view what) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &EventQueue::ready), timeout);
    if (!items_.empty()) {
      T item = std::move(items_.front());
      items_.pop_front();
      return item;
    }
    if (finished_) return final_status_;
    return absl::DeadlineExceededError(
        fmt::format("{}: nothing within {}", what, absl::FormatDuration(timeout)));
  }

 private:
  bool ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !items_.empty() || finished_; }

  absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::etcd
