// The guest's physical memory map (BIOS e820 style), derived from GuestMemory's regions: what
// the kernel may use as RAM and what the VMM keeps for boot data (EBDA, MP table, BIOS area).
#pragma once

#include <vector>

#include "vmm/boot/boot.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {

// Start of the BIOS ROM area [0xf0000, 1 MiB), reported reserved as on a PC: Linux scans it
// for MP and ACPI tables and must not hand it out as RAM.
inline constexpr GuestAddress kBiosRomStart{0xf0000};

// For the PC layout: [0, EBDA) RAM, [EBDA, 640 KiB) reserved, [0xf0000, 1 MiB) reserved,
// [1 MiB, end of low RAM) RAM, [4 GiB, ...) RAM. [640 KiB, 0xf0000) is left out (the legacy
// VGA and option ROM hole). Ranges are clipped to the RAM that exists; empty ones are left out.
std::vector<E820Entry> buildE820Map(const GuestMemory& memory);

}  // namespace flotilla::vmm
