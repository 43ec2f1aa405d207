// Tests of DirtyBitmap (KVM bitmaps merged at any page, runs at word edges) and
// ConcurrentDirtyBitmap (byte ranges to pages, concurrent marking, draining), and of
// GuestMemory's device-write tracker.
#include "vmm/memory/dirty_bitmap.h"

#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using PageRun = std::pair<uint64_t, uint64_t>;

constexpr uint64_t kPage = kDirtyPageBytes;

std::vector<PageRun> runsOf(const DirtyBitmap& bitmap) {
  std::vector<PageRun> runs;
  bitmap.forEachRun([&runs](uint64_t first, uint64_t count) { runs.emplace_back(first, count); });
  return runs;
}

std::vector<uint64_t> setPages(const DirtyBitmap& bitmap) {
  std::vector<uint64_t> pages;
  for (uint64_t page = 0; page < bitmap.pages(); ++page) {
    if (bitmap.test(page)) pages.push_back(page);
  }
  return pages;
}

TEST(DirtyBitmapTest, SetTestCountAndClear) {
  DirtyBitmap bitmap(130);
  EXPECT_EQ(bitmap.pages(), 130u);
  EXPECT_EQ(bitmap.words().size(), 3u);
  EXPECT_EQ(bitmap.count(), 0u);
  bitmap.set(0);
  bitmap.set(63);
  bitmap.set(64);
  bitmap.set(129);
  bitmap.set(129);
  bitmap.set(130);  // beyond the end: ignored
  EXPECT_TRUE(bitmap.test(63));
  EXPECT_FALSE(bitmap.test(62));
  EXPECT_FALSE(bitmap.test(130));
  EXPECT_EQ(bitmap.count(), 4u);
  EXPECT_EQ(bitmap.words()[2], 0b10u) << "nothing set beyond the last page";
  bitmap.clear();
  EXPECT_EQ(bitmap.count(), 0u);
  EXPECT_THAT(runsOf(bitmap), ::testing::IsEmpty());
}

TEST(DirtyBitmapTest, EmptyBitmapDoesNothing) {
  DirtyBitmap empty;
  EXPECT_EQ(empty.pages(), 0u);
  empty.set(0);
  empty.setRange(0, 10);
  empty.setAll();
  const uint64_t word = ~uint64_t{0};
  empty.mergeWords(0, {&word, 1}, 64);
  EXPECT_EQ(empty.count(), 0u);
  EXPECT_THAT(runsOf(empty), ::testing::IsEmpty());
}

TEST(DirtyBitmapTest, SetRangeAcrossWordsAndClippedAtTheEnd) {
  DirtyBitmap bitmap(200);
  bitmap.setRange(60, 70);  // 60..129: the end of word 0, all of word 1, the start of word 2
  EXPECT_EQ(bitmap.count(), 70u);
  EXPECT_FALSE(bitmap.test(59));
  EXPECT_TRUE(bitmap.test(60));
  EXPECT_TRUE(bitmap.test(129));
  EXPECT_FALSE(bitmap.test(130));
  bitmap.setRange(190, 1000);
  EXPECT_EQ(bitmap.count(), 80u);
  bitmap.setRange(0, 0);
  bitmap.setRange(500, 5);
  EXPECT_EQ(bitmap.count(), 80u);
  EXPECT_THAT(runsOf(bitmap), ElementsAre(PageRun{60, 70}, PageRun{190, 10}));
}

TEST(DirtyBitmapTest, SetAllLeavesNoBitBeyondTheEnd) {
  DirtyBitmap bitmap(100);
  bitmap.setAll();
  EXPECT_EQ(bitmap.count(), 100u);
  EXPECT_THAT(runsOf(bitmap), ElementsAre(PageRun{0, 100}));
  DirtyBitmap whole_words(128);
  whole_words.setAll();
  EXPECT_EQ(whole_words.count(), 128u);
  EXPECT_THAT(runsOf(whole_words), ElementsAre(PageRun{0, 128}));
}

