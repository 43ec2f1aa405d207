// Parsing and loading ELF64 kernels (see elf.h). Every field read from the image is checked
// before use; messages name the program header and the values found.
#include "vmm/boot/elf.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/boot/bytes.h"
#include "vmm/boot/layout.h"

namespace flotilla::vmm {
namespace {

static_assert(sizeof(Elf64_Ehdr) == 64 && sizeof(Elf64_Phdr) == 56 && sizeof(Elf64_Nhdr) == 12);

absl::Status elfError(std::string message) {
  return absl::InvalidArgumentError("ELF kernel: " + message);
}

std::string describeLoad(size_t index, const Elf64_Phdr& header) {
  return fmt::format("program header {} (PT_LOAD at {:#x}, {:#x} bytes)", index, header.p_paddr,
                     header.p_memsz);
}

// Checks a PT_LOAD program header against the image and guest memory.
absl::StatusOr<ElfSegment> checkLoadSegment(size_t index, const Elf64_Phdr& header,
                                            std::span<const uint8_t> image,
                                            const GuestMemory& memory) {
  if (header.p_filesz > header.p_memsz) {
    return elfError(fmt::format(
        "program header {} (PT_LOAD) has more bytes in the file ({:#x}) than in memory ({:#x})",
        index, header.p_filesz, header.p_memsz));
  }
  if (!rangeInside(header.p_offset, header.p_filesz, image.size())) {
    return elfError(fmt::format(
        "program header {} (PT_LOAD) has its bytes at offset {:#x} + {:#x}, outside the "
        "{}-byte image: the file is truncated or corrupt",
        index, header.p_offset, header.p_filesz, image.size()));
  }
  if (!checkedAdd(header.p_paddr, header.p_memsz)) {
    return elfError(describeLoad(index, header) + " wraps around the address space");
  }
  if (header.p_paddr < layout::kHighMemory.raw()) {
    return elfError(describeLoad(index, header) +
                    " overlaps the boot data below 1 MiB: link the kernel at 1 MiB or above");
  }
  // A kernel loads below the 32-bit MMIO hole: its first code runs with 32-bit addresses or
  // the boot identity map, and Linux expects to find itself there.
  const GuestRegion& low = memory.regions().front();
  if (header.p_paddr + header.p_memsz > low.end().raw()) {
    if (memory.regions().size() == 1) {
      return elfError(fmt::format("{} does not fit in the VM's {} of RAM: give the VM more memory",
                                  describeLoad(index, header), describeSize(memory.ramBytes())));
    }
    return elfError(fmt::format("{} lies beyond the RAM below {} where a kernel must load",
                                describeLoad(index, header), describeSize(low.end().raw())));
  }
  return ElfSegment{index, header.p_offset, header.p_filesz, GuestAddress(header.p_paddr),
                    header.p_memsz};
}

// Scans the notes of a PT_NOTE segment for the PVH entry point.
absl::StatusOr<std::optional<GuestAddress>> findPvhEntry(size_t index, const Elf64_Phdr& header,
                                                         std::span<const uint8_t> image) {
  if (!rangeInside(header.p_offset, header.p_filesz, image.size())) {
    return elfError(fmt::format(
        "program header {} (PT_NOTE) has its bytes at offset {:#x} + {:#x}, outside the "
        "{}-byte image: the file is truncated or corrupt",
        index, header.p_offset, header.p_filesz, image.size()));
  }
  const std::span<const uint8_t> notes = image.subspan(header.p_offset, header.p_filesz);
  // Notes are 4-byte aligned in practice (also on ELF64), 8 when the segment says so.
  const uint64_t align = header.p_align == 8 ? 8 : 4;
  uint64_t offset = 0;
  while (notes.size() - offset >= sizeof(Elf64_Nhdr)) {
    const Elf64_Nhdr note = *readStruct<Elf64_Nhdr>(notes, offset);
    const uint64_t name_offset = offset + sizeof(Elf64_Nhdr);
    // 32-bit sizes aligned in 64 bits cannot overflow; the offsets stay below the image size.
    const uint64_t desc_offset = name_offset + *alignUp(note.n_namesz, align);
    if (!rangeInside(name_offset, note.n_namesz, notes.size()) ||
        !rangeInside(desc_offset, note.n_descsz, notes.size())) {
      return elfError(fmt::format(
          "the note at offset {:#x} of program header {} (PT_NOTE, {:#x} bytes) has a name of "
          "{:#x} and a descriptor of {:#x} bytes that run past its end",
          offset, index, notes.size(), note.n_namesz, note.n_descsz));
    }
    const bool is_xen = note.n_namesz == 4 && std::memcmp(&notes[name_offset], "Xen", 4) == 0;
    if (is_xen && note.n_type == kXenElfNotePhys32Entry) {
      // Linux 6.1 writes the entry as a pointer-sized value (.quad on x86-64), later kernels
      // as a .long, which is what Xen documents. Accept both.
      uint64_t entry = 0;
      if (note.n_descsz == 4) {
        entry = *readStruct<uint32_t>(notes, desc_offset);
      } else if (note.n_descsz == 8) {
        entry = *readStruct<uint64_t>(notes, desc_offset);
      } else {
        return elfError(fmt::format(
            "the PVH entry note (Xen, type 18) has a {}-byte descriptor; expected 4 or 8",
            note.n_descsz));
      }
      if (entry >= (uint64_t{1} << 32)) {
        return elfError(fmt::format(
            "the PVH entry point {:#x} is above 4 GiB; a 32-bit entry must lie below", entry));
      }
      return std::optional<GuestAddress>(GuestAddress(entry));
    }
    const uint64_t next = desc_offset + *alignUp(note.n_descsz, align);
    if (next >= notes.size()) break;
    offset = next;
  }
  return std::optional<GuestAddress>();
}

}  // namespace

bool ElfKernel::loads(GuestAddress address) const {
  return std::any_of(segments.begin(), segments.end(), [&](const ElfSegment& segment) {
    return address >= segment.address && address - segment.address < segment.memory_size;
  });
}

bool looksLikeElf(std::span<const uint8_t> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

absl::StatusOr<ElfKernel> parseElfKernel(std::span<const uint8_t> image,
                                         const GuestMemory& memory) {
  std::optional<Elf64_Ehdr> header = readStruct<Elf64_Ehdr>(image, 0);
  if (!header) {
    return elfError(fmt::format("the image ({}) is too short for an ELF64 header ({} bytes)",
                                describeSize(image.size()), sizeof(Elf64_Ehdr)));
  }
  if (header->e_ident[EI_CLASS] != ELFCLASS64) {
    return elfError(fmt::format("ELF class {} is not ELF64: use a 64-bit (x86_64) kernel",
                                header->e_ident[EI_CLASS]));
  }
  if (header->e_ident[EI_DATA] != ELFDATA2LSB) {
    return elfError(fmt::format("data encoding {} is not little-endian", header->e_ident[EI_DATA]));
  }
  if (header->e_machine != EM_X86_64) {
    return elfError(fmt::format("machine {} is not x86-64 ({}): use a kernel built for x86_64",
                                header->e_machine, EM_X86_64));
  }
  if (header->e_type != ET_EXEC) {
    return elfError(
        fmt::format("type {} is not an executable (ET_EXEC = {})", header->e_type, ET_EXEC));
  }
  if (header->e_phentsize != sizeof(Elf64_Phdr)) {
    return elfError(fmt::format("program headers are {} bytes; ELF64 has {}", header->e_phentsize,
                                sizeof(Elf64_Phdr)));
  }
  if (header->e_phnum == 0 || header->e_phnum > kMaxElfProgramHeaders) {
    return elfError(fmt::format("{} program headers (a kernel has 1 to {})", header->e_phnum,
                                kMaxElfProgramHeaders));
  }
  const uint64_t table_size = uint64_t{header->e_phnum} * sizeof(Elf64_Phdr);
  if (!rangeInside(header->e_phoff, table_size, image.size())) {
    return elfError(fmt::format(
        "the {} program headers at offset {:#x} ({} bytes) lie outside the {}-byte image",
        header->e_phnum, header->e_phoff, table_size, image.size()));
  }

  ElfKernel kernel;
  kernel.entry = GuestAddress(header->e_entry);
  for (size_t i = 0; i < header->e_phnum; ++i) {
    const Elf64_Phdr phdr =
        *readStruct<Elf64_Phdr>(image, header->e_phoff + i * sizeof(Elf64_Phdr));
    if (phdr.p_type == PT_LOAD) {
      if (phdr.p_memsz == 0) continue;
      ASSIGN_OR_RETURN(ElfSegment segment, checkLoadSegment(i, phdr, image, memory));
      kernel.segments.push_back(segment);
    } else if (phdr.p_type == PT_NOTE && !kernel.pvh_entry) {
      ASSIGN_OR_RETURN(kernel.pvh_entry, findPvhEntry(i, phdr, image));
    }
  }
  if (kernel.segments.empty()) {
    return elfError("no PT_LOAD program header has contents: there is nothing to load");
  }
  kernel.start = kernel.segments.front().address;
  kernel.end = kernel.segments.front().address + kernel.segments.front().memory_size;
  for (const ElfSegment& segment : kernel.segments) {
    kernel.start = std::min(kernel.start, segment.address);
    kernel.end = std::max(kernel.end, segment.address + segment.memory_size);
  }
  return kernel;
}

absl::Status loadElfKernel(const GuestMemory& memory, std::span<const uint8_t> image,
                           const ElfKernel& kernel) {
  for (const ElfSegment& segment : kernel.segments) {
    ASSIGN_OR_RETURN(std::span<uint8_t> target, memory.span(segment.address, segment.memory_size));
    const std::span<const uint8_t> source = image.subspan(segment.file_offset, segment.file_size);
    std::copy(source.begin(), source.end(), target.begin());
    std::fill(target.begin() + static_cast<ptrdiff_t>(source.size()), target.end(), uint8_t{0});
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm
