// Writing the PVH start info (see pvh.h).
#include "vmm/boot/pvh.h"

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm::pvh {

absl::Status writeStartInfo(const GuestMemory& memory, const StartInfoInput& input) {
  const uint64_t room = layout::kPvhModules - kMemmapAddress;
  if (input.e820.size() > room / sizeof(MemmapEntry)) {
    return absl::InvalidArgumentError(
        fmt::format("the memory map has {} entries; the PVH start info has room for {}",
                    input.e820.size(), room / sizeof(MemmapEntry)));
  }
  const bool has_initrd = input.initrd_size != 0;
  StartInfo info = {};
  info.magic = kStartMagic;
  info.version = kStartInfoVersion;
  info.nr_modules = has_initrd ? 1 : 0;
  info.modlist_paddr = has_initrd ? layout::kPvhModules.raw() : 0;
  info.cmdline_paddr = input.cmdline.raw();
  info.rsdp_paddr = 0;  // no ACPI: Linux finds the MP table instead
  info.memmap_paddr = kMemmapAddress.raw();
  info.memmap_entries = static_cast<uint32_t>(input.e820.size());
  RETURN_IF_ERROR(memory.writeObject(layout::kPvhStartInfo, info));

  for (size_t i = 0; i < input.e820.size(); ++i) {
    MemmapEntry entry = {input.e820[i].addr, input.e820[i].size, input.e820[i].type, 0};
    RETURN_IF_ERROR(memory.writeObject(kMemmapAddress + i * sizeof(MemmapEntry), entry));
  }
  if (has_initrd) {
    ModlistEntry module = {input.initrd.raw(), input.initrd_size, 0, 0};
    RETURN_IF_ERROR(memory.writeObject(layout::kPvhModules, module));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm::pvh
