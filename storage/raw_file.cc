// Raw image files and block devices through io_uring (see raw_file.h).
#include "storage/raw_file.h"

#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"

namespace flotilla::storage {
namespace {

// user_data of the no-op submission that wakes the reaper; ops use slot + 1.
constexpr uint64_t kWakeupData = UINT64_MAX;
// Entries of one readv/writev (the kernel refuses more than IOV_MAX, 1024).
constexpr size_t kMaxIovecsPerCall = IOV_MAX;
constexpr uint32_t kMaxQueueDepth = 4096;

const char* fileTypeName(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

// Whether the block device's queue accepts discards (/sys/dev/block/M:m/queue/discard_max_bytes).
bool blockDeviceDiscards(dev_t rdev) {
  std::ifstream in(
      fmt::format("/sys/dev/block/{}:{}/queue/discard_max_bytes", major(rdev), minor(rdev)));
  uint64_t max_bytes = 0;
  return static_cast<bool>(in >> max_bytes) && max_bytes > 0;
}

absl::Status missingImage(const std::string& path) {
  return absl::NotFoundError(fmt::format(
      "disk image {0} does not exist: create it with `truncate -s 10G {0}` or `qemu-img create "
      "-f raw {0} 10G`",
      path));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlockBackend>> openRawFile(const std::string& path,
                                                          const RawFileOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<RawFileBackend> backend, RawFileBackend::open(path, options));
  return std::unique_ptr<BlockBackend>(std::move(backend));
}

absl::StatusOr<std::unique_ptr<RawFileBackend>> RawFileBackend::open(
    const std::string& path, const RawFileOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("disk image path is empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int error = errno;
    if (error == ENOENT) return missingImage(path);
    if (error == EACCES) {
      return absl::PermissionDeniedError(fmt::format(
          "cannot reach disk image {}: permission denied on a directory of its path; give the "
          "VMM's user search (x) permission on every directory",
          path));
    }
    return errnoStatus(error, fmt::format("cannot look at disk image {}", path));
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return absl::InvalidArgumentError(
        fmt::format("disk image {} is {}, not a raw image file or a block device", path,
                    fileTypeName(st.st_mode)));
  }

  const int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd.valid()) {
    const int error = errno;
    if (error == ENOENT) return missingImage(path);
    if (error == EACCES || error == EPERM || error == EROFS) {
      return absl::PermissionDeniedError(fmt::format(
          "cannot open disk image {} for {}: {}; give the VMM's user access to it (chmod, chown){}",
          path, options.read_only ? "reading" : "reading and writing", std::strerror(error),
          options.read_only ? "" : " or attach it read-only"));
    }
    return errnoStatus(error, fmt::format("cannot open disk image {}", path));
  }
  if (::fstat(fd.get(), &st) != 0) {
    return errnoStatus(errno, fmt::format("cannot look at disk image {}", path));
  }

  const bool block_device = S_ISBLK(st.st_mode);
  uint64_t size_bytes = 0;
  uint32_t block_size = 512;
  if (block_device) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size_bytes) != 0) {
      return errnoStatus(errno, fmt::format("reading the size of block device {}", path));
    }
    int logical_block = 0;
    if (::ioctl(fd.get(), BLKSSZGET, &logical_block) != 0) {
      return errnoStatus(errno, fmt::format("reading the block size of block device {}", path));
    }
    block_size = static_cast<uint32_t>(logical_block);
  } else {
    size_bytes = static_cast<uint64_t>(st.st_size);
    if (size_bytes == 0) {
      return absl::FailedPreconditionError(
          fmt::format("disk image {0} is empty: give it a size with `truncate -s 10G {0}`", path));
    }
    if (size_bytes % block_size != 0) {
      return absl::FailedPreconditionError(
          fmt::format("disk image {0} is {1} bytes, not a multiple of {2}: round it up with "
                      "`truncate -s %{2} {0}`",
                      path, size_bytes, block_size));
    }
  }

  const uint32_t depth = std::clamp<uint32_t>(options.queue_depth, 1, kMaxQueueDepth);
  auto ring = std::make_unique<io_uring>();
  // The submission queue holds what one locked section prepares: at most one submission per
  // slot plus the reaper's wake-up; completions get twice that (the kernel's default).
  if (int rc = io_uring_queue_init(depth + 1, ring.get(), 0); rc < 0) {
    return absl::FailedPreconditionError(fmt::format(
        "cannot set up io_uring for disk image {}: {}; raw images need io_uring (Linux 5.6 or "
        "later, sysctl kernel.io_uring_disabled=0, enough locked memory)",
        path, std::strerror(-rc)));
  }
  bool can_fallocate = false;
  bool can_rw = false;
  if (io_uring_probe* probe = io_uring_get_probe_ring(ring.get()); probe != nullptr) {
    can_rw = io_uring_opcode_supported(probe, IORING_OP_READV) &&
             io_uring_opcode_supported(probe, IORING_OP_WRITEV) &&
             io_uring_opcode_supported(probe, IORING_OP_FSYNC);
    can_fallocate = io_uring_opcode_supported(probe, IORING_OP_FALLOCATE);
    io_uring_free_probe(probe);
  }
  if (!can_rw) {
    io_uring_queue_exit(ring.get());
    return absl::FailedPreconditionError(fmt::format(
        "cannot use io_uring for disk image {}: the kernel lacks vectored reads/writes or fsync "
        "in io_uring (Linux 5.6 or later is needed)",
        path));
  }

  BlockCapabilities capabilities;
  capabilities.flush = !options.read_only;
  if (!options.read_only && can_fallocate) {
    if (block_device) {
      capabilities.discard = blockDeviceDiscards(st.st_rdev);
      capabilities.write_zeroes = true;  // the kernel writes zeroes where the device cannot
    } else {
      // Punching a hole past the end of the file changes nothing and tells whether the file
      // system can punch holes at all (ext4, xfs, btrfs and tmpfs can).
      const bool punches = ::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                       static_cast<off_t>(size_bytes), block_size) == 0;
      capabilities.discard = punches;
      capabilities.write_zeroes = punches;  // ZERO_RANGE, else a punched hole
    }
  }

  return std::unique_ptr<RawFileBackend>(
      new RawFileBackend(path, std::move(fd), block_device, options.read_only, size_bytes,
                         block_size, capabilities, std::move(ring), depth));
}

