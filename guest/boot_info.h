// What the guest keeps from the VMM's boot structures: a copy of the command line and of the
// memory map, taken at CPL0 before anything can overwrite low memory (the VMM's boot data
// lives there, and the AP trampoline page is reused).
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define BOOT_CMDLINE_MAX 2048
#define BOOT_MEMMAP_MAX 64

struct MemoryRange {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

struct BootInfo {
  const char* error;  // why the boot structures were unusable, or 0
  char cmdline[BOOT_CMDLINE_MAX];
  struct MemoryRange memmap[BOOT_MEMMAP_MAX];
  uint32_t memmap_entries;
};

extern struct BootInfo boot_info;

// CPL0, at boot: copies what boot_info holds from the hvm_start_info at `start_info_paddr`.
void copyBootInfo(uint64_t start_info_paddr);

// Usable RAM in the memory map, rounded to the nearest MiB.
uint64_t ramMib(void);

// Whether [base, base + size) lies within one RAM range of the memory map and below the end
// of the identity map.
bool rangeIsRam(uint64_t base, uint64_t size);
