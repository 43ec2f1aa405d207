// GuestMemory: the VM's RAM, in one memfd mapped shared (so that other threads, and other
// processes given the fd, can read it), laid out as on a PC: RAM from 0 up to the 32-bit
// MMIO hole at 3 GiB, the rest from 4 GiB. Every access from the VMM goes through its
// bounds-checked accessors: guest addresses and lengths are hostile input.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mmap_region.h"
#include "common/unique_fd.h"
#include "vmm/memory/dirty_bitmap.h"
#include "vmm/memory/guest_address.h"

namespace flotilla::vmm {

class MemoryLoader;

// Start of the 32-bit MMIO hole (LAPIC, IOAPIC, virtio-mmio devices); RAM resumes at 4 GiB.
inline constexpr GuestAddress kMmioHoleStart{0xC000'0000};
inline constexpr GuestAddress kHighRamStart{0x1'0000'0000};
inline constexpr uint64_t kPageSize = 4096;

// Whether the kPageSize bytes at `page` are all zero (snapshots and migrations leave such
// pages out or send them as markers).
bool isZeroPage(const uint8_t* page);

struct GuestRegion {
  GuestAddress base;
  uint64_t size = 0;
  uint64_t fd_offset = 0;  // where the region's bytes start in the memfd

  GuestAddress end() const { return base + size; }
};

// The RAM regions of a VM with `ram_bytes` of memory (a multiple of the page size).
std::vector<GuestRegion> pcMemoryLayout(uint64_t ram_bytes);

class GuestMemory {
 public:
  struct Options {
    bool hugepages = false;  // back RAM with 2 MiB huge pages (they must be reserved)
  };

  // Allocates `ram_bytes` of RAM (lazily: pages take host memory when first touched). Fails
  // with a message naming the problem for a size that is zero, not page aligned, or more than
  // the host has.
  static absl::StatusOr<GuestMemory> create(uint64_t ram_bytes, const Options& options);

  // Not while another thread uses the memory (the device-write tracker is an atomic).
  GuestMemory(GuestMemory&& other) noexcept;
  GuestMemory& operator=(GuestMemory&& other) noexcept;

  const std::vector<GuestRegion>& regions() const { return regions_; }
  uint64_t ramBytes() const { return ram_bytes_; }
  bool hugepages() const { return hugepages_; }
  // The memfd holding all of RAM (region i at regions()[i].fd_offset).
  int fd() const { return memfd_.get(); }
  // All of RAM as mapped, indexed by memfd offset (what snapshots and migration stream).
  std::span<uint8_t> backing() const { return mapping_.bytes(); }
  // The host address where region `index` is mapped (for KVM memory slots).
  uint8_t* hostAddress(size_t index) const { return mapping_.data() + regions_[index].fd_offset; }

  // Memory restored lazily (memory_loader.h) is complete only once its loader is done: code
  // that reads the memfd's extents (snapshots, migration) calls waitLoaded() first.
  void setLoader(std::shared_ptr<MemoryLoader> loader) { loader_ = std::move(loader); }
  absl::Status waitLoaded() const;
  // If the loader fails (see MemoryLoader::onFailure); nothing happens for memory that has
  // no loader.
  void onLoadFailure(std::function<void(const absl::Status&)> handler) const;

  // Whether [addr, addr + length) lies inside one region.
  bool contains(GuestAddress addr, uint64_t length) const;

  // The host bytes of [addr, addr + length); OutOfRange unless they lie inside one region.
  absl::StatusOr<std::span<uint8_t>> span(GuestAddress addr, uint64_t length) const;

  // Gives the host back the memory of [addr, addr + length) (whole pages inside one region):
  // the pages read as zero afterwards. With huge pages this does nothing and returns false,
  // as a 4 KiB page cannot be freed from a huge page.
  absl::StatusOr<bool> discard(GuestAddress addr, uint64_t length) const;

  absl::Status read(GuestAddress addr, std::span<uint8_t> out) const;
  // Also marks the pages written for the device-write tracker (markDeviceWrite()).
  absl::Status write(GuestAddress addr, std::span<const uint8_t> data) const;

  // Dirty tracking of the VMM's own writes into guest memory, which KVM's dirty log does not
  // see (it logs vCPU writes only): while a tracker is set, markDeviceWrite() marks the pages
  // a write touches in it. Virtio queues call it for the buffers and rings they write, and
  // write() and discard() mark what they change. A null tracker stops the marking. Called by
  // the VM's owner (live migration), not concurrently with itself; devices may be marking
  // meanwhile. A tracker that was ever set stays alive as long as this memory, since a device
  // thread may still be marking it after it was replaced.
  void setDeviceDirtyTracker(std::shared_ptr<ConcurrentDirtyBitmap> tracker);
  // Marks the pages of host range [host, host + length) (inside backing()) as written by a
  // device. Nothing when no tracker is set: one atomic load of a pointer. Thread-safe; call
  // it after the bytes were written (or after the last asynchronous write is known complete),
  // so that the migration thread sees them when it sees the mark.
  void markDeviceWrite(const uint8_t* host, uint64_t length) const {
    // Acquire (a plain load on x86, as cheap as relaxed) pairs with the release store in
    // setDeviceDirtyTracker(): the tracker's words are seen initialized.
    ConcurrentDirtyBitmap* tracker = device_dirty_.load(std::memory_order_acquire);
    if (tracker == nullptr) return;
    // Compared as integers: `host` may, through a bug, point outside the mapping.
    const auto begin = reinterpret_cast<uintptr_t>(mapping_.data());
    const auto address = reinterpret_cast<uintptr_t>(host);
    if (address < begin || address - begin >= ram_bytes_) return;
    tracker->markBytes(address - begin, length);
  }

  template <typename T>
  absl::StatusOr<T> readObject(GuestAddress addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    absl::Status status = read(addr, {reinterpret_cast<uint8_t*>(&value), sizeof(T)});
    if (!status.ok()) return status;
    return value;
  }

  template <typename T>
  absl::Status writeObject(GuestAddress addr, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(addr, {reinterpret_cast<const uint8_t*>(&value), sizeof(T)});
  }

 private:
  GuestMemory(UniqueFd memfd, MmapRegion mapping, std::vector<GuestRegion> regions,
              uint64_t ram_bytes, bool hugepages)
      : memfd_(std::move(memfd)),
        mapping_(std::move(mapping)),
        regions_(std::move(regions)),
        ram_bytes_(ram_bytes),
        hugepages_(hugepages) {}

  // The region holding [addr, addr + length), or null.
  const GuestRegion* find(GuestAddress addr, uint64_t length) const;

  UniqueFd memfd_;
  MmapRegion mapping_;  // the whole memfd, regions at their fd offsets
  std::vector<GuestRegion> regions_;
  uint64_t ram_bytes_ = 0;
  bool hugepages_ = false;
  std::shared_ptr<MemoryLoader> loader_;
  std::atomic<ConcurrentDirtyBitmap*> device_dirty_{nullptr};
  // Every tracker ever set (see setDeviceDirtyTracker()); owner-thread only.
  std::vector<std::shared_ptr<ConcurrentDirtyBitmap>> device_dirty_trackers_;
};

}  // namespace flotilla::vmm
