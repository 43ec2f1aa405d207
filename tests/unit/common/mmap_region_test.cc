// Tests of MmapRegion ownership.
#include "common/mmap_region.h"

#include <sys/mman.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace flotilla {
namespace {

// Whether `addr` is mapped in this process (mincore fails with ENOMEM when it is not).
bool isMapped(void* addr) {
  unsigned char vec = 0;
  return ::mincore(addr, static_cast<size_t>(::getpagesize()), &vec) == 0;
}

TEST(MmapRegionTest, AnonymousRegionIsZeroedWritableAndUnmappedOnDestruction) {
  void* addr = nullptr;
  {
    auto region = MmapRegion::anonymous(1 << 20);
    ASSERT_TRUE(region.ok()) << region.status();
    ASSERT_EQ(region->size(), 1u << 20);
    EXPECT_EQ(region->bytes()[12345], 0);
    region->bytes()[12345] = 7;
    EXPECT_EQ(region->data()[12345], 7);
    addr = region->data();
    EXPECT_TRUE(isMapped(addr));
  }
  EXPECT_FALSE(isMapped(addr));
}

TEST(MmapRegionTest, MoveTransfersOwnership) {
  auto region = MmapRegion::anonymous(4096);
  ASSERT_TRUE(region.ok());
  void* addr = region->data();
  MmapRegion moved = std::move(*region);
  EXPECT_FALSE(region->valid());
  EXPECT_EQ(moved.data(), addr);
  MmapRegion assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.data(), addr);
  EXPECT_TRUE(isMapped(addr));
  assigned.reset();
  EXPECT_FALSE(isMapped(addr));
}

TEST(MmapRegionTest, FailuresAreErrors) {
  EXPECT_TRUE(absl::IsInvalidArgument(MmapRegion::anonymous(0).status()));
  auto bad_fd = MmapRegion::map(4096, PROT_READ, MAP_SHARED, /*fd=*/-1);
  EXPECT_FALSE(bad_fd.ok());
  EXPECT_NE(bad_fd.status().message().find("mmap of 4096 bytes"), absl::string_view::npos);
}

}  // namespace
}  // namespace flotilla
