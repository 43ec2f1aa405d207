// CompletionRecorder: a BlockCompletionSink for tests that records every completion, the
// thread it arrived on, and lets the test wait for a number of them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/block_backend.h"

namespace flotilla::storage::testing {

class CompletionRecorder final : public BlockCompletionSink {
 public:
  void completed(std::span<const BlockCompletion> completions) override {
    absl::MutexLock lock(&mu_);
    completions_.insert(completions_.end(), completions.begin(), completions.end());
    threads_.push_back(std::this_thread::get_id());
    ++batches_;
  }

  // Waits until `count` completions have arrived in total (a guard against hangs, not a
  // measurement: the default is long) and returns all of them.
  std::vector<BlockCompletion> waitFor(size_t count, absl::Duration timeout = absl::Minutes(2)) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return completions_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return completions_;
  }

  // The result of the request with `tag`, once it completed.
  std::optional<BlockResult> resultOf(uint64_t tag) {
    absl::MutexLock lock(&mu_);
    for (const BlockCompletion& c : completions_) {
      if (c.tag == tag) return c.result;
    }
    return std::nullopt;
  }

  // Waits for the completion of `tag` and returns its result (nullopt on timeout).
  std::optional<BlockResult> waitForTag(uint64_t tag, absl::Duration timeout = absl::Minutes(2)) {
    absl::MutexLock lock(&mu_);
    auto seen = [this, tag]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const BlockCompletion& c : completions_) {
        if (c.tag == tag) return true;
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
    for (const BlockCompletion& c : completions_) {
      if (c.tag == tag) return c.result;
    }
    return std::nullopt;
  }

  std::vector<BlockCompletion> all() {
    absl::MutexLock lock(&mu_);
    return completions_;
  }
  std::vector<std::thread::id> threads() {
    absl::MutexLock lock(&mu_);
    return threads_;
  }
  size_t batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

 private:
  absl::Mutex mu_;
  std::vector<BlockCompletion> completions_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
  size_t batches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::storage::testing
