// The PVH boot structures (Xen's public arch-x86/hvm/start_info.h), as QEMU and Flotilla's VMM
// build them: EBX points at struct hvm_start_info when the 32-bit entry point runs.
#pragma once

#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578
#define HVM_MEMMAP_TYPE_RAM 1  // E820 type 1: usable RAM

struct hvm_start_info {
  uint32_t magic;    // HVM_START_MAGIC
  uint32_t version;  // 0: the fields up to rsdp_paddr; 1: also the memory map
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;  // NUL-terminated command line, 0 when there is none
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version >= 1: array of struct hvm_memmap_table_entry
  uint32_t memmap_entries;
  uint32_t reserved;
};

struct hvm_memmap_table_entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // E820 types
  uint32_t reserved;
};

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry layout");