RawFileBackend::RawFileBackend(std::string path, UniqueFd fd, bool block_device, bool read_only,
                               uint64_t size_bytes, uint32_t block_size,
                               BlockCapabilities capabilities, std::unique_ptr<io_uring> ring,
                               uint32_t slots)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      block_device_(block_device),
      read_only_(read_only),
      block_size_(block_size),
      capabilities_(capabilities),
      log_(Logger("storage").with("disk", path_)),
      error_limiter_(systemClock(), 10, absl::Minutes(1)),
      ring_(std::move(ring)),
      size_bytes_(size_bytes),
      slots_(slots) {
  free_slots_.reserve(slots);
  for (uint32_t i = slots; i > 0; --i) free_slots_.push_back(i - 1);
  reaper_ = namedThread("blk-uring", [this] { reap(); });
}

RawFileBackend::~RawFileBackend() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // What has not reached the kernel fails now; what has is waited for by the reaper.
    for (BlockRequest& request : backlog_) {
      immediate_.push_back(BlockCompletion{request.tag, BlockResult::kIoError});
    }
    backlog_.clear();
    for (uint32_t slot : unprepared_) {
      immediate_.push_back(BlockCompletion{slots_[slot].request.tag, BlockResult::kIoError});
      free_slots_.push_back(slot);
    }
    unprepared_.clear();
    wakeReaperLocked();
    submitLocked();
  }
  reaper_.join();
  io_uring_queue_exit(ring_.get());
}

void RawFileBackend::setCompletionSink(BlockCompletionSink* sink) {
  sink_.store(sink, std::memory_order_release);
}

