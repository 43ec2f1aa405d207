// Writing the boot GDT and identity page tables (see x86_setup.h).
#include "vmm/boot/x86_setup.h"

#include <vector>

#include "common/status.h"

namespace flotilla::vmm::x86 {

Segment decodeDescriptor(uint64_t d) {
  Segment segment;
  segment.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((d & 0xffff) | (((d >> 48) & 0xf) << 16));
  segment.type = static_cast<uint8_t>((d >> 40) & 0xf);
  segment.s = (d & kDescriptorCodeOrData) != 0;
  segment.dpl = static_cast<uint8_t>((d >> 45) & 0x3);
  segment.present = (d & kDescriptorPresent) != 0;
  segment.avl = ((d >> 52) & 1) != 0;
  segment.l = (d & kDescriptorLong) != 0;
  segment.db = (d & kDescriptorDefault32) != 0;
  segment.g = (d & kDescriptorPageGranular) != 0;
  // With G set the limit counts 4 KiB pages, the low 12 bits of the byte limit all ones.
  segment.limit = segment.g ? (limit << 12) | 0xfff : limit;
  return segment;
}

absl::Status writeBootGdt(const GuestMemory& memory) {
  return memory.writeObject(layout::kGdt, kBootGdt);
}

absl::Status writeIdentityPageTables(const GuestMemory& memory) {
  constexpr size_t kEntries = kPageSize / sizeof(uint64_t);
  constexpr uint64_t kTableFlags = kPagePresent | kPageWritable;
  constexpr uint64_t k2MiB = uint64_t{2} << 20;

  std::vector<uint64_t> table(kEntries, 0);
  auto write_table = [&](GuestAddress address) {
    return memory.write(address, {reinterpret_cast<const uint8_t*>(table.data()), kPageSize});
  };
  // One PML4 entry covers 512 GiB: the first is all it takes.
  table[0] = layout::kPdpt.raw() | kTableFlags;
  RETURN_IF_ERROR(write_table(layout::kPml4));
  for (uint64_t i = 0; i < kPageDirectoryCount; ++i) {
    table[i] = (layout::kPageDirectories + i * kPageSize).raw() | kTableFlags;
  }
  RETURN_IF_ERROR(write_table(layout::kPdpt));
  for (uint64_t directory = 0; directory < kPageDirectoryCount; ++directory) {
    for (uint64_t i = 0; i < kEntries; ++i) {
      table[i] = ((directory * kEntries + i) * k2MiB) | kTableFlags | kPageLarge;
    }
    RETURN_IF_ERROR(write_table(layout::kPageDirectories + directory * kPageSize));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm::x86
