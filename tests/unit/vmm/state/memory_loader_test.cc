// Tests of MemoryLoader: guest memory filled from a sparse memory file, byte for byte with
// zeros in the holes, lazily through userfaultfd when the process may (then other threads
// may touch memory while it loads) and eagerly otherwise. Both paths are exercised when the
// process can have userfaultfd: the eager one from a thread without CAP_SYS_PTRACE.
#include "vmm/memory/memory_loader.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "vmm/memory/extents.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {
namespace {

constexpr uint64_t kRam = 16 << 20;

// A sparse memory file and the bytes it stands for.
struct MemoryImage {
  std::string path;
  std::vector<uint8_t> bytes;  // all of RAM, zeros where the file has holes
  uint64_t data_bytes = 0;     // what the file's data extents hold (what a loader copies)
};

void fillPage(std::vector<uint8_t>& bytes, uint64_t page, uint8_t seed) {
  for (uint64_t i = 0; i < kPageSize; ++i) {
    bytes[page * kPageSize + i] = static_cast<uint8_t>(seed + i * 13 + (i >> 8));
  }
}

// Page 0; 1 MiB from 64 KiB on (more than one background chunk); every 37th page of
// [4 MiB, 8 MiB); a page with a single byte at its end; the last page. The rest are holes.
MemoryImage makeImage(const flotilla::testing::TempDir& dir, bool empty = false) {
  MemoryImage image{dir.file(empty ? "empty-memory" : "memory"), std::vector<uint8_t>(kRam), 0};
  std::vector<uint64_t> pages;
  if (!empty) {
    pages.push_back(0);
    for (uint64_t page = 16; page < 16 + 256; ++page) pages.push_back(page);
    for (uint64_t page = 1024; page < 2048; page += 37) pages.push_back(page);
    pages.push_back(kRam / kPageSize - 1);
    for (uint64_t page : pages) fillPage(image.bytes, page, static_cast<uint8_t>(page | 1));
    image.bytes[3000 * kPageSize - 1] = 0x77;
    pages.push_back(2999);
  }
  UniqueFd fd(::open(image.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(kRam)), 0);
  for (uint64_t page : pages) {
    EXPECT_EQ(::pwrite(fd.get(), image.bytes.data() + page * kPageSize, kPageSize,
                       static_cast<off_t>(page * kPageSize)),
              static_cast<ssize_t>(kPageSize));
  }
  auto extents = dataExtents(fd.get(), kRam, image.path);
  EXPECT_TRUE(extents.ok()) << extents.status();
  for (const Extent& extent : *extents) image.data_bytes += extent.length;
  return image;
}

absl::StatusOr<std::shared_ptr<MemoryLoader>> startLoader(const GuestMemory& memory,
                                                          const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) return absl::NotFoundError(path);
  return MemoryLoader::start(memory, std::move(file), path);
}

// Drops CAP_SYS_PTRACE from the calling thread only (capabilities are per thread), so that
// userfaultfd for kernel faults is refused to it unless vm.unprivileged_userfaultfd allows it.
bool dropPtraceCapability() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  data[0].effective &= ~(uint32_t{1} << CAP_SYS_PTRACE);
  return ::syscall(SYS_capset, &header, data) == 0;
}

bool unprivilegedUserfaultfdAllowed() {
  std::ifstream sysctl("/proc/sys/vm/unprivileged_userfaultfd");
  int value = 0;
  return (sysctl >> value) && value != 0;
}

// Checks the loaded memory against the image and the stats against the mode it ran in.
void expectLoaded(const GuestMemory& memory, MemoryLoader& loader, const MemoryImage& image) {
  ASSERT_TRUE(loader.waitLoaded().ok());
  EXPECT_EQ(std::memcmp(memory.backing().data(), image.bytes.data(), kRam), 0);
  const MemoryLoadStats stats = loader.stats();
  EXPECT_EQ(stats.bytes_loaded, image.data_bytes) << (stats.lazy ? "lazy" : "eager");
  if (!stats.lazy) {
    EXPECT_EQ(stats.faults_served, 0u);
  }
  EXPECT_GE(stats.elapsed, absl::ZeroDuration());
}

TEST(MemoryLoaderTest, LoadsEveryByteWithZerosInTheHoles) {
  flotilla::testing::TempDir dir;
  const MemoryImage image = makeImage(dir);
  ASSERT_GT(image.data_bytes, 0u);
  auto memory = GuestMemory::create(kRam, {});
  ASSERT_TRUE(memory.ok()) << memory.status();
  auto loader = startLoader(*memory, image.path);
  ASSERT_TRUE(loader.ok()) << loader.status();
  std::cout << "[ INFO     ] loading " << ((*loader)->stats().lazy ? "lazily" : "eagerly") << "\n";
  expectLoaded(*memory, **loader, image);
  ASSERT_TRUE((*loader)->waitLoaded().ok()) << "waiting again returns at once";
}