std::string RawFileBackend::describe() const {
  return fmt::format("{} {}", block_device_ ? "block device" : "file", path_);
}

uint64_t RawFileBackend::sizeBytes() const {
  absl::MutexLock lock(&mu_);
  return size_bytes_;
}

void RawFileBackend::submit(std::span<BlockRequest> requests) {
  if (requests.empty()) return;
  inflight_.add(requests.size());
  absl::MutexLock lock(&mu_);
  const size_t refused_before = immediate_.size();
  for (BlockRequest& request : requests) {
    std::string problem = checkRequest(request, size_bytes_, block_size_, read_only_);
    if (!problem.empty()) {
      log_.limited(error_limiter_, LogLevel::kWarn, "refused request: {}", problem);
      immediate_.push_back(BlockCompletion{request.tag, BlockResult::kIoError});
      continue;
    }
    if ((request.op == BlockOp::kDiscard && !capabilities_.discard) ||
        (request.op == BlockOp::kWriteZeroes && !capabilities_.write_zeroes)) {
      immediate_.push_back(BlockCompletion{request.tag, BlockResult::kUnsupported});
      continue;
    }
    if (request.op != BlockOp::kFlush && requestBytes(request) == 0) {
      immediate_.push_back(BlockCompletion{request.tag, BlockResult::kOk});
      continue;
    }
    if (!free_slots_.empty() && backlog_.empty()) {
      startLocked(std::move(request));
    } else {
      backlog_.push_back(std::move(request));  // started by the reaper when a slot frees
    }
  }
  if (immediate_.size() != refused_before) wakeReaperLocked();
  submitLocked();
}

void RawFileBackend::startLocked(BlockRequest request) {
  const uint32_t slot = free_slots_.back();
  free_slots_.pop_back();
  Op& op = slots_[slot];
  op.request = std::move(request);
  op.total = requestBytes(op.request);
  op.done = 0;
  op.piece.clear();
  op.fallocate_mode = op.request.op == BlockOp::kDiscard
                          ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                          : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
  prepareLocked(slot);
}

void RawFileBackend::startBacklogLocked() {
  while (!backlog_.empty() && !free_slots_.empty() && unprepared_.empty()) {
    BlockRequest request = std::move(backlog_.front());
    backlog_.pop_front();
    startLocked(std::move(request));
  }
}

void RawFileBackend::prepareLocked(uint32_t slot) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    submitLocked();
    sqe = io_uring_get_sqe(ring_.get());
  }
  if (sqe == nullptr) {
    unprepared_.push_back(slot);  // the reaper retries once the kernel took the queue
    return;
  }
  Op& op = slots_[slot];
  const int fd = fd_.get();
  switch (op.request.op) {
    case BlockOp::kRead:
    case BlockOp::kWrite: {
      const iovec* iov = op.request.iov.data();
      size_t count = op.request.iov.size();
      if (op.done > 0 || count > kMaxIovecsPerCall) {
        op.piece = sliceIovecs(op.request.iov, op.done, op.total - op.done, kMaxIovecsPerCall);
        iov = op.piece.data();
        count = op.piece.size();
      }
      const uint64_t offset = op.request.offset + op.done;
      if (op.request.op == BlockOp::kRead) {
        io_uring_prep_readv(sqe, fd, iov, static_cast<unsigned>(count), offset);
      } else {
        io_uring_prep_writev(sqe, fd, iov, static_cast<unsigned>(count), offset);
      }
      break;
    }
    case BlockOp::kFlush:
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      break;
    case BlockOp::kDiscard:
    case BlockOp::kWriteZeroes:
      io_uring_prep_fallocate(sqe, fd, op.fallocate_mode, static_cast<off_t>(op.request.offset),
                              static_cast<off_t>(op.request.length));
      break;
  }
  io_uring_sqe_set_data64(sqe, uint64_t{slot} + 1);
}

