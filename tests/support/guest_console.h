// Reading the test guest's serial protocol (guest/README.md): lines "flotilla-guest: WORDS
// key=value ...". Header-only, for test binaries (failed parses are gtest failures).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace flotilla::testing {

inline constexpr char kGuestLinePrefix[] = "flotilla-guest: ";

// The guest's protocol lines, without the prefix, other console output dropped. Only
// complete lines: the serial port reaches a file byte by byte, so the last line may still be
// growing.
inline std::vector<std::string> guestProtocolLines(const std::string& console) {
  std::vector<std::string> lines;
  absl::string_view complete(console);
  complete = complete.substr(0, complete.rfind('\n') + 1);  // npos + 1 == 0: nothing
  for (absl::string_view line : absl::StrSplit(complete, '\n')) {
    line = absl::StripSuffix(line, "\r");
    // The prefix may follow firmware output on the same line.
    const size_t at = line.find(kGuestLinePrefix);
    if (at != absl::string_view::npos) {
      lines.emplace_back(line.substr(at + sizeof(kGuestLinePrefix) - 1));
    }
  }
  return lines;
}

inline std::vector<std::string> linesStartingWith(const std::vector<std::string>& lines,
                                                  absl::string_view start) {
  std::vector<std::string> found;
  for (const std::string& line : lines) {
    if (absl::StartsWith(line, start)) found.push_back(line);
  }
  return found;
}

// The text after " key=" in a protocol line, up to the next space ("" when absent).
inline std::string valueAfter(const std::string& line, absl::string_view key) {
  const std::string needle = " " + std::string(key) + "=";
  const size_t at = line.find(needle);
  if (at == std::string::npos) return "";
  absl::string_view rest = absl::string_view(line).substr(at + needle.size());
  return std::string(rest.substr(0, rest.find(' ')));
}

// The value of " key=" as a number (decimal, or hex with 0x); a test failure when absent.
inline uint64_t numberAfter(const std::string& line, absl::string_view key) {
  const std::string text = valueAfter(line, key);
  uint64_t value = 0;
  const bool parsed = absl::StartsWith(text, "0x")
                          ? absl::SimpleHexAtoi(absl::string_view(text).substr(2), &value)
                          : absl::SimpleAtoi(text, &value);
  EXPECT_TRUE(parsed) << "no number " << key << "= in: " << line;
  return value;
}

}  // namespace flotilla::testing
