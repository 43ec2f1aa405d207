// Tests of the zero page builder and the byte helpers the image parsers use.
#include "vmm/boot/linux_boot_params.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/boot/bytes.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;

TEST(BootParamsTest, RefusesMoreE820EntriesThanTheZeroPageHolds) {
  linux_boot::BootParamsInput input;
  input.e820.assign(129, E820Entry{0, 4096, kE820Ram});
  auto params = linux_boot::makeBootParams(input);
  ASSERT_FALSE(params.ok());
  EXPECT_THAT(params.status().message(),
              HasSubstr("129 entries; the Linux zero page holds at most 128"));
  input.e820.resize(128);
  params = linux_boot::makeBootParams(input);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->e820_entries, 128);
}

TEST(BootParamsTest, RefusesAddressesAbove4GiB) {
  linux_boot::BootParamsInput input;
  input.initrd = GuestAddress(uint64_t{5} << 30);
  input.initrd_size = 4096;
  EXPECT_THAT(linux_boot::makeBootParams(input).status().message(), HasSubstr("above 4 GiB"));
}

TEST(BootParamsTest, ShortHeadersAreCopiedAsTheyAre) {
  linux_boot::SetupHeader header = {};
  header.setup_sects = 7;
  header.version = 0x020c;
  header.cmdline_size = 1000;
  std::vector<uint8_t> bytes(sizeof(header));
  std::memcpy(bytes.data(), &header, sizeof(header));
  bytes.resize(offsetof(linux_boot::SetupHeader, cmdline_size));  // ends before cmdline_size
  linux_boot::BootParamsInput input;
  input.setup_header = bytes;
  input.cmdline_size = 5;
  auto params = linux_boot::makeBootParams(input);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->hdr.setup_sects, 7);
  EXPECT_EQ(params->hdr.version, 0x020c);
  EXPECT_EQ(params->hdr.cmdline_size, 0u) << "not in the image's header, and not the loader's";
  EXPECT_EQ(params->sentinel, 0) << "the rest of the zero page is clean";
}

TEST(BytesTest, CheckedArithmetic) {
  EXPECT_EQ(checkedAdd(1, 2), 3u);
  EXPECT_EQ(checkedAdd(~uint64_t{0}, 1), std::nullopt);
  EXPECT_EQ(checkedMul(uint64_t{1} << 32, uint64_t{1} << 32), std::nullopt);
  EXPECT_TRUE(rangeInside(10, 0, 10));
  EXPECT_FALSE(rangeInside(11, 0, 10));
  EXPECT_FALSE(rangeInside(5, ~uint64_t{0}, 10));
  EXPECT_EQ(alignUp(0x1001, 0x1000), 0x2000u);
  EXPECT_EQ(alignUp(~uint64_t{0}, 0x1000), std::nullopt);
  EXPECT_EQ(alignDown(0x1fff, 0x1000), 0x1000u);
  EXPECT_TRUE(isPowerOfTwo(1));
  EXPECT_FALSE(isPowerOfTwo(0));
  EXPECT_FALSE(isPowerOfTwo(6));
}

TEST(BytesTest, Sizes) {
  EXPECT_EQ(describeSize(1), "1 byte");
  EXPECT_EQ(describeSize(12), "12 bytes");
  EXPECT_EQ(describeSize(3072), "3 KiB");
  EXPECT_EQ(describeSize(256 << 20), "256 MiB");
  EXPECT_EQ(describeSize(uint64_t{3} << 30), "3 GiB");
  EXPECT_EQ(describeSize(3 << 19), "1.5 MiB");
  const uint8_t bytes[] = {0x7f, 0x45, 0x4c};
  EXPECT_EQ(hexPrefix(bytes, 2), "7f 45 ...");
  EXPECT_EQ(hexPrefix(bytes, 8), "7f 45 4c");
}

}  // namespace
}  // namespace flotilla::vmm