TEST(MemoryLoaderTest, LoadsEagerlyWithoutTheRightToUseUserfaultfd) {
  flotilla::testing::TempDir dir;
  const MemoryImage image = makeImage(dir);
  auto memory = GuestMemory::create(kRam, {});
  ASSERT_TRUE(memory.ok()) << memory.status();
  std::optional<absl::StatusOr<std::shared_ptr<MemoryLoader>>> loader;
  bool dropped = false;
  std::thread unprivileged([&] {
    dropped = dropPtraceCapability();
    loader = startLoader(*memory, image.path);
  });
  unprivileged.join();
  ASSERT_TRUE(dropped);
  ASSERT_TRUE(loader->ok()) << loader->status();
  std::shared_ptr<MemoryLoader> started = **loader;
  if (!unprivilegedUserfaultfdAllowed()) {
    EXPECT_FALSE(started->stats().lazy);
    EXPECT_EQ(std::memcmp(memory->backing().data(), image.bytes.data(), kRam), 0)
        << "an eager load is complete when start() returns";
  }
  expectLoaded(*memory, *started, image);
}

TEST(MemoryLoaderTest, OtherThreadsMayTouchMemoryWhileItLoads) {
  flotilla::testing::TempDir dir;
  const MemoryImage image = makeImage(dir);
  auto memory = GuestMemory::create(kRam, {});
  ASSERT_TRUE(memory.ok()) << memory.status();

  // Four "vCPUs" read distinct pages, every data page and every 8th hole, from the end of RAM
  // backwards (where the background pass arrives last) while the loader runs; a page not yet
  // loaded makes its reader wait for it.
  constexpr uint64_t kReaders = 4;
  std::vector<std::vector<uint64_t>> pages(kReaders);
  uint64_t touched = 0;
  for (uint64_t page = kRam / kPageSize; page-- > 0;) {
    const bool data =
        std::any_of(image.bytes.begin() + static_cast<ptrdiff_t>(page * kPageSize),
                    image.bytes.begin() + static_cast<ptrdiff_t>((page + 1) * kPageSize),
                    [](uint8_t byte) { return byte != 0; });
    if (!data && page % 8 != 0) continue;
    pages[touched++ % kReaders].push_back(page);
  }
  auto loader = startLoader(*memory, image.path);
  ASSERT_TRUE(loader.ok()) << loader.status();
  std::atomic<uint64_t> mismatches{0};
  absl::Notification readers_done;
  std::vector<std::thread> readers;
  const uint8_t* guest = memory->backing().data();
  for (const std::vector<uint64_t>& mine : pages) {
    readers.emplace_back([&, mine] {
      for (uint64_t page : mine) {
        const uint64_t at = page * kPageSize;
        if (std::memcmp(guest + at, image.bytes.data() + at, kPageSize) != 0) {
          mismatches.fetch_add(1);
        }
      }
    });
  }
  // A fault the loader never serves would leave a reader waiting forever: after a generous
  // guard, closing the userfaultfd (destroying the loader) releases it, and the test fails.
  std::thread guard([&] {
    if (!readers_done.WaitForNotificationWithTimeout(absl::Seconds(60))) {
      ADD_FAILURE() << "readers still waiting for guest memory: a fault was never served";
      loader->reset();
    }
  });
  for (std::thread& reader : readers) reader.join();
  readers_done.Notify();
  guard.join();
  ASSERT_NE(loader->get(), nullptr);
  EXPECT_EQ(mismatches.load(), 0u);
  expectLoaded(*memory, **loader, image);
  const MemoryLoadStats stats = (*loader)->stats();
  if (stats.lazy) {
    EXPECT_LE(stats.faults_served, touched) << "at most one fault per page touched";
  }
  std::cout << "[ INFO     ] " << (stats.lazy ? "lazy" : "eager") << ": " << touched
            << " pages touched, " << stats.faults_served << " faults served\n";
}

TEST(MemoryLoaderTest, GuestMemoryWaitsForItsLoader) {
  flotilla::testing::TempDir dir;
  const MemoryImage image = makeImage(dir);
  auto memory = GuestMemory::create(kRam, {});
  ASSERT_TRUE(memory.ok()) << memory.status();
  auto loader = startLoader(*memory, image.path);
  ASSERT_TRUE(loader.ok()) << loader.status();
  memory->setLoader(*loader);
  ASSERT_TRUE(memory->waitLoaded().ok());
  // Nothing touched the holes: the memfd holds pages only where the file has data, so that a
  // snapshot of the restored VM stays as small as the one it came from.
  auto extents = dataExtents(memory->fd(), kRam, "guest memory");
  ASSERT_TRUE(extents.ok()) << extents.status();
  uint64_t allocated = 0;
  for (const Extent& extent : *extents) allocated += extent.length;
  EXPECT_EQ(allocated, image.data_bytes);
  EXPECT_EQ(std::memcmp(memory->backing().data(), image.bytes.data(), kRam), 0);
}

TEST(MemoryLoaderTest, AnAllHolesFileFinishes) {
  flotilla::testing::TempDir dir;
  const MemoryImage image = makeImage(dir, /*empty=*/true);
  EXPECT_EQ(image.data_bytes, 0u);
  for (bool privileged : {true, false}) {
    SCOPED_TRACE(privileged ? "this thread" : "without CAP_SYS_PTRACE");
    auto memory = GuestMemory::create(kRam, {});
    ASSERT_TRUE(memory.ok()) << memory.status();
    std::optional<absl::StatusOr<std::shared_ptr<MemoryLoader>>> loader;
    std::thread starter([&] {
      if (!privileged) dropPtraceCapability();
      loader = startLoader(*memory, image.path);
    });
    starter.join();
    ASSERT_TRUE(loader->ok()) << loader->status();
    expectLoaded(*memory, ***loader, image);
    EXPECT_EQ((**loader)->stats().faults_served, 0u);
  }
}

}  // namespace
}  // namespace flotilla::vmm
