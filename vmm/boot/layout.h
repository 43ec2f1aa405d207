// Where the VMM puts boot data in low guest memory. Everything below 1 MiB that Linux might
// take for RAM is reported in the e820 map accordingly.
#pragma once

#include <cstdint>

#include "vmm/memory/guest_address.h"

namespace flotilla::vmm::layout {

// Boot data starts above the real-mode IVT and the BIOS data area [0, 0x500), which Linux
// reads (e.g. the EBDA pointer at 0x40e) and must find zero rather than VMM data.
inline constexpr GuestAddress kGdt{0x500};  // 6 slots, x86_setup.h (Linux's boot GDT layout)
inline constexpr GuestAddress kIdt{0x530};  // empty (limit 0): no interrupts at entry
inline constexpr GuestAddress kPvhStartInfo{0x6000};     // hvm_start_info, then its memory map
inline constexpr GuestAddress kPvhModules{0x6800};       // hvm_modlist_entry (the initrd)
inline constexpr GuestAddress kBootParams{0x7000};       // Linux "zero page"
inline constexpr GuestAddress kBootStack{0x8ff0};        // initial rsp
inline constexpr GuestAddress kPml4{0x9000};             // identity map of the first 4 GiB:
inline constexpr GuestAddress kPdpt{0xa000};             //   PML4, PDPT, then 4 page
inline constexpr GuestAddress kPageDirectories{0xb000};  //   directories of 2 MiB pages
inline constexpr GuestAddress kCmdline{0x20000};
inline constexpr uint64_t kCmdlineMax = 0x10000;  // including the terminating NUL
// MP floating pointer + configuration table (mptable.h): Linux scans the last KiB of base
// memory (639 KiB) for the floating pointer; the table grows past 640 KiB for more than 40
// vCPUs, into the hole the e820 map leaves out, never beyond 0xf0000.
inline constexpr GuestAddress kEbda{0x9fc00};
inline constexpr GuestAddress kLowRamEnd{0x9fc00};         // RAM below 640 KiB ends at the EBDA
inline constexpr GuestAddress kHighMemory{0x100000};       // 1 MiB
inline constexpr GuestAddress kElfDefaultLoad{0x1000000};  // 16 MiB
inline constexpr GuestAddress kIoApic{0xfec00000};
inline constexpr GuestAddress kLocalApic{0xfee00000};

}  // namespace flotilla::vmm::layout
