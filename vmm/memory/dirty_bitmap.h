// Dirty-page bitmaps for live migration: one bit per 4 KiB page of guest RAM, indexed by the
// page's offset in the guest-memory memfd divided by 4096 (GuestMemory::backing()).
// DirtyBitmap is the migration thread's plain set of pages; ConcurrentDirtyBitmap collects the
// pages that device threads write, lock-free, until the migration thread drains it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace flotilla::vmm {

// The page size of dirty tracking (KVM's dirty log is per 4 KiB page, huge pages or not).
inline constexpr uint64_t kDirtyPageBytes = 4096;

// A set of pages. Pages at or beyond pages() are ignored by every operation (test() says
// false), so that a bitmap from KVM, padded to whole 64-bit words, can be merged as it is.
// Not thread-safe.
class DirtyBitmap {
 public:
  explicit DirtyBitmap(uint64_t pages = 0);

  uint64_t pages() const { return pages_; }
  void set(uint64_t page);
  void setRange(uint64_t first, uint64_t count);
  bool test(uint64_t page) const;
  // How many pages are set.
  uint64_t count() const;
  void clear();
  void setAll();
  // ORs in `other`, which must have as many pages (pages only one of them has are ignored).
  void merge(const DirtyBitmap& other);
  // ORs in a bitmap as KVM_GET_DIRTY_LOG returns it: bit i (bit i % 64 of the little-endian
  // 64-bit word i / 64) is page first_page + i, for i < `pages`; first_page need not be a
  // multiple of 64 (a memory slot may start anywhere in the memfd).
  void mergeWords(uint64_t first_page, std::span<const uint64_t> words, uint64_t pages);
  // Calls fn(first, count) for each maximal run of set pages, in increasing order.
  void forEachRun(const std::function<void(uint64_t first, uint64_t count)>& fn) const;
  // The bits, page i at bit i % 64 of word i / 64; bits beyond pages() are zero.
  std::span<const uint64_t> words() const { return words_; }

 private:
  friend class ConcurrentDirtyBitmap;

  uint64_t pages_ = 0;
  std::vector<uint64_t> words_;
};

// Pages written by device threads (virtio): marked concurrently and lock-free, collected by
// the migration thread. Ordering: a thread marks a range after (or while) it writes it, with a
// release fetch_or; drainInto() takes each word with an acquire exchange. So a page whose mark
// the migration thread drained shows it every byte written before the mark, and a page
// written again after a drain is marked again: no write is missed by the next drain.
class ConcurrentDirtyBitmap {
 public:
  explicit ConcurrentDirtyBitmap(uint64_t pages);
  ConcurrentDirtyBitmap(const ConcurrentDirtyBitmap&) = delete;
  ConcurrentDirtyBitmap& operator=(const ConcurrentDirtyBitmap&) = delete;

  uint64_t pages() const { return pages_; }
  // Marks every page that [memfd_offset, memfd_offset + length) touches (nothing for an
  // empty range; pages beyond pages() are ignored). Thread-safe, lock-free.
  void markBytes(uint64_t memfd_offset, uint64_t length);
  // ORs the marked pages into `out` (which should have pages() pages) and clears them.
  // Thread-safe against markBytes(); one drainer at a time.
  void drainInto(DirtyBitmap& out);

 private:
  const uint64_t pages_;
  const size_t word_count_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace flotilla::vmm
