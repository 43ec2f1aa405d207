// Conversions of YAML scalars to typed values for config.cc. Each returns nullopt when the
// value converted, or what was expected and what was found, worded for config's messages:
// "expected an unsigned integer (0 to 4294967295), found 'x'".
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace flotilla::config_internal {

using Mismatch = std::optional<std::string>;

// How many bytes of document text a message quotes.
constexpr size_t kMaxQuoted = 40;

// Text from the document, made safe for a one-line message: control characters escaped, long
// text cut (on a UTF-8 character boundary) and ended with "...".
std::string printable(std::string_view text, size_t max_bytes = kMaxQuoted);

// What a node is, for "found ..." in messages: 'text', a mapping, a sequence or null.
std::string describe(const YAML::Node& node);

// Any scalar.
Mismatch toString(const YAML::Node& node, std::string& out);
// true/false, yes/no, on/off (lower, Capitalized or UPPER case).
Mismatch toBool(const YAML::Node& node, bool& out);
// YAML 1.2 core-schema integers (decimal, 0x hex, 0o octal, optional sign) within T's range;
// a leading 0 ("0644") is refused as ambiguous. T is int64_t, uint32_t or uint64_t.
template <typename T>
Mismatch toInteger(const YAML::Node& node, T& out);
// A finite number.
Mismatch toDouble(const YAML::Node& node, double& out);
// A byte size (parseByteSize in units.h).
Mismatch toByteSize(const YAML::Node& node, uint64_t& out);
// A duration (parseDuration in units.h).
Mismatch toDuration(const YAML::Node& node, absl::Duration& out);

}  // namespace flotilla::config_internal
