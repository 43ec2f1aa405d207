// Checked arithmetic and message helpers for image parsers (see bytes.h).
#include "vmm/boot/bytes.h"

#include <algorithm>

#include "fmt/format.h"

namespace flotilla::vmm {

std::string describeSize(uint64_t bytes) {
  struct Unit {
    uint64_t size;
    const char* name;
  };
  constexpr Unit kUnits[] = {{uint64_t{1} << 40, "TiB"},
                             {uint64_t{1} << 30, "GiB"},
                             {uint64_t{1} << 20, "MiB"},
                             {uint64_t{1} << 10, "KiB"}};
  for (const Unit& unit : kUnits) {
    if (bytes < unit.size) continue;
    if (bytes % unit.size == 0) return fmt::format("{} {}", bytes / unit.size, unit.name);
    // Not a whole number of units: one decimal is enough for a person to judge.
    return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(unit.size),
                       unit.name);
  }
  return fmt::format("{} byte{}", bytes, bytes == 1 ? "" : "s");
}

std::string hexPrefix(std::span<const uint8_t> bytes, size_t count) {
  std::string text;
  const size_t shown = std::min(count, bytes.size());
  for (size_t i = 0; i < shown; ++i) {
    if (i != 0) text += ' ';
    text += fmt::format("{:02x}", bytes[i]);
  }
  if (bytes.size() > shown) text += " ...";
  return text;
}

}  // namespace flotilla::vmm
