// Tests for byte-size and duration parsing and formatting (common/units.h).
#include "common/units.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kKiB = uint64_t{1} << 10;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kTiB = uint64_t{1} << 40;

uint64_t sizeOf(std::string_view text) {
  absl::StatusOr<uint64_t> size = parseByteSize(text);
  EXPECT_TRUE(size.ok()) << text << ": " << size.status();
  return size.value_or(0);
}

std::string byteSizeError(std::string_view text) {
  absl::StatusOr<uint64_t> size = parseByteSize(text);
  EXPECT_FALSE(size.ok()) << text << " parsed as " << size.value_or(0);
  EXPECT_EQ(size.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(size.status().message());
}

absl::Duration durationOf(std::string_view text) {
  absl::StatusOr<absl::Duration> duration = parseDuration(text);
  EXPECT_TRUE(duration.ok()) << text << ": " << duration.status();
  return duration.value_or(absl::ZeroDuration());
}

std::string durationError(std::string_view text) {
  absl::StatusOr<absl::Duration> duration = parseDuration(text);
  EXPECT_FALSE(duration.ok()) << text << " parsed as " << duration.value_or(absl::ZeroDuration());
  EXPECT_EQ(duration.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(duration.status().message());
}

TEST(UnitsTest, ParsesPlainBytes) {
  EXPECT_EQ(sizeOf("0"), 0u);
  EXPECT_EQ(sizeOf("4096"), 4096u);
  EXPECT_EQ(sizeOf("7B"), 7u);
  EXPECT_EQ(sizeOf("7b"), 7u);
  EXPECT_EQ(sizeOf("0512"), 512u);
}

TEST(UnitsTest, ParsesBinarySuffixesCaseInsensitively) {
  EXPECT_EQ(sizeOf("1K"), kKiB);
  EXPECT_EQ(sizeOf("1k"), kKiB);
  EXPECT_EQ(sizeOf("3KiB"), 3 * kKiB);
  EXPECT_EQ(sizeOf("512M"), 512 * kMiB);
  EXPECT_EQ(sizeOf("512mib"), 512 * kMiB);
  EXPECT_EQ(sizeOf("2G"), 2 * kGiB);
  EXPECT_EQ(sizeOf("2GiB"), 2 * kGiB);
  EXPECT_EQ(sizeOf("2GIB"), 2 * kGiB);
  EXPECT_EQ(sizeOf("1t"), kTiB);
  EXPECT_EQ(sizeOf("5TiB"), 5 * kTiB);
}

TEST(UnitsTest, AcceptsSpacesAroundTheNumberAndBeforeTheSuffix) {
  EXPECT_EQ(sizeOf("2 GiB"), 2 * kGiB);
  EXPECT_EQ(sizeOf(" 512M "), 512 * kMiB);
  EXPECT_EQ(sizeOf("\t1\tK"), kKiB);
}

TEST(UnitsTest, ParsesTheLargestByteSizes) {
  EXPECT_EQ(sizeOf("18446744073709551615"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(sizeOf("16777215T"), 16777215 * kTiB);
  EXPECT_EQ(sizeOf("17179869183G"), 17179869183 * kGiB);
}

TEST(UnitsTest, RejectsFractionsWithAnExample) {
  EXPECT_EQ(byteSizeError("1.5G"),
            "expected a byte size such as 4096, 512M or 2GiB, found '1.5G' (fractions are not "
            "allowed; use a smaller unit, e.g. 1536M for 1.5G)");
  EXPECT_THAT(byteSizeError("1,5G"), HasSubstr("fractions are not allowed"));
}

TEST(UnitsTest, RejectsNegativeAndNonNumericSizes) {
  EXPECT_EQ(byteSizeError("-1M"),
            "expected a byte size such as 4096, 512M or 2GiB, found '-1M' (a size cannot be "
            "negative)");
  EXPECT_THAT(byteSizeError("M"), HasSubstr("found 'M' (it does not start with a number)"));
  EXPECT_THAT(byteSizeError("+5"), HasSubstr("does not start with a number"));
  EXPECT_THAT(byteSizeError(""), HasSubstr("found '' (it is empty)"));
  EXPECT_THAT(byteSizeError("   "), HasSubstr("(it is empty)"));
}

TEST(UnitsTest, RejectsUnknownAndAmbiguousSuffixes) {
  EXPECT_EQ(byteSizeError("2X"),
            "expected a byte size such as 4096, 512M or 2GiB, found '2X' (unknown suffix 'X'; "
            "use B, K, M, G, T or KiB, MiB, GiB, TiB)");
  EXPECT_EQ(byteSizeError("2GB"),
            "expected a byte size such as 4096, 512M or 2GiB, found '2GB' ('GB' is ambiguous: "
            "write G or GiB for powers of 1024)");
  EXPECT_THAT(byteSizeError("4kb"), HasSubstr("'kb' is ambiguous: write k or kiB"));
  EXPECT_THAT(byteSizeError("1P"), HasSubstr("unknown suffix 'P'"));
  EXPECT_THAT(byteSizeError("0x10"), HasSubstr("unknown suffix 'x10'"));
  EXPECT_THAT(byteSizeError("1 2"), HasSubstr("unknown suffix '2'"));
  EXPECT_THAT(byteSizeError("1Mi"), HasSubstr("unknown suffix 'Mi'"));
}

TEST(UnitsTest, DetectsOverflow) {
  EXPECT_THAT(byteSizeError("17179869184T"),
              HasSubstr("found '17179869184T' (it is larger than 2^64 - 1 bytes)"));
  EXPECT_THAT(byteSizeError("16777216T"), HasSubstr("larger than 2^64 - 1 bytes"));
  EXPECT_THAT(byteSizeError("18446744073709551616"), HasSubstr("larger than 2^64 - 1 bytes"));
  EXPECT_THAT(byteSizeError("99999999999999999999999999999K"),
              HasSubstr("larger than 2^64 - 1 bytes"));
}

TEST(UnitsTest, QuotesLongAndControlCharactersOnOneLine) {
  std::string message = byteSizeError(std::string(100, '9') + "\nX");
  EXPECT_THAT(message, HasSubstr("found '" + std::string(40, '9') + "...'"));
  EXPECT_THAT(byteSizeError("1\x01"), HasSubstr("found '1\\x01'"));
  EXPECT_THAT(byteSizeError("1\nK"), HasSubstr("found '1\\nK'"));
}

TEST(UnitsTest, FormatsWithTheLargestExactSuffix) {
  EXPECT_EQ(formatByteSize(0), "0");
  EXPECT_EQ(formatByteSize(100), "100");
  EXPECT_EQ(formatByteSize(1023), "1023");
  EXPECT_EQ(formatByteSize(kKiB), "1K");
  EXPECT_EQ(formatByteSize(1536 * kKiB), "1536K");
  EXPECT_EQ(formatByteSize(1536), "1536");
  EXPECT_EQ(formatByteSize(512 * kMiB), "512M");
  EXPECT_EQ(formatByteSize(3 * kGiB), "3G");
  EXPECT_EQ(formatByteSize(kTiB), "1T");
  EXPECT_EQ(formatByteSize(1024 * kTiB), "1024T");
  EXPECT_EQ(formatByteSize(std::numeric_limits<uint64_t>::max()), "18446744073709551615");
}

TEST(UnitsTest, FormatThenParseRoundTrips) {
  const uint64_t values[] = {0,
                             1,
                             1023,
                             kKiB,
                             kKiB + 1,
                             1536,
                             3 * kMiB,
                             5 * kGiB,
                             7 * kTiB,
                             kTiB - 1,
                             kTiB + kKiB,
                             uint64_t{1} << 63,
                             std::numeric_limits<uint64_t>::max(),
                             16777215 * kTiB};
  for (uint64_t value : values) {
    EXPECT_EQ(sizeOf(formatByteSize(value)), value) << formatByteSize(value);
  }
}

TEST(UnitsTest, ParsesDurations) {
  EXPECT_EQ(durationOf("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(durationOf("30s"), absl::Seconds(30));
  EXPECT_EQ(durationOf("1h30m"), absl::Minutes(90));
  EXPECT_EQ(durationOf("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(durationOf("10us"), absl::Microseconds(10));
  EXPECT_EQ(durationOf("7ns"), absl::Nanoseconds(7));
  EXPECT_EQ(durationOf("+3s"), absl::Seconds(3));
  EXPECT_EQ(durationOf(" 30s "), absl::Seconds(30));
  EXPECT_EQ(durationOf("0s"), absl::ZeroDuration());
  EXPECT_EQ(durationOf("100000h"), absl::Hours(100000));
}

TEST(UnitsTest, AcceptsABareZeroDuration) {
  EXPECT_EQ(durationOf("0"), absl::ZeroDuration());
}

TEST(UnitsTest, RejectsDurationsWithoutAUnit) {
  EXPECT_EQ(durationError("30"),
            "expected a duration such as 30s, 250ms or 1h30m, found '30' (a unit is required: "
            "ns, us, ms, s, m or h)");
  EXPECT_THAT(durationError("1.5"), HasSubstr("a unit is required"));
  EXPECT_THAT(durationError("00"), HasSubstr("a unit is required"));
}

TEST(UnitsTest, RejectsNegativeAndInfiniteDurations) {
  EXPECT_EQ(durationError("-3s"),
            "expected a duration such as 30s, 250ms or 1h30m, found '-3s' (a duration cannot "
            "be negative)");
  EXPECT_THAT(durationError("-0s"), HasSubstr("cannot be negative"));
  EXPECT_THAT(durationError("-inf"), HasSubstr("cannot be negative"));
  EXPECT_THAT(durationError("inf"), HasSubstr("found 'inf' (it cannot be infinite)"));
  EXPECT_THAT(durationError("+inf"), HasSubstr("(it cannot be infinite)"));
}

TEST(UnitsTest, RejectsDurationsTooLargeForAbsl) {
  // absl saturates this one to InfiniteDuration() ...
  EXPECT_THAT(durationError("3000000000000000h"), HasSubstr("(it is too large)"));
  // ... and refuses this one outright.
  EXPECT_THAT(durationError("10000000000000000000h"), HasSubstr("(it is too large)"));
}

TEST(UnitsTest, RejectsMalformedDurations) {
  EXPECT_EQ(durationError("1d"),
            "expected a duration such as 30s, 250ms or 1h30m, found '1d' (use numbers followed "
            "by ns, us, ms, s, m or h; a day is 24h)");
  EXPECT_THAT(durationError(""), HasSubstr("found '' (it is empty)"));
  EXPECT_THAT(durationError("3 s"), HasSubstr("use numbers followed by"));
  EXPECT_THAT(durationError("1h-30m"), HasSubstr("use numbers followed by"));
  EXPECT_THAT(durationError("soon"), HasSubstr("use numbers followed by"));
  EXPECT_THAT(durationError("1e3s"), HasSubstr("use numbers followed by"));
}

}  // namespace
}  // namespace flotilla
