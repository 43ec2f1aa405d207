// Synthetic kernel images for the boot tests and the fuzz seed corpora: a minimal ELF64 with
// PT_LOAD segments and an optional PVH note, and a minimal bzImage with a setup header of a
// given protocol version and a payload. Tests corrupt them byte by byte at the offsets below.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::testing {

inline constexpr uint64_t kMiB = uint64_t{1} << 20;

struct ElfSegmentSpec {
  uint64_t paddr = 0;
  std::vector<uint8_t> bytes;  // p_filesz = bytes.size()
  uint64_t memsz = 0;          // 0: bytes.size()
};

struct ElfSpec {
  std::vector<ElfSegmentSpec> segments;
  uint64_t entry = 0;
  std::optional<uint64_t> pvh_entry;  // adds a PT_NOTE with the Xen PHYS32_ENTRY note
  uint32_t pvh_desc_size = 8;         // 4 or 8 (what Linux writes); others for bad notes
  bool other_note_first = true;       // put a GNU build-id note before the Xen one
};

// Layout of what buildElf makes: the ELF header, the program headers (PT_NOTE last when there
// is one), the notes, then each segment's bytes.
inline constexpr uint64_t kElfPhoffOffset = 32;  // e_phoff
inline constexpr uint64_t kElfPhnumOffset = 56;  // e_phnum
inline constexpr uint64_t kElfProgramHeaders = 64;
inline constexpr uint64_t kElfPhdrSize = 56;
// Offsets inside a program header.
inline constexpr uint64_t kPhdrOffset = 8, kPhdrPaddr = 24, kPhdrFilesz = 32, kPhdrMemsz = 40;

std::vector<uint8_t> buildElf(const ElfSpec& spec);

// A vmlinux-like ELF: one segment of `size` bytes of a pattern at 16 MiB, entry at its start,
// and a PVH entry note pointing 0x100 into it when `pvh` is set.
std::vector<uint8_t> simpleElf(bool pvh, uint64_t size = 0x3000, uint64_t memsz = 0);

struct BzImageSpec {
  uint16_t version = 0x020f;
  uint8_t setup_sects = 3;
  uint8_t loadflags = 0x01;    // LOADED_HIGH
  uint16_t xloadflags = 0x01;  // XLF_KERNEL_64
  uint64_t pref_address = 16 * kMiB;
  uint32_t kernel_alignment = 2 * kMiB;
  uint8_t relocatable = 1;
  uint32_t init_size = 8 * kMiB;
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fffffff;
  std::vector<uint8_t> payload;  // empty: 0x1000 bytes of a pattern
};

std::vector<uint8_t> buildBzImage(const BzImageSpec& spec);

// The byte pattern the builders use for payloads: byte i is (i * 7 + seed) & 0xff.
std::vector<uint8_t> pattern(uint64_t size, uint8_t seed);

// Guest memory of `bytes` for a test (aborts if the host cannot give it).
GuestMemory testMemory(uint64_t bytes);

template <typename T>
void poke(std::vector<uint8_t>& bytes, uint64_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

}  // namespace flotilla::vmm::testing
