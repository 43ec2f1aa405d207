// Guest RAM in a memfd (see guest_memory.h).
#include "vmm/memory/guest_memory.h"

#include <cstring>

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <string>

#include "common/status.h"
#include "common/units.h"
#include "fmt/format.h"
#include "vmm/memory/memory_loader.h"

namespace flotilla::vmm {

bool isZeroPage(const uint8_t* page) {
  uint64_t any = 0;
  for (size_t i = 0; i < kPageSize; i += sizeof(uint64_t)) {
    uint64_t word = 0;
    std::memcpy(&word, page + i, sizeof(word));
    any |= word;
  }
  return any == 0;
}
namespace {

constexpr uint64_t kHugePageSize = uint64_t{2} << 20;
static_assert(kDirtyPageBytes == kPageSize);

// The host's physical memory (MemTotal in /proc/meminfo), 0 when unknown.
uint64_t hostMemoryBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string name;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> name >> kib >> unit) {
    if (name == "MemTotal:") return kib * 1024;
  }
  return 0;
}

}  // namespace

std::vector<GuestRegion> pcMemoryLayout(uint64_t ram_bytes) {
  const uint64_t low = std::min(ram_bytes, kMmioHoleStart.raw());
  std::vector<GuestRegion> regions = {{GuestAddress(0), low, 0}};
  if (ram_bytes > low) regions.push_back({kHighRamStart, ram_bytes - low, low});
  return regions;
}

absl::StatusOr<GuestMemory> GuestMemory::create(uint64_t ram_bytes, const Options& options) {
  const uint64_t granule = options.hugepages ? kHugePageSize : kPageSize;
  if (ram_bytes == 0 || ram_bytes % granule != 0) {
    return absl::InvalidArgumentError(
        fmt::format("guest memory of {} bytes is invalid: give a non-zero multiple of {}{}",
                    ram_bytes, formatByteSize(granule), options.hugepages ? " (huge pages)" : ""));
  }
  if (uint64_t host = hostMemoryBytes(); host != 0 && ram_bytes > host) {
    return absl::ResourceExhaustedError(
        fmt::format("guest memory of {} is more than this host has ({}): give the VM less memory",
                    formatByteSize(ram_bytes), formatByteSize(host)));
  }

  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  if (options.hugepages) flags |= MFD_HUGETLB | MFD_HUGE_2MB;
  UniqueFd memfd(::memfd_create("flotilla-guest-ram", flags));
  if (!memfd.valid()) return errnoStatus(errno, "creating the guest memory file (memfd_create)");
  if (::ftruncate(memfd.get(), static_cast<off_t>(ram_bytes)) != 0) {
    int error = errno;
    if (options.hugepages) {
      return absl::ResourceExhaustedError(
          fmt::format("cannot reserve {} of huge pages for guest memory ({}): reserve them in "
                      "/proc/sys/vm/nr_hugepages or run without hugepages",
                      formatByteSize(ram_bytes), std::strerror(error)));
    }
    return errnoStatus(error, fmt::format("sizing guest memory to {}", formatByteSize(ram_bytes)));
  }
  // Nobody may shrink the file under the mappings (accesses would then fault).
  if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
    return errnoStatus(errno, "sealing the guest memory file");
  }
  // Huge pages are reserved when mapped (so that a shortage is an error here, not a SIGBUS on
  // first touch); ordinary pages are allocated as the guest touches them.
  const int map_flags = MAP_SHARED | (options.hugepages ? 0 : MAP_NORESERVE);
  auto mapping = MmapRegion::map(ram_bytes, PROT_READ | PROT_WRITE, map_flags, memfd.get());
  if (!mapping.ok()) {
    if (options.hugepages) {
      return absl::ResourceExhaustedError(
          fmt::format("cannot reserve {} of huge pages for guest memory ({}): reserve them in "
                      "/proc/sys/vm/nr_hugepages or run without hugepages",
                      formatByteSize(ram_bytes), mapping.status().message()));
    }
    return annotate(mapping.status(), "mapping guest memory");
  }
  // Guest RAM has no place in a core dump of the VMM.
  ::madvise(mapping->data(), ram_bytes, MADV_DONTDUMP);
  return GuestMemory(std::move(memfd), std::move(*mapping), pcMemoryLayout(ram_bytes), ram_bytes,
                     options.hugepages);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : memfd_(std::move(other.memfd_)),
      mapping_(std::move(other.mapping_)),
      regions_(std::move(other.regions_)),
      ram_bytes_(other.ram_bytes_),
      hugepages_(other.hugepages_),
      loader_(std::move(other.loader_)),
      device_dirty_(other.device_dirty_.exchange(nullptr)),
      device_dirty_trackers_(std::move(other.device_dirty_trackers_)) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& other) noexcept {
  if (this == &other) return *this;
  memfd_ = std::move(other.memfd_);
  mapping_ = std::move(other.mapping_);
  regions_ = std::move(other.regions_);
  ram_bytes_ = other.ram_bytes_;
  hugepages_ = other.hugepages_;
  loader_ = std::move(other.loader_);
  device_dirty_.store(other.device_dirty_.exchange(nullptr));
  device_dirty_trackers_ = std::move(other.device_dirty_trackers_);
  return *this;
}

