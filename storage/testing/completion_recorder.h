// CompletionRecorder: a BlockCompletionSink for tests that records every completion, the
// thread it arrived on, and lets the test wait for a number of them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fmt/format.h"
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

  // Submits `requests` to `backend` (whose sink this is), waits for their completions and
  // returns their results in the order of the requests. An error when one did not complete,
  // or completed more than once.
  absl::StatusOr<std::vector<BlockResult>> submitAndWait(BlockBackend& backend,
                                                         std::vector<BlockRequest> requests) {
    const size_t before = all().size();
    std::vector<uint64_t> tags;
    for (const BlockRequest& r : requests) tags.push_back(r.tag);
    backend.submit(std::span<BlockRequest>(requests));
    std::vector<BlockCompletion> completions = waitFor(before + tags.size());
    if (completions.size() < before + tags.size()) {
      return absl::DeadlineExceededError(fmt::format("{} of {} requests did not complete",
                                                     before + tags.size() - completions.size(),
                                                     tags.size()));
    }
    std::vector<BlockResult> results;
    for (uint64_t tag : tags) {
      int seen = 0;
      BlockResult result = BlockResult::kIoError;
      for (size_t i = before; i < completions.size(); ++i) {
        if (completions[i].tag == tag) {
          ++seen;
          result = completions[i].result;
        }
      }
      if (seen != 1) {
        return absl::InternalError(fmt::format("tag {} completed {} times", tag, seen));
      }
      results.push_back(result);
    }
    return results;
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
