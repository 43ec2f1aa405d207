// Copies the command line and memory map out of struct hvm_start_info (see boot_info.h).
#include "boot_info.h"

#include "hvm_start_info.h"
#include "layout.h"

struct BootInfo boot_info;

void copyBootInfo(uint64_t start_info_paddr) {
  // Runs at CPL0 (emulated under PVM): plain bounded loops over a few hundred bytes.
  if (start_info_paddr == 0 || start_info_paddr >= IDENTITY_MAP_LIMIT) {
    boot_info.error = "no hvm_start_info (EBX was 0 or above 4 GiB at the PVH entry)";
    return;
  }
  const struct hvm_start_info* info = (const struct hvm_start_info*)start_info_paddr;
  if (info->magic != HVM_START_MAGIC) {
    boot_info.error = "hvm_start_info has a bad magic (expected 0x336ec578)";
    return;
  }
  if (info->cmdline_paddr != 0 && info->cmdline_paddr < IDENTITY_MAP_LIMIT) {
    const char* cmdline = (const char*)info->cmdline_paddr;
    uint32_t i = 0;
    for (; i < BOOT_CMDLINE_MAX - 1 && cmdline[i] != '\0'; ++i) boot_info.cmdline[i] = cmdline[i];
    boot_info.cmdline[i] = '\0';
    if (cmdline[i] != '\0') {
      boot_info.error = "the command line is longer than 2047 bytes";
      return;
    }
  }
  if (info->version >= 1 && info->memmap_paddr != 0 && info->memmap_paddr < IDENTITY_MAP_LIMIT) {
    const struct hvm_memmap_table_entry* entries =
        (const struct hvm_memmap_table_entry*)info->memmap_paddr;
    uint32_t count = info->memmap_entries;
    if (count > BOOT_MEMMAP_MAX) count = BOOT_MEMMAP_MAX;
    for (uint32_t i = 0; i < count; ++i) {
      boot_info.memmap[i].addr = entries[i].addr;
      boot_info.memmap[i].size = entries[i].size;
      boot_info.memmap[i].type = entries[i].type;
    }
    boot_info.memmap_entries = count;
  }
}

uint64_t ramMib(void) {
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < boot_info.memmap_entries; ++i) {
    if (boot_info.memmap[i].type == HVM_MEMMAP_TYPE_RAM) bytes += boot_info.memmap[i].size;
  }
  const uint64_t mib = 1 << 20;
  return (bytes + mib / 2) / mib;
}

bool rangeIsRam(uint64_t base, uint64_t size) {
  uint64_t end = base + size;
  if (end < base || end > IDENTITY_MAP_LIMIT) return false;
  for (uint32_t i = 0; i < boot_info.memmap_entries; ++i) {
    const struct MemoryRange* range = &boot_info.memmap[i];
    if (range->type == HVM_MEMMAP_TYPE_RAM && range->addr <= base &&
        end <= range->addr + range->size) {
      return true;
    }
  }
  return false;
}
