// CRC-32C against the published check values (RFC 3720 appendix B.4, and "123456789").
#include "common/crc32c.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace flotilla {
namespace {

uint32_t crcOf(const std::vector<uint8_t>& bytes) {
  return crc32c(0, bytes);
}

TEST(Crc32cTest, MatchesTheStandardCheckValues) {
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(0, {reinterpret_cast<const uint8_t*>(digits.data()), digits.size()}),
            0xE3069283u);
  EXPECT_EQ(crcOf(std::vector<uint8_t>(32, 0x00)), 0x8A9136AAu);
  EXPECT_EQ(crcOf(std::vector<uint8_t>(32, 0xFF)), 0x62A8AB43u);
  std::vector<uint8_t> ascending(32);
  for (size_t i = 0; i < ascending.size(); ++i) ascending[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crcOf(ascending), 0x46DD794Eu);
  EXPECT_EQ(crcOf({}), 0u);
}

TEST(Crc32cTest, IsIncremental) {
  std::vector<uint8_t> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 3);
  const uint32_t whole = crcOf(bytes);
  for (size_t split : std::vector<size_t>{0, 1, 7, 8, 9, 500, 999, 1000}) {
    const std::span<const uint8_t> all(bytes);
    EXPECT_EQ(crc32c(crc32c(0, all.first(split)), all.subspan(split)), whole) << split;
  }
}

}  // namespace
}  // namespace flotilla
