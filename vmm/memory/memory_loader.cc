// MemoryLoader (see memory_loader.h). userfaultfd(2): a missing-page fault in a registered
// range is reported as a message on the uffd and the faulting thread sleeps until the page
// is filled (UFFDIO_COPY, UFFDIO_ZEROPAGE). KVM's own accesses to guest memory fault the
// same way, so vCPUs wait for exactly the pages they need.
#include "vmm/memory/memory_loader.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"
#include "common/units.h"
#include "fmt/format.h"
#include "vmm/memory/extents.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {
namespace {

// How much the background pass copies between two looks at pending faults: small enough
// that a faulting vCPU waits about a millisecond at most.
constexpr uint64_t kPrefetchChunk = 256 * 1024;
// What a fault brings in at once: the guest usually goes on touching the next pages.
constexpr uint64_t kFaultChunk = 64 * 1024;

uint64_t alignDown(uint64_t value, uint64_t alignment) {
  return value / alignment * alignment;
}

}  // namespace

absl::StatusOr<std::shared_ptr<MemoryLoader>> MemoryLoader::start(const GuestMemory& memory,
                                                                  UniqueFd file, std::string path,
                                                                  bool allow_lazy) {
  ASSIGN_OR_RETURN(std::vector<Extent> extents, dataExtents(file.get(), memory.ramBytes(), path));
  MmapRegion source;
  if (!extents.empty()) {
    ASSIGN_OR_RETURN(source, MmapRegion::map(memory.ramBytes(), PROT_READ, MAP_SHARED, file.get()));
  }
  std::shared_ptr<MemoryLoader> loader(new MemoryLoader(memory.backing().data(), memory.ramBytes(),
                                                        std::move(file), std::move(path),
                                                        std::move(source), std::move(extents)));
  loader->started_ = systemClock().monotonicNow();
  absl::Status lazy = allow_lazy ? loader->startLazily()
                                 : absl::FailedPreconditionError("huge pages are loaded eagerly");
  if (lazy.ok()) return loader;
  Logger("vmm").info("loading guest memory before the VM starts ({})", lazy.message());
  RETURN_IF_ERROR(loader->loadEagerly());
  return loader;
}

MemoryLoader::~MemoryLoader() {
  if (stop_.valid()) {
    uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status MemoryLoader::startLazily() {
  // Kernel-mode faults (KVM's) need a userfaultfd that is not user-mode-only, which needs
  // CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1.
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!uffd.valid()) return errnoStatus(errno, "userfaultfd");
  uffdio_api api{};
  api.api = UFFD_API;
  if (::ioctl(uffd.get(), UFFDIO_API, &api) != 0) return errnoStatus(errno, "UFFDIO_API");
  uffdio_register range{};
  range.range.start = reinterpret_cast<uint64_t>(guest_);
  range.range.len = size_;
  range.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (::ioctl(uffd.get(), UFFDIO_REGISTER, &range) != 0) {
    return errnoStatus(errno, "registering guest memory with userfaultfd");
  }
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return errnoStatus(errno, "eventfd");
  uffd_ = std::move(uffd);
  stop_ = std::move(stop);
  {
    absl::MutexLock lock(&mu_);
    stats_.lazy = true;
  }
  thread_ = std::thread([this] {
    setCurrentThreadName("memory-loader");
    serve();
  });
  return absl::OkStatus();
}

absl::Status MemoryLoader::loadEagerly() {
  // Two threads: on this machine the cost is the kernel's per-page work, which scales.
  auto loadHalf = [this](size_t half, absl::Status* result, uint64_t* loaded) {
    for (size_t i = half; i < extents_.size(); i += 2) {
      uint64_t done = 0;
      while (done < extents_[i].length) {
        uint64_t at = extents_[i].offset + done;
        ssize_t n =
            ::pread(file_.get(), guest_ + at, extents_[i].length - done, static_cast<off_t>(at));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          *result = errnoStatus(n < 0 ? errno : EIO, fmt::format("reading {}", path_));
          return;
        }
        done += static_cast<uint64_t>(n);
        *loaded += static_cast<uint64_t>(n);
      }
    }
  };
  absl::Status first, second;
  uint64_t first_loaded = 0, second_loaded = 0;
  std::thread helper(loadHalf, 1, &second, &second_loaded);
  loadHalf(0, &first, &first_loaded);
  helper.join();
  {
    absl::MutexLock lock(&mu_);
    stats_.bytes_loaded = first_loaded + second_loaded;
  }
  absl::Status status = first.ok() ? second : first;
  finish(status);
  return status;
}

