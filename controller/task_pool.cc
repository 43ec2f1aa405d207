// TaskPool (see task_pool.h).
#include "controller/task_pool.h"

namespace flotilla::controller {

TaskPool::TaskPool(std::string name, size_t threads) : name_(std::move(name)) {
  for (size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this](std::stop_token) { work(stop_source_.get_token()); });
  }
}

TaskPool::~TaskPool() {
  stop();
}

bool TaskPool::submit(const std::string& key, Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || !keys_.insert(key).second) return false;
  queue_.emplace_back(key, std::move(task));
  return true;
}

void TaskPool::beginPass(absl::Time view_read_at) {
  absl::MutexLock lock(&mu_);
  view_read_at_ = view_read_at;
  std::erase_if(ended_, [&](const auto& entry) { return entry.second < view_read_at; });
}

bool TaskPool::busy(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  if (keys_.contains(key)) return true;
  auto ended = ended_.find(key);
  return ended != ended_.end() && ended->second >= view_read_at_;
}

void TaskPool::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queue_.clear();
  }
  stop_source_.request_stop();
  for (std::jthread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

bool TaskPool::hasWork() const {
  return stopping_ || !queue_.empty();
}

void TaskPool::work(std::stop_token stop) {
  while (true) {
    std::pair<std::string, Task> item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &TaskPool::hasWork));
      if (stopping_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    item.second(stop);
    absl::MutexLock lock(&mu_);
    keys_.erase(item.first);
    ended_[item.first] = absl::Now();
  }
}

}  // namespace flotilla::controller