void GuestMemory::setDeviceDirtyTracker(std::shared_ptr<ConcurrentDirtyBitmap> tracker) {
  ConcurrentDirtyBitmap* raw = tracker.get();
  if (raw != nullptr && std::find(device_dirty_trackers_.begin(), device_dirty_trackers_.end(),
                                  tracker) == device_dirty_trackers_.end()) {
    device_dirty_trackers_.push_back(std::move(tracker));
  }
  device_dirty_.store(raw, std::memory_order_release);
}

const GuestRegion* GuestMemory::find(GuestAddress addr, uint64_t length) const {
  for (const GuestRegion& region : regions_) {
    // Written to avoid overflow for any addr and length.
    if (addr >= region.base && addr - region.base <= region.size &&
        length <= region.size - (addr - region.base)) {
      return &region;
    }
  }
  return nullptr;
}

absl::Status GuestMemory::waitLoaded() const {
  return loader_ ? loader_->waitLoaded() : absl::OkStatus();
}

void GuestMemory::onLoadFailure(std::function<void(const absl::Status&)> handler) const {
  if (loader_) loader_->onFailure(std::move(handler));
}

bool GuestMemory::contains(GuestAddress addr, uint64_t length) const {
  return find(addr, length) != nullptr;
}

absl::StatusOr<std::span<uint8_t>> GuestMemory::span(GuestAddress addr, uint64_t length) const {
  const GuestRegion* region = find(addr, length);
  if (region == nullptr) {
    return absl::OutOfRangeError(
        fmt::format("guest memory range {} + {:#x} is outside the VM's RAM", addr, length));
  }
  uint8_t* host = mapping_.data() + region->fd_offset + (addr - region->base);
  return std::span<uint8_t>(host, length);
}

absl::StatusOr<bool> GuestMemory::discard(GuestAddress addr, uint64_t length) const {
  const GuestRegion* region = find(addr, length);
  if (region == nullptr || addr.raw() % kPageSize != 0 || length % kPageSize != 0) {
    return absl::OutOfRangeError(fmt::format(
        "guest memory range {} + {:#x} is not whole pages of the VM's RAM", addr, length));
  }
  if (hugepages_ || length == 0) return false;
  const uint64_t offset = region->fd_offset + (addr - region->base);
  if (::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    return errnoStatus(errno, fmt::format("freeing guest memory {} + {:#x}", addr, length));
  }
  // The pages now read as zero: a change of content a migration must carry over.
  markDeviceWrite(mapping_.data() + offset, length);
  return true;
}

absl::Status GuestMemory::read(GuestAddress addr, std::span<uint8_t> out) const {
  ASSIGN_OR_RETURN(std::span<uint8_t> source, span(addr, out.size()));
  if (out.empty()) return absl::OkStatus();
  std::memcpy(out.data(), source.data(), out.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::write(GuestAddress addr, std::span<const uint8_t> data) const {
  ASSIGN_OR_RETURN(std::span<uint8_t> target, span(addr, data.size()));
  if (data.empty()) return absl::OkStatus();
  std::memcpy(target.data(), data.data(), data.size());
  markDeviceWrite(target.data(), target.size());
  return absl::OkStatus();
}

}  // namespace flotilla::vmm
