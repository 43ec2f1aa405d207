// Dirty-page tracking of a running VM on /dev/kvm, with the VMM embedded in the test: the test
// guest's `dirty` workload writes its region (64 MiB + 8 MiB) at a steady rate; the pages
// Vm::fetchDirtyLog() reports must be those, a paused VM must stop producing any, and the
// guest must keep running once tracking stops.
#include <fstream>
#include <iostream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/guest_console.h"
#include "tests/support/test_env.h"
#include "tests/support/vmm_process.h"
#include "vmm/vm.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::guestProtocolLines;
using ::flotilla::testing::linesStartingWith;
using ::flotilla::testing::TempDir;

constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr uint64_t kMemoryBytes = uint64_t{128} << 20;
// guest/README.md: the `dirty` region starts at guest address 64 MiB; below 3 GiB the memfd
// offset is the guest address.
constexpr uint64_t kRegionFirstPage = (uint64_t{64} << 20) / kPageSize;
constexpr uint64_t kRegionPages = (uint64_t{8} << 20) / kPageSize;

std::string fileText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t guestLines(const std::string& console, const std::string& start) {
  return linesStartingWith(guestProtocolLines(fileText(console)), start).size();
}

// Waits (generously: this is no performance bound) until the console has more than `count`
// protocol lines starting with `start`.
bool waitForLines(const std::string& console, const std::string& start, size_t count) {
  for (int i = 0; i < 3000; ++i) {
    if (guestLines(console, start) > count) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

uint64_t pagesInRegion(const DirtyBitmap& bitmap) {
  uint64_t count = 0;
  for (uint64_t page = kRegionFirstPage; page < kRegionFirstPage + kRegionPages; ++page) {
    if (bitmap.test(page)) ++count;
  }
  return count;
}

TEST(DirtyLogTest, ReportsThePagesTheGuestWritesAndNothingWhilePaused) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  TempDir dir;
  VmConfig config;
  config.name = "dirty";
  config.kernel = kGuest;
  config.memory_bytes = kMemoryBytes;
  config.vcpus = 1;
  config.cmdline = "workload=dirty dirty_mib=8 rate_mbps=50";
  config.console = {ConsoleConfig::Mode::kFile, dir.file("console")};
  const std::string& console = config.console.path;

  auto created = Vm::create(config);
  ASSERT_TRUE(created.ok()) << created.status();
  Vm& vm = **created;
  const uint64_t total_pages = vm.memory().backing().size() / kPageSize;
  ASSERT_EQ(total_pages, kMemoryBytes / kPageSize);

  DirtyBitmap wrong_size(total_pages + 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(vm.fetchDirtyLog(wrong_size).status()))
      << "fetching before startDirtyLog() is refused";
  EXPECT_TRUE(vm.stopDirtyLog().ok()) << "stopping what never started is fine";

  ASSERT_TRUE(vm.start().ok());
  ASSERT_TRUE(waitForLines(console, "ready workload=dirty", 0)) << fileText(console);

  ASSERT_TRUE(vm.startDirtyLog().ok());
  EXPECT_TRUE(absl::IsInvalidArgument(vm.fetchDirtyLog(wrong_size).status()));
  absl::SleepFor(absl::Milliseconds(300));
  DirtyBitmap running(total_pages);
  auto first = vm.fetchDirtyLog(running);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, running.count());
  const uint64_t in_region = pagesInRegion(running);
  std::cout << "running: " << *first << " dirty pages of " << total_pages << ", " << in_region
            << " of them in the workload's " << kRegionPages << "\n";
  EXPECT_GT(in_region, 0u) << "the guest writes its region all the time";
  // Little more than the region: the guest's stack and data, its clock page.
  EXPECT_LT(*first, total_pages / 4);

  // Paused, the vCPU writes nothing more: the fetch after the pause collects what was written
  // until it, the next one nothing (with manual protect this also shows that the reported
  // pages were cleared, not reported again).
  ASSERT_TRUE(vm.pause().ok());
  DirtyBitmap paused(total_pages);
  auto tail = vm.fetchDirtyLog(paused);
  ASSERT_TRUE(tail.ok()) << tail.status();
  std::cout << "up to the pause: " << *tail << " dirty pages\n";
  EXPECT_LT(*tail, total_pages / 4);
  DirtyBitmap after(total_pages);
  auto none = vm.fetchDirtyLog(after);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, 0u) << "pages reported while the VM is paused";
  // Fetching into a bitmap that already holds the pages adds nothing.
  auto again = vm.fetchDirtyLog(running);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);

  // Pages written again after being fetched are reported again.
  ASSERT_TRUE(vm.resume().ok());
  absl::SleepFor(absl::Milliseconds(300));
  DirtyBitmap resumed(total_pages);
  auto second = vm.fetchDirtyLog(resumed);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_GT(pagesInRegion(resumed), 0u);

  ASSERT_TRUE(vm.stopDirtyLog().ok());
  EXPECT_TRUE(vm.stopDirtyLog().ok()) << "stopping twice is fine";
  EXPECT_TRUE(absl::IsFailedPrecondition(vm.fetchDirtyLog(resumed).status()));

  // Tracking starts over cleanly.
  ASSERT_TRUE(vm.startDirtyLog().ok());
  absl::SleepFor(absl::Milliseconds(100));
  DirtyBitmap restarted(total_pages);
  auto third = vm.fetchDirtyLog(restarted);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_GT(pagesInRegion(restarted), 0u);
  ASSERT_TRUE(vm.stopDirtyLog().ok());

  // The guest keeps running: one more progress line (once a second of guest time).
  const size_t passes = guestLines(console, "dirty pass=");
  EXPECT_TRUE(waitForLines(console, "dirty pass=", passes)) << fileText(console);
  EXPECT_EQ(vm.runState(), Vm::RunState::kRunning);
  EXPECT_THAT(fileText(console), ::testing::Not(::testing::HasSubstr("error")));

  vm.shutdown(absl::ZeroDuration());
  vm.waitForEnd();
}