void RawFileBackend::submitLocked() {
  if (io_uring_sq_ready(ring_.get()) == 0) {
    submit_failed_ = false;
    return;
  }
  int rc = 0;
  do {
    rc = io_uring_submit(ring_.get());
  } while (rc == -EINTR);
  // EAGAIN/EBUSY (the kernel is short of memory or has completions to hand out first): the
  // submissions stay queued and the reaper submits them again shortly.
  submit_failed_ = rc < 0;
  if (rc < 0) {
    log_.limited(error_limiter_, LogLevel::kWarn, "io_uring submit: {} (will retry)",
                 std::strerror(-rc));
  }
}

void RawFileBackend::wakeReaperLocked() {
  if (wake_pending_) return;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) {
    submitLocked();
    sqe = io_uring_get_sqe(ring_.get());
  }
  // With the ring full, completions are due anyway and wake the reaper.
  if (sqe == nullptr) return;
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, kWakeupData);
  wake_pending_ = true;
}

bool RawFileBackend::idleLocked() const {
  return free_slots_.size() == slots_.size() && backlog_.empty() && immediate_.empty() &&
         unprepared_.empty();
}

void RawFileBackend::finishLocked(uint32_t slot, BlockResult result,
                                  std::vector<BlockCompletion>& batch) {
  Op& op = slots_[slot];
  batch.push_back(BlockCompletion{op.request.tag, result});
  op.request.iov.clear();
  op.piece.clear();
  free_slots_.push_back(slot);
}

void RawFileBackend::handleResultLocked(uint32_t slot, int result,
                                        std::vector<BlockCompletion>& batch) {
  Op& op = slots_[slot];
  const BlockOp kind = op.request.op;
  // Interrupted or out of resources for the moment: the same submission again.
  if ((result == -EAGAIN || result == -EINTR) && !stopping_) {
    prepareLocked(slot);
    return;
  }
  if (kind == BlockOp::kRead || kind == BlockOp::kWrite) {
    if (result < 0) {
      log_.limited(error_limiter_, LogLevel::kError, "{} of {} bytes at offset {} failed: {}",
                   blockOpName(kind), op.total - op.done, op.request.offset + op.done,
                   std::strerror(-result));
      finishLocked(slot, BlockResult::kIoError, batch);
      return;
    }
    if (result == 0) {
      if (kind == BlockOp::kRead) {
        // End of file inside the disk (the file was shortened behind our back): the rest of
        // the disk reads as zeroes, as a hole would.
        zeroIovecsFrom(op.request.iov, op.done);
        finishLocked(slot, BlockResult::kOk, batch);
      } else {
        log_.limited(error_limiter_, LogLevel::kError,
                     "write at offset {} made no progress ({} bytes left)",
                     op.request.offset + op.done, op.total - op.done);
        finishLocked(slot, BlockResult::kIoError, batch);
      }
      return;
    }
    op.done += static_cast<uint64_t>(result);
    if (op.done >= op.total) {
      finishLocked(slot, BlockResult::kOk, batch);
    } else if (stopping_) {
      finishLocked(slot, BlockResult::kIoError, batch);
    } else {
      prepareLocked(slot);  // a short transfer: the remainder
    }
    return;
  }
  if (result == 0) {
    finishLocked(slot, BlockResult::kOk, batch);
    return;
  }
  if (result == -EOPNOTSUPP && kind == BlockOp::kWriteZeroes &&
      (op.fallocate_mode & FALLOC_FL_ZERO_RANGE) != 0 && !block_device_ && !stopping_) {
    // The file system cannot zero a range in place; a hole reads back as zeroes too.
    op.fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    prepareLocked(slot);
    return;
  }
  if (result == -EOPNOTSUPP) {
    finishLocked(slot, BlockResult::kUnsupported, batch);
    return;
  }
  log_.limited(error_limiter_, LogLevel::kError, "{} at offset {} ({} bytes) failed: {}",
               blockOpName(kind), op.request.offset, op.request.length, std::strerror(-result));
  finishLocked(slot, BlockResult::kIoError, batch);
}

