// The PVH boot protocol (Xen's xen/include/public/arch-x86/hvm/start_info.h, also used by
// Linux, QEMU and Firecracker without Xen): the hvm_start_info structure the kernel finds in
// %ebx at its XEN_ELFNOTE_PHYS32_ENTRY, with its memory map and module list (the initrd).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/layout.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::pvh {

inline constexpr uint32_t kStartMagic = 0x336ec578;  // "xEn3" with 0x80 set in the 'E'
// Version 1 adds the memory map: without it Linux would ask Xen for one (a hypercall).
inline constexpr uint32_t kStartInfoVersion = 1;

struct StartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  // version 1
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(StartInfo) == 56);
static_assert(offsetof(StartInfo, modlist_paddr) == 16);
static_assert(offsetof(StartInfo, rsdp_paddr) == 32);
static_assert(offsetof(StartInfo, memmap_paddr) == 40);
static_assert(offsetof(StartInfo, memmap_entries) == 48);

struct ModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(ModlistEntry) == 32);

struct MemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // XEN_HVM_MEMMAP_TYPE_*: 1 RAM, 2 reserved, as in e820
  uint32_t reserved;
};
static_assert(sizeof(MemmapEntry) == 24);

// The memory map follows the start info directly (8-byte aligned).
inline constexpr GuestAddress kMemmapAddress = layout::kPvhStartInfo + sizeof(StartInfo);

struct StartInfoInput {
  GuestAddress cmdline;
  GuestAddress initrd;  // 0: no module
  uint64_t initrd_size = 0;
  std::vector<E820Entry> e820;
};

// Writes the start info at layout::kPvhStartInfo, the memory map after it and the module
// list at layout::kPvhModules.
absl::Status writeStartInfo(const GuestMemory& memory, const StartInfoInput& input);

}  // namespace flotilla::vmm::pvh
