// ELF64 kernel images (vmlinux, and PVH kernels): the file header, the program headers, the
// PT_LOAD segments (loaded at their physical address p_paddr) and the PT_NOTE scan for Xen's
// PVH entry note (name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY). The image is untrusted input.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {

inline constexpr uint32_t kXenElfNotePhys32Entry = 18;
// vmlinux has 5 program headers; anything past this is not a kernel.
inline constexpr uint16_t kMaxElfProgramHeaders = 128;

struct ElfSegment {
  size_t index = 0;  // of its program header, for messages
  uint64_t file_offset = 0;
  uint64_t file_size = 0;
  GuestAddress address;  // p_paddr
  uint64_t memory_size = 0;
};

struct ElfKernel {
  std::vector<ElfSegment> segments;  // PT_LOAD with p_memsz > 0, in file order
  GuestAddress entry;                // e_entry: for a vmlinux, the physical startup_64
  std::optional<GuestAddress> pvh_entry;
  GuestAddress start;  // lowest loaded address
  GuestAddress end;    // end of the highest loaded segment

  // Whether `address` falls inside a loaded segment.
  bool loads(GuestAddress address) const;
};

// Whether the image starts with the ELF magic.
bool looksLikeElf(std::span<const uint8_t> image);

// Parses and checks an x86-64 ELF kernel for loading into `memory`: every segment lies in the
// image, in RAM below the 32-bit MMIO hole and above the boot data below 1 MiB.
absl::StatusOr<ElfKernel> parseElfKernel(std::span<const uint8_t> image, const GuestMemory& memory);

// Copies the segments of a kernel parseElfKernel accepted into guest memory, zero-filling
// p_memsz beyond p_filesz.
absl::Status loadElfKernel(const GuestMemory& memory, std::span<const uint8_t> image,
                           const ElfKernel& kernel);

}  // namespace flotilla::vmm
