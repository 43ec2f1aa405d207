// Filling the Linux zero page (see linux_boot_params.h).
#include "vmm/boot/linux_boot_params.h"

#include <algorithm>
#include <cstring>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm::linux_boot {

absl::StatusOr<BootParams> makeBootParams(const BootParamsInput& input) {
  if (input.e820.size() > kMaxE820Entries) {
    return absl::InvalidArgumentError(
        fmt::format("the memory map has {} entries; the Linux zero page holds at most {}",
                    input.e820.size(), kMaxE820Entries));
  }
  // Everything the loader puts in the zero page stays below 4 GiB, where the 32-bit fields
  // reach without their ext_ halves; say so rather than truncate.
  constexpr uint64_t k4GiB = uint64_t{1} << 32;
  if (input.cmdline.raw() >= k4GiB || input.initrd.raw() >= k4GiB || input.initrd_size >= k4GiB ||
      input.load_address.raw() >= k4GiB) {
    return absl::InvalidArgumentError(fmt::format(
        "boot data above 4 GiB (command line at {}, initrd at {} + {:#x}, kernel at {}): the "
        "loader keeps everything below 4 GiB",
        input.cmdline, input.initrd, input.initrd_size, input.load_address));
  }

  BootParams params;
  std::memset(&params, 0, sizeof(params));
  SetupHeader& hdr = params.hdr;
  if (!input.setup_header.empty()) {
    // A bzImage's own header: the kernel reads back what it wrote there (version, flags,
    // sizes); the loader then fills in the fields it owns.
    std::memcpy(&hdr, input.setup_header.data(),
                std::min(input.setup_header.size(), sizeof(SetupHeader)));
    // Relocatable kernels loaded elsewhere than the default 1 MiB learn it from here.
    hdr.code32_start = static_cast<uint32_t>(input.load_address.raw());
  } else {
    // A vmlinux has no header; its 64-bit entry needs only these to recognize a zero page.
    hdr.boot_flag = kBootFlag;
    hdr.header = kHeaderMagic;
    hdr.version = kLoaderProtocolVersion;
    hdr.kernel_alignment = 0x200000;  // 2 MiB: the x86-64 kernel's minimum alignment
    hdr.code32_start = static_cast<uint32_t>(input.load_address.raw());
    hdr.cmdline_size = input.cmdline_size;
  }
  hdr.type_of_loader = kTypeOfLoaderUndefined;
  hdr.vid_mode = kVidModeNormal;
  hdr.loadflags = static_cast<uint8_t>(hdr.loadflags | kLoadedHigh);
  hdr.cmd_line_ptr = static_cast<uint32_t>(input.cmdline.raw());
  hdr.ramdisk_image = static_cast<uint32_t>(input.initrd.raw());
  hdr.ramdisk_size = static_cast<uint32_t>(input.initrd_size);

  params.e820_entries = static_cast<uint8_t>(input.e820.size());
  for (size_t i = 0; i < input.e820.size(); ++i) {
    params.e820_table[i].addr = input.e820[i].addr;
    params.e820_table[i].size = input.e820[i].size;
    params.e820_table[i].type = input.e820[i].type;
  }
  return params;
}

}  // namespace flotilla::vmm::linux_boot
