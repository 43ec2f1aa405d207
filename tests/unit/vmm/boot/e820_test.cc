// Tests of the e820 map built from GuestMemory's regions.
#include "vmm/boot/e820.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_images.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using testing::kMiB;

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(E820Test, SmallVm) {
  GuestMemory memory = testing::testMemory(256 * kMiB);
  EXPECT_THAT(buildE820Map(memory),
              ElementsAre(E820Entry{0, 0x9fc00, kE820Ram}, E820Entry{0x9fc00, 0x400, kE820Reserved},
                          E820Entry{0xf0000, 0x10000, kE820Reserved},
                          E820Entry{kMiB, 255 * kMiB, kE820Ram}));
}

TEST(E820Test, LargeVmSkipsTheMmioHole) {
  GuestMemory memory = testing::testMemory(5 * kGiB);
  EXPECT_THAT(buildE820Map(memory),
              ElementsAre(E820Entry{0, 0x9fc00, kE820Ram}, E820Entry{0x9fc00, 0x400, kE820Reserved},
                          E820Entry{0xf0000, 0x10000, kE820Reserved},
                          E820Entry{kMiB, 3 * kGiB - kMiB, kE820Ram},
                          E820Entry{4 * kGiB, 2 * kGiB, kE820Ram}));
}

TEST(E820Test, TinyVmIsClipped) {
  GuestMemory memory = testing::testMemory(0x80000);
  EXPECT_THAT(buildE820Map(memory), ElementsAre(E820Entry{0, 0x80000, kE820Ram}));
  GuestMemory one_mib = testing::testMemory(kMiB);
  EXPECT_THAT(buildE820Map(one_mib),
              ElementsAre(E820Entry{0, 0x9fc00, kE820Ram}, E820Entry{0x9fc00, 0x400, kE820Reserved},
                          E820Entry{0xf0000, 0x10000, kE820Reserved}));
}

}  // namespace
}  // namespace flotilla::vmm
