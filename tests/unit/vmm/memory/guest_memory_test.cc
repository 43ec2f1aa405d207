// Tests of GuestMemory: the PC layout, bounds checks on every access, and the memfd that
// other mappings see.
#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;

TEST(GuestMemoryLayoutTest, RamSkipsTheMmioHoleBelow4GiB) {
  auto small = pcMemoryLayout(512 << 20);
  ASSERT_EQ(small.size(), 1u);
  EXPECT_EQ(small[0].base, GuestAddress(0));
  EXPECT_EQ(small[0].size, 512u << 20);

  const uint64_t gib = uint64_t{1} << 30;
  auto large = pcMemoryLayout(5 * gib);
  ASSERT_EQ(large.size(), 2u);
  EXPECT_EQ(large[0].end(), kMmioHoleStart);
  EXPECT_EQ(large[1].base, kHighRamStart);
  EXPECT_EQ(large[1].size, 5 * gib - kMmioHoleStart.raw());
  EXPECT_EQ(large[1].fd_offset, kMmioHoleStart.raw());
}

TEST(GuestMemoryTest, AccessesInsideRamWorkAndOthersFail) {
  auto memory = GuestMemory::create(16 << 20, {});
  ASSERT_TRUE(memory.ok()) << memory.status();
  ASSERT_TRUE(memory->writeObject<uint32_t>(GuestAddress(0x1000), 0xdeadbeef).ok());
  EXPECT_EQ(*memory->readObject<uint32_t>(GuestAddress(0x1000)), 0xdeadbeefu);

  const GuestAddress last(memory->ramBytes() - 4);
  EXPECT_TRUE(memory->writeObject<uint32_t>(last, 1).ok());
  EXPECT_TRUE(absl::IsOutOfRange(memory->writeObject<uint32_t>(last + 1, 1)));
  EXPECT_TRUE(
      absl::IsOutOfRange(memory->readObject<uint64_t>(GuestAddress(~uint64_t{0} - 3)).status()));
  auto huge = memory->span(GuestAddress(8), ~uint64_t{0});
  EXPECT_TRUE(absl::IsOutOfRange(huge.status()));
  EXPECT_THAT(huge.status().message(), HasSubstr("outside the VM's RAM"));
  EXPECT_TRUE(memory->contains(GuestAddress(0), memory->ramBytes()));
  EXPECT_FALSE(memory->contains(GuestAddress(0), memory->ramBytes() + 1));
  EXPECT_TRUE(memory->read(last + 4, {}).ok()) << "an empty access at the end is fine";
}

TEST(GuestMemoryTest, TheMemfdSharesTheGuestBytes) {
  auto memory = GuestMemory::create(4 << 20, {});
  ASSERT_TRUE(memory.ok());
  ASSERT_TRUE(memory->writeObject<uint64_t>(GuestAddress(0x2000), 42).ok());
  void* view = ::mmap(nullptr, 4 << 20, PROT_READ, MAP_SHARED, memory->fd(), 0);
  ASSERT_NE(view, MAP_FAILED);
  EXPECT_EQ(*reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(view) + 0x2000), 42u);
  ::munmap(view, 4 << 20);
}

TEST(GuestMemoryTest, BadSizesAreClearErrors) {
  auto zero = GuestMemory::create(0, {});
  EXPECT_TRUE(absl::IsInvalidArgument(zero.status()));
  EXPECT_THAT(zero.status().message(), HasSubstr("non-zero multiple of 4K"));
  EXPECT_TRUE(absl::IsInvalidArgument(GuestMemory::create(4097, {}).status()));
  auto too_much = GuestMemory::create(uint64_t{1} << 50, {});
  EXPECT_TRUE(absl::IsResourceExhausted(too_much.status()));
  EXPECT_THAT(too_much.status().message(), HasSubstr("more than this host has"));
}

}  // namespace
}  // namespace flotilla::vmm
