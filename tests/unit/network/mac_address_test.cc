// Tests of MacAddress: parsing, formatting, the group and local bits, random addresses.
#include "network/mac_address.h"

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <unordered_set>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::network {
namespace {

using ::testing::HasSubstr;

TEST(MacAddressTest, ParsesAndFormats) {
  auto mac = MacAddress::parse("52:54:00:12:34:56");
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(mac->bytes(), (MacAddress::Bytes{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}));
  EXPECT_EQ(mac->toString(), "52:54:00:12:34:56");

  auto upper = MacAddress::parse("AA:bb:Cc:0D:e0:FF");
  ASSERT_TRUE(upper.ok()) << upper.status();
  EXPECT_EQ(upper->bytes(), (MacAddress::Bytes{0xaa, 0xbb, 0xcc, 0x0d, 0xe0, 0xff}));
  EXPECT_EQ(upper->toString(), "aa:bb:cc:0d:e0:ff");  // always lower case

  EXPECT_EQ(MacAddress().toString(), "00:00:00:00:00:00");
  EXPECT_EQ(MacAddress::broadcast().toString(), "ff:ff:ff:ff:ff:ff");
}

TEST(MacAddressTest, RejectsMalformedTextNamingIt) {
  struct Case {
    const char* text;
    const char* why;
  };
  const Case cases[] = {
      {"", "empty"},
      {"52:54:00:12:34", "14 characters, not 17"},
      {"52:54:00:12:34:56:78", "20 characters"},
      {"52-54-00-12-34-56", "character 3 is '-', not ':'"},
      {"52:54:0g:12:34:56", "byte 3 (\"0g\")"},
      {"52:54:00:12:34: 6", "byte 6"},
      {"5254.0012.3456.ab", "not ':'"},
      {"52:54:00:12:34:5", "16 characters"},
  };
  for (const Case& c : cases) {
    auto mac = MacAddress::parse(c.text);
    ASSERT_FALSE(mac.ok()) << c.text;
    EXPECT_EQ(mac.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(mac.status().message(), HasSubstr(fmt::format("\"{}\"", c.text)));
    EXPECT_THAT(mac.status().message(), HasSubstr(c.why)) << c.text;
    EXPECT_THAT(mac.status().message(), HasSubstr("52:54:00:12:34:56"));  // an example
  }
}

TEST(MacAddressTest, FromBytesTakesTheFirstSix) {
  const uint8_t frame[] = {1, 2, 3, 4, 5, 6, 7};
  auto mac = MacAddress::fromBytes(frame);
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(mac->toString(), "01:02:03:04:05:06");
  auto short_input = MacAddress::fromBytes(std::span<const uint8_t>(frame, 5));
  EXPECT_EQ(short_input.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MacAddressTest, GroupAndLocalBits) {
  const MacAddress vendor(MacAddress::Bytes{0x00, 0x1b, 0x21, 0x01, 0x02, 0x03});
  EXPECT_TRUE(vendor.isUnicast());
  EXPECT_FALSE(vendor.isMulticast());
  EXPECT_FALSE(vendor.isLocallyAdministered());
  EXPECT_FALSE(vendor.isBroadcast());

  const MacAddress qemu(MacAddress::Bytes{0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
  EXPECT_TRUE(qemu.isUnicast());
  EXPECT_TRUE(qemu.isLocallyAdministered());

  const MacAddress ipv4_multicast(MacAddress::Bytes{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01});
  EXPECT_TRUE(ipv4_multicast.isMulticast());
  EXPECT_FALSE(ipv4_multicast.isBroadcast());

  EXPECT_TRUE(MacAddress::broadcast().isBroadcast());
  EXPECT_TRUE(MacAddress::broadcast().isMulticast());
  EXPECT_TRUE(MacAddress().isZero());
  EXPECT_FALSE(qemu.isZero());
}

TEST(MacAddressTest, RandomLocalSetsTheLocalBitAndClearsTheGroupBit) {
  // Every first-byte value a source can produce comes out unicast and locally administered,
  // with the other 46 bits taken from the source unchanged.
  for (int first = 0; first < 256; ++first) {
    MacAddress mac = MacAddress::randomLocal([&](std::span<uint8_t> out) {
      ASSERT_EQ(out.size(), 6u);
      for (size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<uint8_t>(first + static_cast<int>(i));
    });
    EXPECT_TRUE(mac.isUnicast());
    EXPECT_TRUE(mac.isLocallyAdministered());
    EXPECT_EQ(mac.bytes()[0] & 0xfc, first & 0xfc);
    for (size_t i = 1; i < 6; ++i)
      EXPECT_EQ(mac.bytes()[i], static_cast<uint8_t>(first + static_cast<int>(i)));
  }
  MacAddress ones = MacAddress::randomLocal([](std::span<uint8_t> out) {
    for (uint8_t& byte : out) byte = 0xff;
  });
  EXPECT_EQ(ones.toString(), "fe:ff:ff:ff:ff:ff");
}

TEST(MacAddressTest, RandomLocalFromTheKernelDiffers) {
  std::set<MacAddress> seen;
  for (int i = 0; i < 64; ++i) {
    MacAddress mac = MacAddress::randomLocal();
    EXPECT_TRUE(mac.isUnicast());
    EXPECT_TRUE(mac.isLocallyAdministered());
    seen.insert(mac);
  }
  // 46 random bits: a repeat among 64 would mean the source is broken.
  EXPECT_EQ(seen.size(), 64u);
}

TEST(MacAddressTest, ComparesAndHashes) {
  auto a = MacAddress::parse("52:54:00:00:00:01");
  auto b = MacAddress::parse("52:54:00:00:00:02");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT(*a, *b);
  EXPECT_EQ(*a, *MacAddress::parse("52:54:00:00:00:01"));
  std::unordered_set<MacAddress> set = {*a, *b, *a};
  EXPECT_EQ(set.size(), 2u);
}

}  // namespace
}  // namespace flotilla::network