void RawFileBackend::reap() {
  std::vector<io_uring_cqe*> cqes(slots_.size() + 8);
  std::vector<std::pair<uint64_t, int>> results;
  std::vector<BlockCompletion> batch;
  while (true) {
    bool retry_soon = false;
    {
      absl::MutexLock lock(&mu_);
      retry_soon = submit_failed_ || !unprepared_.empty();
    }
    io_uring_cqe* cqe = nullptr;
    int rc = 0;
    if (retry_soon) {
      __kernel_timespec timeout{.tv_sec = 0, .tv_nsec = 1'000'000};
      rc = io_uring_wait_cqe_timeout(ring_.get(), &cqe, &timeout);
    } else {
      rc = io_uring_wait_cqe(ring_.get(), &cqe);
    }
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN) {
      log_.limited(error_limiter_, LogLevel::kError, "io_uring wait: {}", std::strerror(-rc));
    }
    results.clear();
    const unsigned count =
        io_uring_peek_batch_cqe(ring_.get(), cqes.data(), static_cast<unsigned>(cqes.size()));
    for (unsigned i = 0; i < count; ++i) results.emplace_back(cqes[i]->user_data, cqes[i]->res);
    io_uring_cq_advance(ring_.get(), count);

    bool done = false;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [data, result] : results) {
        if (data == kWakeupData) {
          wake_pending_ = false;
          continue;
        }
        handleResultLocked(static_cast<uint32_t>(data - 1), result, batch);
      }
      // Slots that found the ring full, then queued requests, get their turn.
      std::vector<uint32_t> waiting = std::move(unprepared_);
      unprepared_.clear();
      for (uint32_t slot : waiting) prepareLocked(slot);
      if (!stopping_) startBacklogLocked();
      batch.insert(batch.end(), immediate_.begin(), immediate_.end());
      immediate_.clear();
      submitLocked();
      done = stopping_ && idleLocked();
    }
    if (!batch.empty()) {
      BlockCompletionSink* sink = sink_.load(std::memory_order_acquire);
      if (sink == nullptr) {
        log_.error("completions without a completion sink: setCompletionSink() was not called");
        std::abort();
      }
      sink->completed(batch);
      inflight_.done(batch.size());
      batch.clear();
    }
    if (done) return;
  }
}

absl::Status RawFileBackend::drain() {
  inflight_.waitIdle();
  if (read_only_) return absl::OkStatus();
  int rc = 0;
  do {
    rc = ::fdatasync(fd_.get());
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return errnoStatus(errno, fmt::format("flushing disk image {}", path_));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RawFileBackend::resize(uint64_t bytes) {
  if (bytes == 0 || bytes % block_size_ != 0) {
    return absl::InvalidArgumentError(
        fmt::format("cannot resize {} to {} bytes: the size must be a non-zero multiple of {}",
                    describe(), bytes, block_size_));
  }
  if (block_device_) {
    // A block device is resized by whoever owns it (lvresize, ...); see what it is now.
    uint64_t now = 0;
    if (::ioctl(fd_.get(), BLKGETSIZE64, &now) != 0) {
      return errnoStatus(errno, fmt::format("reading the size of block device {}", path_));
    }
    absl::MutexLock lock(&mu_);
    size_bytes_ = now;
    if (now != bytes) {
      return absl::FailedPreconditionError(fmt::format(
          "block device {} is {} bytes, not {}: resize the device itself (lvresize, ...) first",
          path_, now, bytes));
    }
    return now;
  }
  if (read_only_) {
    return absl::FailedPreconditionError(
        fmt::format("cannot resize {}: it is attached read-only", describe()));
  }
  if (::ftruncate(fd_.get(), static_cast<off_t>(bytes)) != 0) {
    return errnoStatus(errno, fmt::format("resizing disk image {} to {} bytes", path_, bytes));
  }
  absl::MutexLock lock(&mu_);
  size_bytes_ = bytes;
  return bytes;
}

}  // namespace flotilla::storage