// With more than 3 GiB the RAM has two memory slots (the second at 4 GiB, memfd offset 3 GiB):
// both are logged and fetched. (The guest never touches RAM above 4 GiB, so a write there comes
// from the VMM, through the device-write path; slot-to-memfd page mapping has unit tests.)
TEST(DirtyLogTest, TracksBothMemorySlots) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  TempDir dir;
  VmConfig config;
  config.name = "dirty-high";
  config.kernel = kGuest;
  config.memory_bytes = (uint64_t{3} << 30) + (uint64_t{64} << 20);
  config.vcpus = 1;
  config.cmdline = "workload=dirty dirty_mib=8 rate_mbps=50";
  config.console = {ConsoleConfig::Mode::kFile, dir.file("console")};

  auto created = Vm::create(config);
  ASSERT_TRUE(created.ok()) << created.status();
  Vm& vm = **created;
  ASSERT_EQ(vm.memory().regions().size(), 2u);
  const uint64_t total_pages = vm.memory().backing().size() / kPageSize;
  ASSERT_TRUE(vm.start().ok());
  ASSERT_TRUE(waitForLines(config.console.path, "ready workload=dirty", 0))
      << fileText(config.console.path);
  ASSERT_TRUE(vm.startDirtyLog().ok());
  // The VMM writes RAM above 4 GiB (guest address 4 GiB + 8 KiB: memfd page 3 GiB / 4 KiB
  // + 2) through GuestMemory::write(), as a device would.
  const uint64_t high_page = vm.memory().regions()[1].fd_offset / kPageSize + 2;
  ASSERT_TRUE(vm.memory().writeObject<uint64_t>(kHighRamStart + 2 * kPageSize, 7).ok());
  absl::SleepFor(absl::Milliseconds(200));
  DirtyBitmap dirty(total_pages);
  auto fetched = vm.fetchDirtyLog(dirty);
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_GT(pagesInRegion(dirty), 0u);
  EXPECT_TRUE(dirty.test(high_page));
  EXPECT_LT(*fetched, total_pages / 4);
  ASSERT_TRUE(vm.stopDirtyLog().ok());
  vm.shutdown(absl::ZeroDuration());
  vm.waitForEnd();
}

}  // namespace
}  // namespace flotilla::vmm
