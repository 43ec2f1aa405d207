// MmapRegion (see mmap_region.h).
#include "common/mmap_region.h"

#include <sys/mman.h>

#include <cerrno>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla {

absl::StatusOr<MmapRegion> MmapRegion::map(size_t size, int prot, int flags, int fd, off_t offset) {
  if (size == 0) return absl::InvalidArgumentError("cannot map an empty region");
  void* addr = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (addr == MAP_FAILED) {
    return errnoStatus(errno, fmt::format("mmap of {} bytes", size));
  }
  return MmapRegion(static_cast<uint8_t*>(addr), size);
}

absl::StatusOr<MmapRegion> MmapRegion::anonymous(size_t size) {
  return map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
}

void MmapRegion::reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace flotilla
