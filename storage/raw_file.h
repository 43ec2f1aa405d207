// RawFileBackend: a virtual disk that is a raw image file or a host block device, driven
// through io_uring (vectored reads and writes, fdatasync for flushes, fallocate for discards
// and write-zeroes). One reaper thread takes the completions and reports them in batches.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "storage/block_backend.h"
#include "storage/request_util.h"

struct io_uring;  // <liburing.h>, kept out of this header

namespace flotilla::storage {

class RawFileBackend final : public BlockBackend {
 public:
  static absl::StatusOr<std::unique_ptr<RawFileBackend>> open(const std::string& path,
                                                              const RawFileOptions& options);
  // Requests not yet started fail with kIoError; those the kernel is working on are waited
  // for (their buffers may still be written until then) and reported with their result.
  ~RawFileBackend() override;
  RawFileBackend(const RawFileBackend&) = delete;
  RawFileBackend& operator=(const RawFileBackend&) = delete;

  void setCompletionSink(BlockCompletionSink* sink) override;
  void submit(std::span<BlockRequest> requests) override;
  absl::Status drain() override;
  uint64_t sizeBytes() const override;
  uint32_t blockSize() const override { return block_size_; }
  bool readOnly() const override { return read_only_; }
  BlockCapabilities capabilities() const override { return capabilities_; }
  std::string describe() const override;
  absl::StatusOr<uint64_t> resize(uint64_t bytes) override;

 private:
  // One request the kernel is working on (a slot of the ring). A read or write that the
  // kernel performed partly (a short transfer, or more iovecs than one call takes) is
  // continued from `done` in the same slot.
  struct Op {
    BlockRequest request;
    uint64_t total = 0;        // bytes to transfer (reads and writes)
    uint64_t done = 0;         // bytes transferred so far
    std::vector<iovec> piece;  // the iovecs of the part in flight when not request.iov itself
    int fallocate_mode = 0;    // discards and write-zeroes
  };

  RawFileBackend(std::string path, UniqueFd fd, bool block_device, bool read_only,
                 uint64_t size_bytes, uint32_t block_size, BlockCapabilities capabilities,
                 std::unique_ptr<io_uring> ring, uint32_t slots);

  void reap();
  // Prepares the submission for the op in `slot` (its first part, a continuation or a retry).
  void prepareLocked(uint32_t slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Handles the kernel's result for `slot`: completes the op (appending to `batch`) or
  // prepares its continuation.
  void handleResultLocked(uint32_t slot, int result, std::vector<BlockCompletion>& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void finishLocked(uint32_t slot, BlockResult result, std::vector<BlockCompletion>& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts queued requests while slots are free.
  void startBacklogLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void startLocked(BlockRequest request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the prepared submissions to the kernel.
  void submitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes the reaper look at the queues (a no-op submission that completes at once).
  void wakeReaperLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool idleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const UniqueFd fd_;
  const bool block_device_;
  const bool read_only_;
  const uint32_t block_size_;
  const BlockCapabilities capabilities_;
  const Logger log_;
  mutable LogRateLimiter error_limiter_;

  std::atomic<BlockCompletionSink*> sink_{nullptr};
  InflightCounter inflight_;

  mutable absl::Mutex mu_;
  // The ring's submission side is used under mu_; its completion side by the reaper alone.
  std::unique_ptr<io_uring> ring_;
  uint64_t size_bytes_ ABSL_GUARDED_BY(mu_);
  std::vector<Op> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<uint32_t> free_slots_ ABSL_GUARDED_BY(mu_);
  std::deque<BlockRequest> backlog_ ABSL_GUARDED_BY(mu_);        // waiting for a free slot
  std::vector<uint32_t> unprepared_ ABSL_GUARDED_BY(mu_);        // slots that found the ring full
  std::vector<BlockCompletion> immediate_ ABSL_GUARDED_BY(mu_);  // refused in submit()
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool submit_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::jthread reaper_;  // last: started when everything above exists, joined first
};

}  // namespace flotilla::storage