absl::Status MemoryLoader::copyIn(uint64_t offset, uint64_t length) {
  while (length > 0) {
    uffdio_copy copy{};
    copy.dst = reinterpret_cast<uint64_t>(guest_ + offset);
    copy.src = reinterpret_cast<uint64_t>(source_.data() + offset);
    copy.len = length;
    if (::ioctl(uffd_.get(), UFFDIO_COPY, &copy) == 0) {
      absl::MutexLock lock(&mu_);
      stats_.bytes_loaded += length;
      return absl::OkStatus();
    }
    const int error = errno;
    uint64_t copied = copy.copy > 0 ? static_cast<uint64_t>(copy.copy) : 0;
    {
      absl::MutexLock lock(&mu_);
      stats_.bytes_loaded += copied;
    }
    offset += copied;
    length -= copied;
    if (error == EEXIST) {  // already there (a fault brought it in): skip that page
      offset += kPageSize;
      length -= std::min(length, kPageSize);
    } else if (error != EAGAIN) {
      return errnoStatus(error, fmt::format("copying guest memory from {}", path_));
    }
  }
  return absl::OkStatus();
}

absl::Status MemoryLoader::serveFault(uint64_t address) {
  const uint64_t page = alignDown(address - reinterpret_cast<uint64_t>(guest_), kPageSize);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.faults_served;
  }
  for (const Extent& extent : extents_) {
    if (page >= extent.offset && page < extent.offset + extent.length) {
      uint64_t end = std::min(extent.offset + extent.length, page + kFaultChunk);
      return copyIn(page, end - page);
    }
  }
  // A hole in the file: a page of zeros.
  uffdio_zeropage zero{};
  zero.range.start = reinterpret_cast<uint64_t>(guest_) + page;
  zero.range.len = kPageSize;
  if (::ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &zero) != 0 && errno != EEXIST) {
    return errnoStatus(errno, "filling a zero page of guest memory");
  }
  return absl::OkStatus();
}

void MemoryLoader::serve() {
  size_t extent = 0;
  uint64_t done = 0;  // of extents_[extent]
  std::array<uffd_msg, 16> messages;
  while (true) {
    if (extent == extents_.size()) {
      // Everything in the file is in: the rest (holes) are ordinary zero-filled pages, so the
      // range goes back to the kernel, which also wakes any thread still waiting on it.
      uffdio_range range{reinterpret_cast<uint64_t>(guest_), size_};
      if (::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range) != 0) {
        finish(errnoStatus(errno, "unregistering guest memory from userfaultfd"));
        return;
      }
      // UNREGISTER wakes the faults already waiting, but a fault can start waiting after that
      // wake-up and before UNREGISTER detaches the range (seen on Linux 6.18, whose faults
      // run under the per-VMA lock rather than mmap_lock); nothing would ever wake it. Once
      // UNREGISTER returned no new fault can come: wake whoever is still waiting.
      if (::ioctl(uffd_.get(), UFFDIO_WAKE, &range) != 0) {
        finish(errnoStatus(errno, "waking the threads waiting for guest memory"));
        return;
      }
      finish(absl::OkStatus());
      return;
    }
    pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    // Faults first, without waiting for them: there is background work to do.
    int ready = ::poll(fds, 2, 0);
    if (ready < 0 && errno != EINTR) {
      finish(errnoStatus(errno, "waiting for guest memory faults"));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (fds[0].revents & POLLIN) {
      ssize_t n = ::read(uffd_.get(), messages.data(), sizeof(messages));
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
        if (messages[static_cast<size_t>(i)].event != UFFD_EVENT_PAGEFAULT) continue;
        absl::Status served = serveFault(messages[static_cast<size_t>(i)].arg.pagefault.address);
        if (!served.ok()) {
          finish(served);
          return;
        }
      }
      continue;
    }
    uint64_t length = std::min(kPrefetchChunk, extents_[extent].length - done);
    absl::Status copied = copyIn(extents_[extent].offset + done, length);
    if (!copied.ok()) {
      finish(copied);
      return;
    }
    done += length;
    if (done == extents_[extent].length) {
      ++extent;
      done = 0;
    }
  }
}

void MemoryLoader::onFailure(std::function<void(const absl::Status&)> handler) {
  absl::Status failed;
  {
    absl::MutexLock lock(&mu_);
    if (!done_ || status_.ok()) {
      on_failure_ = std::move(handler);
      return;
    }
    failed = status_;
  }
  handler(failed);
}

void MemoryLoader::finish(absl::Status status) {
  std::function<void(const absl::Status&)> on_failure;
  absl::MutexLock lock(&mu_);
  done_ = true;
  status_ = std::move(status);
  stats_.elapsed = systemClock().monotonicNow() - started_;
  if (!status_.ok()) {
    // A page that cannot be loaded leaves whoever needs it waiting forever: say so loudly,
    // and let the owner end the VM.
    Logger("vmm").error("loading guest memory from {} failed: {}", path_, status_.message());
    if (on_failure_) {
      on_failure = std::move(on_failure_);
      absl::Status failed = status_;
      mu_.Unlock();
      on_failure(failed);
      mu_.Lock();
    }
    return;
  }
  Logger("vmm").info("guest memory loaded{}: {} in {}, {} pages on demand",
                     stats_.lazy ? " while the VM ran" : "", formatByteSize(stats_.bytes_loaded),
                     absl::FormatDuration(stats_.elapsed), stats_.faults_served);
}

absl::Status MemoryLoader::waitLoaded() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&done_));
  return status_;
}

MemoryLoadStats MemoryLoader::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace flotilla::vmm
