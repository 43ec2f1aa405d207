// Small std::string_view text helpers for parsing tool output. (Debian's abseil has its own
// absl::string_view, so absl::StrSplit does not take std::string_view; these do.)
#pragma once

#include <string_view>
#include <vector>

namespace flotilla {

// The pieces of `text` between `separator`s, empty pieces included ("a,,b" → a, "", b).
std::vector<std::string_view> splitText(std::string_view text, char separator);

inline bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

}  // namespace flotilla
