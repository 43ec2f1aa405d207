// Byte sizes and durations written by people (see units.h).
#include "common/units.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <optional>
#include <string>
#include <system_error>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla {
namespace {

constexpr std::string_view kByteSizeExpected = "expected a byte size such as 4096, 512M or 2GiB";
constexpr std::string_view kDurationExpected = "expected a duration such as 30s, 250ms or 1h30m";
constexpr size_t kMaxQuoted = 40;

struct ByteSuffix {
  std::string_view name;  // lowercase
  uint64_t multiplier;
};

constexpr std::array<ByteSuffix, 10> kByteSuffixes = {{
    {"", 1},
    {"b", 1},
    {"k", uint64_t{1} << 10},
    {"kib", uint64_t{1} << 10},
    {"m", uint64_t{1} << 20},
    {"mib", uint64_t{1} << 20},
    {"g", uint64_t{1} << 30},
    {"gib", uint64_t{1} << 30},
    {"t", uint64_t{1} << 40},
    {"tib", uint64_t{1} << 40},
}};

bool isSpace(char c) {
  return c == ' ' || c == '\t';
}
bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isAsciiLetter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char toLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && isSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && isSpace(text.back())) text.remove_suffix(1);
  return text;
}

// The text in single quotes for an error message: at most kMaxQuoted bytes (cut on a UTF-8
// character boundary), control characters escaped so that the message stays on one line.
std::string quote(std::string_view text) {
  bool truncated = false;
  if (text.size() > kMaxQuoted) {
    size_t cut = kMaxQuoted;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut);
    truncated = true;
  }
  std::string quoted = "'";
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7F) {
      quoted += c;
    } else {
      quoted += c == '\n' ? "\\n" : c == '\t' ? "\\t" : fmt::format("\\x{:02x}", byte);
    }
  }
  quoted += truncated ? "...'" : "'";
  return quoted;
}

absl::Status invalid(std::string_view expected, std::string_view text, std::string_view reason) {
  return absl::InvalidArgumentError(
      fmt::format("{}, found {} ({})", expected, quote(text), reason));
}

std::optional<uint64_t> byteMultiplier(std::string_view suffix) {
  std::string lower;
  for (char c : suffix) lower += toLower(c);
  for (const ByteSuffix& known : kByteSuffixes) {
    if (known.name == lower) return known.multiplier;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<uint64_t> parseByteSize(std::string_view text) {
  auto fail = [&](std::string_view reason) { return invalid(kByteSizeExpected, text, reason); };
  std::string_view rest = trim(text);
  if (rest.empty()) return fail("it is empty");
  if (rest.front() == '-') return fail("a size cannot be negative");
  if (!isDigit(rest.front())) return fail("it does not start with a number");

  size_t digits = 0;
  while (digits < rest.size() && isDigit(rest[digits])) ++digits;
  uint64_t number = 0;
  auto [end, error] = std::from_chars(rest.data(), rest.data() + digits, number);
  if (error == std::errc::result_out_of_range) return fail("it is larger than 2^64 - 1 bytes");
  if (error != std::errc() || end != rest.data() + digits) return fail("it is not a number");

  std::string_view suffix = rest.substr(digits);
  if (!suffix.empty() && (suffix.front() == '.' || suffix.front() == ',')) {
    return fail("fractions are not allowed; use a smaller unit, e.g. 1536M for 1.5G");
  }
  suffix = trim(suffix);
  std::optional<uint64_t> multiplier = byteMultiplier(suffix);
  if (!multiplier) {
    // "2GB" might mean 2*10^9 or 2*2^30; refuse to guess.
    if (suffix.size() == 2 && toLower(suffix[1]) == 'b' &&
        std::string_view("kmgt").find(toLower(suffix[0])) != std::string_view::npos) {
      return fail(fmt::format("'{}' is ambiguous: write {} or {}iB for powers of 1024", suffix,
                              suffix.substr(0, 1), suffix.substr(0, 1)));
    }
    return fail(
        fmt::format("unknown suffix {}; use B, K, M, G, T or KiB, MiB, GiB, TiB", quote(suffix)));
  }
  if (number > std::numeric_limits<uint64_t>::max() / *multiplier) {
    return fail("it is larger than 2^64 - 1 bytes");
  }
  return number * *multiplier;
}

std::string formatByteSize(uint64_t bytes) {
  static constexpr std::array<std::pair<char, unsigned>, 4> kSuffixes = {
      {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}}};
  if (bytes == 0) return "0";
  for (const auto& [suffix, shift] : kSuffixes) {
    uint64_t unit = uint64_t{1} << shift;
    if (bytes % unit == 0) return fmt::format("{}{}", bytes / unit, suffix);
  }
  return fmt::format("{}", bytes);
}

absl::StatusOr<absl::Duration> parseDuration(std::string_view text) {
  auto fail = [&](std::string_view reason) { return invalid(kDurationExpected, text, reason); };
  std::string_view rest = trim(text);
  if (rest.empty()) return fail("it is empty");
  if (rest.front() == '-') return fail("a duration cannot be negative");

  bool has_letter = false;
  size_t longest_digit_run = 0;
  size_t digit_run = 0;
  for (char c : rest) {
    has_letter = has_letter || isAsciiLetter(c);
    digit_run = isDigit(c) ? digit_run + 1 : 0;
    longest_digit_run = std::max(longest_digit_run, digit_run);
  }
  // absl accepts a bare "0"; that is the one unitless duration allowed (see units.h).
  if (!has_letter && rest != "0") return fail("a unit is required: ns, us, ms, s, m or h");

  absl::Duration duration;
  if (!absl::ParseDuration(std::string(rest), &duration)) {
    // absl refuses numbers that do not fit in 64 bits rather than saturating.
    if (longest_digit_run > 18) return fail("it is too large");
    return fail("use numbers followed by ns, us, ms, s, m or h; a day is 24h");
  }
  if (duration == absl::InfiniteDuration()) {
    if (rest.find("inf") != std::string_view::npos) return fail("it cannot be infinite");
    return fail("it is too large");
  }
  return duration;
}

}  // namespace flotilla
