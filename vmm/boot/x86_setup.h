// The x86 CPU state a kernel is entered with that lives in guest memory: the boot GDT (laid out
// like Linux's own boot GDT in arch/x86/boot/compressed/head_64.S, so that __BOOT_CS = 0x10 and
// __BOOT_DS = 0x18 as the 64-bit boot protocol requires) and identity-mapped page tables for the
// first 4 GiB with 2 MiB pages (Intel SDM vol. 3, 4.5).
#pragma once

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "vmm/boot/layout.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::x86 {

// GDT selectors (index * 8, TI = 0, RPL = 0).
inline constexpr uint16_t kCode32Selector = 0x08;  // 32-bit flat code (PVH entry)
inline constexpr uint16_t kCode64Selector = 0x10;  // 64-bit code (__BOOT_CS)
inline constexpr uint16_t kDataSelector = 0x18;    // flat data (__BOOT_DS)
inline constexpr uint16_t kTssSelector = 0x20;     // TSS, 16 bytes (two slots) in long mode

// Descriptor bits: access byte at 40..47, flags nibble (G, D/B, L, AVL) at 52..55.
inline constexpr uint64_t kDescriptorPresent = uint64_t{1} << 47;
inline constexpr uint64_t kDescriptorCodeOrData = uint64_t{1} << 44;    // S: not a system segment
inline constexpr uint64_t kDescriptorLong = uint64_t{1} << 53;          // L: 64-bit code
inline constexpr uint64_t kDescriptorDefault32 = uint64_t{1} << 54;     // D/B: 32-bit segment
inline constexpr uint64_t kDescriptorPageGranular = uint64_t{1} << 55;  // G: limit in 4 KiB

// Base 0 everywhere. Code types 0xb (execute/read, accessed) and data type 0x3 (read/write,
// accessed): VMX requires the accessed bit in the segment registers at VM entry, so the GDT
// says what the registers hold. The TSS (type 0xb, busy) has limit 0x67, the minimal 32-bit
// TSS; in long mode its descriptor takes two slots, the second (base bits 63:32) zero.
inline constexpr std::array<uint64_t, 6> kBootGdt = {
    0,                   // 0x00 null
    0x00cf9b000000ffff,  // 0x08 code, 32-bit (D=1), limit 4 GiB (G=1)
    0x00af9b000000ffff,  // 0x10 code, 64-bit (L=1, D=0), limit 4 GiB
    0x00cf93000000ffff,  // 0x18 data, 32-bit (B=1), limit 4 GiB
    0x00008b0000000067,  // 0x20 TSS, busy, base 0, limit 0x67
    0,                   // 0x28 upper half of the 0x20 TSS descriptor in long mode
};
inline constexpr uint16_t kBootGdtLimit = sizeof(kBootGdt) - 1;
static_assert(layout::kGdt + sizeof(kBootGdt) <= layout::kIdt, "the GDT runs into the IDT");

// A descriptor decoded into the fields KVM's struct kvm_segment has.
struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0;  // in bytes, G applied: 0xffffffff for a flat 4 GiB segment
  uint8_t type = 0;    // 4 bits
  bool s = false;      // code or data (not a system segment)
  uint8_t dpl = 0;
  bool present = false;
  bool avl = false;
  bool l = false;
  bool db = false;
  bool g = false;
};
Segment decodeDescriptor(uint64_t descriptor);

// Writes kBootGdt at layout::kGdt.
absl::Status writeBootGdt(const GuestMemory& memory);

// Page-table entry bits.
inline constexpr uint64_t kPagePresent = 1 << 0;
inline constexpr uint64_t kPageWritable = 1 << 1;
inline constexpr uint64_t kPageLarge = 1 << 7;  // PS: a 2 MiB page in a page directory
inline constexpr uint64_t kIdentityMappedBytes = uint64_t{4} << 30;
inline constexpr uint64_t kPageDirectoryCount = kIdentityMappedBytes >> 30;  // 1 GiB each

// Writes the PML4 at layout::kPml4, the PDPT at layout::kPdpt and kPageDirectoryCount page
// directories from layout::kPageDirectories: virtual == physical for [0, 4 GiB), read/write,
// supervisor, cacheable (the MMIO hole included: the guest remaps it as it likes). cr3 is
// layout::kPml4.
absl::Status writeIdentityPageTables(const GuestMemory& memory);

}  // namespace flotilla::vmm::x86
