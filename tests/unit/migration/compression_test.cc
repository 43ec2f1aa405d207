// The page data codecs: round trips, incompressible data, and corrupted input refused.
#include "migration/compression.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::migration {
namespace {

using ::testing::HasSubstr;

class CodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CodecTest, RoundTripsPageData) {
  std::vector<uint8_t> pages(16 * 4096, 0);
  for (size_t i = 0; i < pages.size(); i += 97) pages[i] = static_cast<uint8_t>(i);
  Codec codec(GetParam());
  std::vector<uint8_t> packed;
  ASSERT_TRUE(codec.compress(pages, packed));
  EXPECT_LT(packed.size(), pages.size());
  std::vector<uint8_t> unpacked(pages.size());
  ASSERT_TRUE(codec.decompress(packed, unpacked).ok());
  EXPECT_EQ(unpacked, pages);
}

TEST_P(CodecTest, IncompressibleDataIsLeftAlone) {
  std::vector<uint8_t> noise(4096);
  std::mt19937 random(7);
  for (uint8_t& byte : noise) byte = static_cast<uint8_t>(random());
  Codec codec(GetParam());
  std::vector<uint8_t> packed;
  EXPECT_FALSE(codec.compress(noise, packed));
}

TEST_P(CodecTest, CorruptedOrShortInputIsDataLoss) {
  std::vector<uint8_t> pages(4 * 4096, 1);
  Codec codec(GetParam());
  std::vector<uint8_t> packed;
  ASSERT_TRUE(codec.compress(pages, packed));
  std::vector<uint8_t> unpacked(pages.size());
  std::vector<uint8_t> truncated(packed.begin(),
                                 packed.begin() + static_cast<std::ptrdiff_t>(packed.size() / 2));
  EXPECT_EQ(codec.decompress(truncated, unpacked).code(), absl::StatusCode::kDataLoss);
  // The right data for a size it does not have.
  std::vector<uint8_t> too_big(pages.size() + 4096);
  EXPECT_EQ(codec.decompress(packed, too_big).code(), absl::StatusCode::kDataLoss);
}

INSTANTIATE_TEST_SUITE_P(Codecs, CodecTest,
                         ::testing::Values(Compression::kZstd, Compression::kLz4),
                         [](const ::testing::TestParamInfo<Compression>& param) {
                           return std::string(compressionName(param.param));
                         });

TEST(CompressionTest, NamesAndFlags) {
  EXPECT_EQ(*parseCompression("zstd"), Compression::kZstd);
  EXPECT_EQ(*parseCompression("lz4"), Compression::kLz4);
  EXPECT_EQ(*parseCompression("none"), Compression::kNone);
  EXPECT_THAT(parseCompression("gzip").status().message(), HasSubstr("use none, zstd or lz4"));
  EXPECT_EQ(*compressionOfFlags(kFlagLz4), Compression::kLz4);
  EXPECT_FALSE(compressionOfFlags(kFlagLz4 | kFlagZstd).ok());
  EXPECT_FALSE(compressionOfFlags(0x80).ok());
}

}  // namespace
}  // namespace flotilla::migration
