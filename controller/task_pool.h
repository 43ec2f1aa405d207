// TaskPool: a fixed set of threads running keyed tasks, at most one per key (one VM, one
// migration), so that the leader never acts twice on the same object at once. Tasks get the
// pool's stop token: the leader stops the pool when it loses leadership.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace flotilla::controller {

class TaskPool {
 public:
  using Task = std::function<void(std::stop_token)>;

  TaskPool(std::string name, size_t threads);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Queues `task` unless one with `key` is queued or running (then false).
  bool submit(const std::string& key, Task task);
  // A reconcile pass over a view read from `view_read_at` on begins: from now on busy() also
  // counts tasks that ended after it (the view may not show what they wrote).
  void beginPass(absl::Time view_read_at);
  // A task with `key` is queued or running, or ended after the current pass's view was read.
  bool busy(const std::string& key) const;
  // Asks the tasks to stop and waits for them; queued tasks are dropped.
  void stop();

 private:
  void work(std::stop_token stop);
  bool hasWork() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const std::string name_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<std::string, Task>> queue_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> keys_ ABSL_GUARDED_BY(mu_);               // queued or running
  std::map<std::string, absl::Time> ended_ ABSL_GUARDED_BY(mu_);  // since view_read_at_
  absl::Time view_read_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::stop_source stop_source_;
  std::vector<std::jthread> threads_;
};

}  // namespace flotilla::controller
