// Conversions of YAML scalars to typed values (see config_scalars.h).
#include "common/config_scalars.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <type_traits>

#include "common/units.h"
#include "fmt/format.h"

namespace flotilla::config_internal {
namespace {

// YAML 1.2 core-schema integers: an optional sign, then decimal, 0x hex or 0o octal digits.
// False when malformed or beyond 64 bits.
bool parseInteger(std::string_view text, bool& negative, uint64_t& magnitude) {
  negative = !text.empty() && text.front() == '-';
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) text.remove_prefix(1);
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
  } else if (text.size() > 2 && text[0] == '0' && (text[1] == 'o' || text[1] == 'O')) {
    base = 8;
  } else if (text.size() > 1 && text[0] == '0') {
    return false;  // "0644": octal in YAML 1.1, decimal in 1.2; refuse to guess
  }
  if (base != 10) text.remove_prefix(2);
  // For an unsigned type, from_chars takes no sign, so "+-5" and "--5" fail here.
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, magnitude, base);
  return error == std::errc() && stop == end;
}

// Byte sizes and durations: units.h's parsers word their errors as "expected ..., found ...".
template <typename T>
Mismatch toQuantity(const YAML::Node& node, T& out, std::string_view expected,
                    absl::StatusOr<T> (*parse)(std::string_view)) {
  if (!node.IsScalar()) return fmt::format("{}, found {}", expected, describe(node));
  absl::StatusOr<T> value = parse(node.Scalar());
  if (!value.ok()) return std::string(value.status().message());
  out = *value;
  return std::nullopt;
}

}  // namespace

// Text from the document, made safe for a one-line message: control characters escaped, long
// text cut (on a UTF-8 character boundary) and ended with "...".
std::string printable(std::string_view text, size_t max_bytes) {
  bool truncated = false;
  if (text.size() > max_bytes) {
    size_t cut = max_bytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut);
    truncated = true;
  }
  std::string result;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7F) {
      result += c;
    } else {
      result += c == '\n' ? "\\n" : c == '\t' ? "\\t" : fmt::format("\\x{:02x}", byte);
    }
  }
  if (truncated) result += "...";
  return result;
}

// What a node is, for "found ..." in messages.
std::string describe(const YAML::Node& node) {
  if (node.IsScalar()) return fmt::format("'{}'", printable(node.Scalar()));
  return node.IsMap() ? "a mapping" : node.IsSequence() ? "a sequence" : "null";
}

Mismatch toString(const YAML::Node& node, std::string& out) {
  if (!node.IsScalar()) return fmt::format("expected a string, found {}", describe(node));
  out = node.Scalar();
  return std::nullopt;
}

// yaml-cpp's words for booleans minus "y" and "n", which are too easy to write by accident.
Mismatch toBool(const YAML::Node& node, bool& out) {
  using Words = std::array<std::string_view, 9>;
  static constexpr Words kTrue = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static constexpr Words kFalse = {"false", "False", "FALSE", "no", "No",
                                   "NO",    "off",   "Off",   "OFF"};
  for (bool value : {true, false}) {
    if (node.IsScalar() && std::ranges::count(value ? kTrue : kFalse, node.Scalar()) > 0) {
      out = value;
      return std::nullopt;
    }
  }
  return fmt::format("expected true or false, found {}", describe(node));
}

template <typename T>
Mismatch toInteger(const YAML::Node& node, T& out) {
  static_assert(std::is_same_v<T, int64_t> || std::is_unsigned_v<T>);
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<T>::max());
  bool negative = false;
  uint64_t magnitude = 0;
  if (node.IsScalar() && parseInteger(node.Scalar(), negative, magnitude)) {
    // |INT64_MIN| is INT64_MAX + 1; an unsigned type takes only -0.
    uint64_t limit = !negative ? kMax : std::is_signed_v<T> ? kMax + 1 : 0;
    if (magnitude <= limit) {
      // Two's complement negation, well defined for unsigned and converted modulo 2^64.
      out = static_cast<T>(negative ? 0 - magnitude : magnitude);
      return std::nullopt;
    }
  }
  std::string message =
      std::is_signed_v<T>
          ? fmt::format("expected an integer ({} to {})", std::numeric_limits<T>::min(), kMax)
          : fmt::format("expected an unsigned integer (0 to {})", kMax);
  message += fmt::format(", found {}", describe(node));
  std::string_view digits = node.IsScalar() ? std::string_view(node.Scalar()) : "";
  if (!digits.empty() && (digits.front() == '+' || digits.front() == '-')) digits.remove_prefix(1);
  if (digits.size() > 1 && digits[0] == '0' &&
      digits.find_first_not_of("0123456789") == std::string_view::npos) {
    std::string_view number =
        digits.substr(std::min(digits.find_first_not_of('0'), digits.size() - 1));
    message += fmt::format(" (a leading 0 is ambiguous: write 0o{0} for octal or {0} for decimal)",
                           number);
  }
  return message;
}

Mismatch toDouble(const YAML::Node& node, double& out) {
  std::string_view text = node.IsScalar() ? std::string_view(node.Scalar()) : "";
  // from_chars takes no '+' (and must then still refuse "+-1").
  if (text.size() > 1 && text.front() == '+' && text[1] != '-') text.remove_prefix(1);
  double value = 0;
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value, std::chars_format::general);
  if (text.empty() || error != std::errc() || stop != end || !std::isfinite(value))
    return fmt::format("expected a number, found {}", describe(node));
  out = value;
  return std::nullopt;
}

Mismatch toByteSize(const YAML::Node& node, uint64_t& out) {
  return toQuantity(node, out, "expected a byte size such as 4096, 512M or 2GiB", parseByteSize);
}

Mismatch toDuration(const YAML::Node& node, absl::Duration& out) {
  return toQuantity(node, out, "expected a duration such as 30s, 250ms or 1h30m", parseDuration);
}

template Mismatch toInteger<int64_t>(const YAML::Node& node, int64_t& out);
template Mismatch toInteger<uint32_t>(const YAML::Node& node, uint32_t& out);
template Mismatch toInteger<uint64_t>(const YAML::Node& node, uint64_t& out);

}  // namespace flotilla::config_internal
