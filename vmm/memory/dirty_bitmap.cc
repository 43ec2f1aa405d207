// DirtyBitmap and ConcurrentDirtyBitmap (see dirty_bitmap.h).
#include "vmm/memory/dirty_bitmap.h"

#include <algorithm>
#include <bit>

namespace flotilla::vmm {
namespace {

constexpr uint64_t kWordBits = 64;
constexpr uint64_t kAllOnes = ~uint64_t{0};

uint64_t wordsFor(uint64_t pages) {
  return (pages + kWordBits - 1) / kWordBits;
}

// The bits [first, first + count) of one word; first < 64, first + count <= 64.
uint64_t bitMask(uint64_t first, uint64_t count) {
  const uint64_t ones = count == kWordBits ? kAllOnes : (uint64_t{1} << count) - 1;
  return ones << first;
}

// Sets the bits of pages [first, first + count) with `apply(word_index, mask)`; the range must
// lie inside the bitmap.
template <typename Apply>
void forEachWordMask(uint64_t first, uint64_t count, Apply&& apply) {
  while (count > 0) {
    const uint64_t bit = first % kWordBits;
    const uint64_t take = std::min(count, kWordBits - bit);
    apply(static_cast<size_t>(first / kWordBits), bitMask(bit, take));
    first += take;
    count -= take;
  }
}

}  // namespace

DirtyBitmap::DirtyBitmap(uint64_t pages)
    : pages_(pages), words_(static_cast<size_t>(wordsFor(pages)), 0) {}

void DirtyBitmap::set(uint64_t page) {
  if (page >= pages_) return;
  words_[static_cast<size_t>(page / kWordBits)] |= uint64_t{1} << (page % kWordBits);
}

void DirtyBitmap::setRange(uint64_t first, uint64_t count) {
  if (first >= pages_) return;
  count = std::min(count, pages_ - first);
  forEachWordMask(first, count, [this](size_t word, uint64_t mask) { words_[word] |= mask; });
}

bool DirtyBitmap::test(uint64_t page) const {
  if (page >= pages_) return false;
  return (words_[static_cast<size_t>(page / kWordBits)] >> (page % kWordBits) & 1) != 0;
}

uint64_t DirtyBitmap::count() const {
  uint64_t total = 0;
  for (uint64_t word : words_) total += static_cast<uint64_t>(std::popcount(word));
  return total;
}

void DirtyBitmap::clear() {
  std::fill(words_.begin(), words_.end(), 0);
}

void DirtyBitmap::setAll() {
  std::fill(words_.begin(), words_.end(), kAllOnes);
  // Bits beyond pages() stay zero: count() and forEachRun() rely on it.
  if (pages_ % kWordBits != 0) words_.back() = bitMask(0, pages_ % kWordBits);
}

void DirtyBitmap::merge(const DirtyBitmap& other) {
  const size_t n = std::min(words_.size(), other.words_.size());
  for (size_t i = 0; i < n; ++i) words_[i] |= other.words_[i];
  // A larger `other` may have bits beyond our last page in our last word.
  if (n > 0 && pages_ % kWordBits != 0) words_.back() &= bitMask(0, pages_ % kWordBits);
}

void DirtyBitmap::mergeWords(uint64_t first_page, std::span<const uint64_t> words, uint64_t pages) {
  if (first_page >= pages_) return;
  pages = std::min({pages, uint64_t{words.size()} * kWordBits, pages_ - first_page});
  const uint64_t shift = first_page % kWordBits;
  const size_t base = static_cast<size_t>(first_page / kWordBits);
  const size_t count = static_cast<size_t>(wordsFor(pages));
  for (size_t k = 0; k < count; ++k) {
    uint64_t word = words[k];
    if (k + 1 == count && pages % kWordBits != 0) word &= bitMask(0, pages % kWordBits);
    if (word == 0) continue;
    // Source bit j lands on page first_page + 64k + j: bit (shift + j) of word base + k,
    // spilling into the next word. Every bit kept is a page below pages(), so the next word
    // exists whenever a bit spills into it.
    words_[base + k] |= word << shift;
    if (shift != 0 && (word >> (kWordBits - shift)) != 0) {
      words_[base + k + 1] |= word >> (kWordBits - shift);
    }
  }
}

void DirtyBitmap::forEachRun(const std::function<void(uint64_t first, uint64_t count)>& fn) const {
  bool in_run = false;
  uint64_t run_start = 0;
  for (size_t i = 0; i < words_.size(); ++i) {
    const uint64_t word = words_[i];
    // Whole words inside or outside a run are skipped without looking at their bits.
    if (word == (in_run ? kAllOnes : 0)) continue;
    uint64_t bit = 0;
    while (bit < kWordBits) {
      // The next bit from `bit` on that ends the current state: a set bit outside a run,
      // a clear bit inside one.
      const uint64_t rest = (in_run ? ~word : word) >> bit;
      if (rest == 0) break;
      bit += static_cast<uint64_t>(std::countr_zero(rest));
      const uint64_t page = i * kWordBits + bit;
      if (in_run) {
        fn(run_start, page - run_start);
      } else {
        run_start = page;
      }
      in_run = !in_run;
    }
  }
  // Bits beyond pages() are zero, so a run still open ends at the last page.
  if (in_run) fn(run_start, pages_ - run_start);
}

ConcurrentDirtyBitmap::ConcurrentDirtyBitmap(uint64_t pages)
    : pages_(pages),
      word_count_(static_cast<size_t>(wordsFor(pages))),
      words_(new std::atomic<uint64_t>[word_count_]()) {}

void ConcurrentDirtyBitmap::markBytes(uint64_t memfd_offset, uint64_t length) {
  if (length == 0) return;
  const uint64_t first = memfd_offset / kDirtyPageBytes;
  if (first >= pages_) return;
  // The last byte's page, computed so that offset + length cannot overflow.
  const uint64_t last =
      first + (length - 1) / kDirtyPageBytes +
      (memfd_offset % kDirtyPageBytes + (length - 1) % kDirtyPageBytes) / kDirtyPageBytes;
  const uint64_t count = std::min(last, pages_ - 1) - first + 1;
  forEachWordMask(first, count, [this](size_t word, uint64_t mask) {
    // Always the read-modify-write, never "load, and skip when already set": the release
    // RMW is what orders the caller's writes before a drain that sees the mark; a skipped
    // mark could be drained before those writes are visible, and then lost.
    words_[word].fetch_or(mask, std::memory_order_release);
  });
}

void ConcurrentDirtyBitmap::drainInto(DirtyBitmap& out) {
  const size_t n = std::min(word_count_, out.words_.size());
  for (size_t i = 0; i < n; ++i) {
    // A word seen as zero is left alone: a mark landing after this load stays for the next
    // drain. Most words are zero, and a load does not take the cache line from a marker.
    if (words_[i].load(std::memory_order_relaxed) == 0) continue;
    out.words_[i] |= words_[i].exchange(0, std::memory_order_acquire);
  }
  // A smaller `out` drops the bits beyond its last page that share its last word.
  if (n > 0 && n == out.words_.size() && out.pages_ % kWordBits != 0) {
    out.words_.back() &= bitMask(0, out.pages_ % kWordBits);
  }
}

}  // namespace flotilla::vmm
