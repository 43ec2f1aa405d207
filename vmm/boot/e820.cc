// Building the e820 memory map (see e820.h).
#include "vmm/boot/e820.h"

#include <algorithm>

#include "vmm/boot/layout.h"

namespace flotilla::vmm {
namespace {

constexpr GuestAddress kBaseMemoryEnd{0xa0000};  // 640 KiB

void addRange(std::vector<E820Entry>& map, uint64_t start, uint64_t end, uint32_t type) {
  if (end > start) map.push_back({start, end - start, type});
}

}  // namespace

std::vector<E820Entry> buildE820Map(const GuestMemory& memory) {
  std::vector<E820Entry> map;
  for (const GuestRegion& region : memory.regions()) {
    const uint64_t start = region.base.raw();
    const uint64_t end = region.end().raw();
    if (start >= layout::kHighMemory.raw()) {
      addRange(map, start, end, kE820Ram);
      continue;
    }
    // The region holding low memory: carve out the legacy areas below 1 MiB.
    const uint64_t ebda = layout::kEbda.raw();
    addRange(map, start, std::min(end, ebda), kE820Ram);
    addRange(map, std::max(start, ebda), std::min(end, kBaseMemoryEnd.raw()), kE820Reserved);
    addRange(map, std::max(start, kBiosRomStart.raw()), std::min(end, layout::kHighMemory.raw()),
             kE820Reserved);
    addRange(map, std::max(start, layout::kHighMemory.raw()), end, kE820Ram);
  }
  return map;
}

}  // namespace flotilla::vmm