TEST(DirtyBitmapTest, MergeOrs) {
  DirtyBitmap a(100);
  DirtyBitmap b(100);
  a.set(1);
  a.set(70);
  b.set(70);
  b.set(99);
  a.merge(b);
  EXPECT_THAT(setPages(a), ElementsAre(1, 70, 99));
  EXPECT_THAT(setPages(b), ElementsAre(70, 99)) << "the other bitmap is unchanged";
}

TEST(DirtyBitmapTest, MergeOfAnotherSizeKeepsToThisOne) {
  DirtyBitmap small(70);
  DirtyBitmap large(200);
  large.setAll();
  small.merge(large);
  EXPECT_EQ(small.count(), 70u);
  EXPECT_THAT(runsOf(small), ElementsAre(PageRun{0, 70}));
}

TEST(DirtyBitmapTest, MergeWordsAtAWordAlignedPage) {
  DirtyBitmap bitmap(256);
  const std::vector<uint64_t> words = {0x8000'0000'0000'0001, 0x3};
  bitmap.mergeWords(64, words, 128);
  EXPECT_THAT(setPages(bitmap), ElementsAre(64, 127, 128, 129));
}

TEST(DirtyBitmapTest, MergeWordsAtAnUnalignedPageSpillsIntoTheNextWord) {
  DirtyBitmap bitmap(300);
  // Bits 0, 1, 63 of word 0 and bit 0, 63 of word 1: pages 10, 11, 73, 74, 137.
  const std::vector<uint64_t> words = {0x8000'0000'0000'0003, 0x8000'0000'0000'0001};
  bitmap.mergeWords(10, words, 128);
  EXPECT_THAT(setPages(bitmap), ElementsAre(10, 11, 73, 74, 137));
  EXPECT_EQ(bitmap.count(), 5u);
}

TEST(DirtyBitmapTest, MergeWordsIgnoresBitsBeyondItsPageCount) {
  DirtyBitmap bitmap(300);
  // KVM pads a slot's bitmap to whole words: only the first 70 bits are pages.
  const std::vector<uint64_t> words = {~uint64_t{0}, ~uint64_t{0}};
  bitmap.mergeWords(5, words, 70);
  EXPECT_EQ(bitmap.count(), 70u);
  EXPECT_THAT(runsOf(bitmap), ElementsAre(PageRun{5, 70}));
  // More pages than the words hold: only what the words hold.
  DirtyBitmap other(300);
  other.mergeWords(33, {words.data(), 1}, 1000);
  EXPECT_THAT(runsOf(other), ElementsAre(PageRun{33, 64}));
}

TEST(DirtyBitmapTest, MergeWordsIsClippedAtTheBitmapsEnd) {
  DirtyBitmap bitmap(100);
  const std::vector<uint64_t> words = {~uint64_t{0}, ~uint64_t{0}};
  bitmap.mergeWords(70, words, 128);
  EXPECT_THAT(runsOf(bitmap), ElementsAre(PageRun{70, 30}));
  EXPECT_EQ(bitmap.words()[1] >> 36, 0u) << "no bit beyond page 99";
  bitmap.mergeWords(100, words, 128);  // starts at the end
  bitmap.mergeWords(~uint64_t{0} - 3, words, 128);
  EXPECT_EQ(bitmap.count(), 30u);
}

TEST(DirtyBitmapTest, MergeWordsMatchesSettingEachPage) {
  // Every start offset within a word, with a pattern crossing three words.
  const std::vector<uint64_t> words = {0xf0f0'0000'ffff'0001, 0x8000'0000'0000'0000,
                                       0x0123'4567'89ab'cdef};
  for (uint64_t first = 0; first < 130; ++first) {
    SCOPED_TRACE(first);
    DirtyBitmap merged(400);
    merged.mergeWords(first, words, 190);
    DirtyBitmap expected(400);
    for (uint64_t i = 0; i < 190; ++i) {
      if ((words[i / 64] >> (i % 64) & 1) != 0) expected.set(first + i);
    }
    ASSERT_EQ(std::vector<uint64_t>(merged.words().begin(), merged.words().end()),
              std::vector<uint64_t>(expected.words().begin(), expected.words().end()));
  }
}

TEST(DirtyBitmapTest, RunsAtWordEdges) {
  DirtyBitmap bitmap(256);
  bitmap.set(0);             // the first page
  bitmap.setRange(63, 2);    // across the first word edge
  bitmap.setRange(128, 64);  // exactly one word
  bitmap.set(255);           // the last page
  EXPECT_THAT(runsOf(bitmap),
              ElementsAre(PageRun{0, 1}, PageRun{63, 2}, PageRun{128, 64}, PageRun{255, 1}));
  bitmap.setRange(191, 1);   // already set: no change
  bitmap.setRange(192, 63);  // joins the word-long run with the last page
  EXPECT_THAT(runsOf(bitmap), ElementsAre(PageRun{0, 1}, PageRun{63, 2}, PageRun{128, 128}));
}

TEST(DirtyBitmapTest, RunsAlternatingAndAtAPartialLastWord) {
  DirtyBitmap bitmap(70);
  for (uint64_t page = 0; page < 70; page += 2) bitmap.set(page);
  const std::vector<PageRun> runs = runsOf(bitmap);
  ASSERT_EQ(runs.size(), 35u);
  EXPECT_EQ(runs.front(), (PageRun{0, 1}));
  EXPECT_EQ(runs.back(), (PageRun{68, 1}));
  DirtyBitmap tail(70);
  tail.setRange(60, 10);  // up to the last page, across a word edge
  EXPECT_THAT(runsOf(tail), ElementsAre(PageRun{60, 10}));
}

TEST(ConcurrentDirtyBitmapTest, MarksEveryPageARangeTouches) {
  ConcurrentDirtyBitmap tracker(100);
  EXPECT_EQ(tracker.pages(), 100u);
  tracker.markBytes(0, 1);                           // page 0
  tracker.markBytes(4095, 2);                        // pages 0 and 1
  tracker.markBytes(10 * kPage, 4096);               // exactly page 10
  tracker.markBytes(20 * kPage + 5, 0);              // empty: nothing
  tracker.markBytes(62 * kPage + 100, 3 * kPage);    // pages 62..65, across a word edge
  tracker.markBytes(99 * kPage, uint64_t{1} << 20);  // clipped at the last page
  tracker.markBytes(100 * kPage, 4096);              // beyond the end: nothing
  tracker.markBytes(~uint64_t{0} - 10, ~uint64_t{0});
  tracker.markBytes(5 * kPage, ~uint64_t{0});  // to the end, without overflowing
  DirtyBitmap out(100);
  tracker.drainInto(out);
  std::vector<PageRun> runs;
  out.forEachRun([&runs](uint64_t first, uint64_t count) { runs.emplace_back(first, count); });
  EXPECT_THAT(runs, ElementsAre(PageRun{0, 2}, PageRun{5, 95}));

  ConcurrentDirtyBitmap exact(100);
  exact.markBytes(62 * kPage + 100, 3 * kPage);
  exact.markBytes(10 * kPage, 4096);
  DirtyBitmap precise(100);
  exact.drainInto(precise);
  EXPECT_THAT(runsOf(precise), ElementsAre(PageRun{10, 1}, PageRun{62, 4}));
}

TEST(ConcurrentDirtyBitmapTest, DrainOrsInAndClears) {
  ConcurrentDirtyBitmap tracker(128);
  tracker.markBytes(3 * kPage, 1);
  DirtyBitmap out(128);
  out.set(100);
  tracker.drainInto(out);
  EXPECT_THAT(setPages(out), ElementsAre(3, 100));
  DirtyBitmap again(128);
  tracker.drainInto(again);
  EXPECT_EQ(again.count(), 0u) << "a drain clears";
  tracker.markBytes(3 * kPage, 1);
  tracker.drainInto(again);
  EXPECT_THAT(setPages(again), ElementsAre(3)) << "a page is marked again after a drain";
}

TEST(ConcurrentDirtyBitmapTest, ConcurrentMarkingLosesNothing) {
  constexpr uint64_t kPages = uint64_t{1} << 18;
  constexpr uint64_t kThreads = 4;
  ConcurrentDirtyBitmap tracker(kPages);
  DirtyBitmap collected(kPages);
  std::atomic<uint64_t> running{kThreads};
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < kThreads; ++t) {
    // Thread t marks each page p with p % kThreads == t exactly once, so that every word is
    // shared by all threads and a mark lost to a race (or to a drain) stays lost.
    threads.emplace_back([&tracker, &running, t] {
      for (uint64_t page = t; page < kPages; page += kThreads) {
        tracker.markBytes(page * 4096 + 17, 1);
      }
      running.fetch_sub(1);
    });
  }
  uint64_t drains = 0;
  while (running.load() > 0) {
    tracker.drainInto(collected);
    ++drains;
  }
  for (std::thread& thread : threads) thread.join();
  tracker.drainInto(collected);
  EXPECT_EQ(collected.count(), kPages) << "after " << drains << " drains during the marking";
}

TEST(GuestMemoryDirtyTrackerTest, WritesAreMarkedOnlyWhileATrackerIsSet) {
  auto memory = GuestMemory::create(uint64_t{16} << 20, {});
  ASSERT_TRUE(memory.ok()) << memory.status();
  const uint64_t pages = memory->backing().size() / kPageSize;
  auto tracker = std::make_shared<ConcurrentDirtyBitmap>(pages);
  ASSERT_TRUE(memory->writeObject<uint64_t>(GuestAddress{0x5000}, 1).ok());  // no tracker yet
  memory->setDeviceDirtyTracker(tracker);
  ASSERT_TRUE(memory->writeObject<uint64_t>(GuestAddress{0x7ffc}, 1).ok());  // pages 7 and 8
  memory->markDeviceWrite(memory->backing().data() + 0x20000, 1);            // page 0x20
  uint8_t outside = 0;
  memory->markDeviceWrite(&outside, 1);  // not guest memory: ignored
  memory->markDeviceWrite(memory->backing().data() + memory->backing().size(), 1);
  DirtyBitmap out(pages);
  tracker->drainInto(out);
  EXPECT_THAT(setPages(out), ElementsAre(7, 8, 0x20));

  // Moving the memory keeps the tracker.
  GuestMemory moved(std::move(*memory));
  ASSERT_TRUE(moved.writeObject<uint8_t>(GuestAddress{0x3000}, 1).ok());
  DirtyBitmap after_move(pages);
  tracker->drainInto(after_move);
  EXPECT_THAT(setPages(after_move), ElementsAre(3));

  moved.setDeviceDirtyTracker(nullptr);
  ASSERT_TRUE(moved.writeObject<uint8_t>(GuestAddress{0x3000}, 2).ok());
  DirtyBitmap none(pages);
  tracker->drainInto(none);
  EXPECT_EQ(none.count(), 0u);
}

TEST(GuestMemoryDirtyTrackerTest, DiscardedPagesAreMarked) {
  auto memory = GuestMemory::create(uint64_t{16} << 20, {});
  ASSERT_TRUE(memory.ok()) << memory.status();
  const uint64_t pages = memory->backing().size() / kPageSize;
  auto tracker = std::make_shared<ConcurrentDirtyBitmap>(pages);
  memory->setDeviceDirtyTracker(tracker);
  auto freed = memory->discard(GuestAddress{0x10000}, 2 * kPageSize);
  ASSERT_TRUE(freed.ok()) << freed.status();
  DirtyBitmap out(pages);
  tracker->drainInto(out);
  EXPECT_THAT(setPages(out), ElementsAre(0x10, 0x11));
}

}  // namespace
}  // namespace flotilla::vmm
