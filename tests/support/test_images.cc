// Builders of synthetic kernel images (see test_images.h).
#include "tests/support/test_images.h"

#include <elf.h>

#include <cstdlib>

#include "vmm/boot/linux_boot_params.h"

namespace flotilla::vmm::testing {
namespace {

template <typename T>
void append(std::vector<uint8_t>& bytes, const T& value) {
  const auto* raw = reinterpret_cast<const uint8_t*>(&value);
  bytes.insert(bytes.end(), raw, raw + sizeof(T));
}

void appendNote(std::vector<uint8_t>& notes, const char name[4], uint32_t type,
                const std::vector<uint8_t>& desc) {
  append(notes, Elf64_Nhdr{4, static_cast<uint32_t>(desc.size()), type});
  notes.insert(notes.end(), name, name + 4);
  notes.insert(notes.end(), desc.begin(), desc.end());
  while (notes.size() % 4 != 0) notes.push_back(0);
}

}  // namespace

GuestMemory testMemory(uint64_t bytes) {
  absl::StatusOr<GuestMemory> memory = GuestMemory::create(bytes, {});
  if (!memory.ok()) std::abort();
  return std::move(*memory);
}

std::vector<uint8_t> pattern(uint64_t size, uint8_t seed) {
  std::vector<uint8_t> bytes(size);
  for (uint64_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + seed);
  return bytes;
}

std::vector<uint8_t> buildElf(const ElfSpec& spec) {
  std::vector<uint8_t> notes;
  if (spec.pvh_entry) {
    if (spec.other_note_first) appendNote(notes, "GNU", 3, pattern(20, 1));
    std::vector<uint8_t> desc(spec.pvh_desc_size, 0);
    std::memcpy(desc.data(), &*spec.pvh_entry, std::min<size_t>(desc.size(), 8));
    appendNote(notes, "Xen", 18, desc);
  }
  const size_t phnum = spec.segments.size() + (spec.pvh_entry ? 1 : 0);
  const uint64_t notes_offset = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
  uint64_t data_offset = notes_offset + notes.size();

  Elf64_Ehdr header = {};
  std::memcpy(header.e_ident, ELFMAG, SELFMAG);
  header.e_ident[EI_CLASS] = ELFCLASS64;
  header.e_ident[EI_DATA] = ELFDATA2LSB;
  header.e_ident[EI_VERSION] = EV_CURRENT;
  header.e_type = ET_EXEC;
  header.e_machine = EM_X86_64;
  header.e_version = EV_CURRENT;
  header.e_entry = spec.entry;
  header.e_phoff = sizeof(Elf64_Ehdr);
  header.e_ehsize = sizeof(Elf64_Ehdr);
  header.e_phentsize = sizeof(Elf64_Phdr);
  header.e_phnum = static_cast<uint16_t>(phnum);
  std::vector<uint8_t> image;
  append(image, header);
  for (const ElfSegmentSpec& segment : spec.segments) {
    Elf64_Phdr phdr = {};
    phdr.p_type = PT_LOAD;
    phdr.p_flags = PF_R | PF_W | PF_X;
    phdr.p_offset = data_offset;
    phdr.p_vaddr = segment.paddr;
    phdr.p_paddr = segment.paddr;
    phdr.p_filesz = segment.bytes.size();
    phdr.p_memsz = segment.memsz != 0 ? segment.memsz : segment.bytes.size();
    phdr.p_align = 0x1000;
    append(image, phdr);
    data_offset += segment.bytes.size();
  }
  if (spec.pvh_entry) {
    Elf64_Phdr phdr = {};
    phdr.p_type = PT_NOTE;
    phdr.p_offset = notes_offset;
    phdr.p_filesz = notes.size();
    phdr.p_memsz = notes.size();
    phdr.p_align = 4;
    append(image, phdr);
  }
  image.insert(image.end(), notes.begin(), notes.end());
  for (const ElfSegmentSpec& segment : spec.segments) {
    image.insert(image.end(), segment.bytes.begin(), segment.bytes.end());
  }
  return image;
}

std::vector<uint8_t> simpleElf(bool pvh, uint64_t size, uint64_t memsz) {
  ElfSpec spec;
  spec.segments.push_back({16 * kMiB, pattern(size, 3), memsz});
  spec.entry = 16 * kMiB;
  if (pvh) spec.pvh_entry = 16 * kMiB + 0x100;
  return buildElf(spec);
}

std::vector<uint8_t> buildBzImage(const BzImageSpec& spec) {
  using linux_boot::SetupHeader;
  const uint64_t setup_size = (uint64_t{spec.setup_sects == 0 ? 4u : spec.setup_sects} + 1) * 512;
  std::vector<uint8_t> image = pattern(setup_size, 5);
  SetupHeader header = {};
  header.setup_sects = spec.setup_sects;
  header.syssize = 0;
  header.boot_flag = linux_boot::kBootFlag;
  // "jmp short" over the header: the operand says where the header ends (0x202 + operand).
  header.jump = static_cast<uint16_t>(0xeb | ((0x26c - 0x202) << 8));
  header.header = linux_boot::kHeaderMagic;
  header.version = spec.version;
  header.loadflags = spec.loadflags;
  header.code32_start = 0x100000;
  header.initrd_addr_max = spec.initrd_addr_max;
  header.kernel_alignment = spec.kernel_alignment;
  header.relocatable_kernel = spec.relocatable;
  header.min_alignment = 21;
  header.xloadflags = spec.xloadflags;
  header.cmdline_size = spec.cmdline_size;
  header.pref_address = spec.pref_address;
  header.init_size = spec.init_size;
  std::memcpy(image.data() + linux_boot::kSetupHeaderOffset, &header, sizeof(header));
  const std::vector<uint8_t> payload = spec.payload.empty() ? pattern(0x1000, 9) : spec.payload;
  image.insert(image.end(), payload.begin(), payload.end());
  return image;
}

}  // namespace flotilla::vmm::testing
