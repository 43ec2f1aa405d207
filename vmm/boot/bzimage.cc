// Parsing and loading bzImage kernels (see bzimage.h).
#include "vmm/boot/bzimage.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/boot/bytes.h"
#include "vmm/boot/layout.h"

namespace flotilla::vmm {
namespace {

using linux_boot::kSetupHeaderOffset;
using linux_boot::SetupHeader;

constexpr uint64_t kSectorSize = 512;
constexpr uint8_t kDefaultSetupSects = 4;  // setup_sects 0 means 4 (boot.rst)
constexpr uint64_t kBootFlagOffset = offsetof(SetupHeader, boot_flag) + kSetupHeaderOffset;
constexpr uint64_t kMagicOffset = offsetof(SetupHeader, header) + kSetupHeaderOffset;
constexpr uint64_t kJumpOffset = offsetof(SetupHeader, jump) + kSetupHeaderOffset;
constexpr uint64_t kMaxKernelAlignment = uint64_t{1} << 30;

absl::Status bzImageError(std::string message) {
  return absl::InvalidArgumentError("bzImage: " + message);
}

std::string protocolName(uint16_t version) {
  return fmt::format("{}.{:02}", version >> 8, version & 0xff);
}

}  // namespace

bool looksLikeBzImage(std::span<const uint8_t> image) {
  std::optional<uint16_t> flag = readStruct<uint16_t>(image, kBootFlagOffset);
  std::optional<uint32_t> magic = readStruct<uint32_t>(image, kMagicOffset);
  return flag == linux_boot::kBootFlag && magic == linux_boot::kHeaderMagic;
}

absl::StatusOr<BzImage> parseBzImage(std::span<const uint8_t> image, const GuestMemory& memory) {
  if (!looksLikeBzImage(image)) {
    return bzImageError("no boot flag 0xaa55 at 0x1fe and 'HdrS' at 0x202: not a bzImage");
  }
  // The header ends at 0x202 + the byte at 0x201 (the operand of the jump at 0x200).
  const uint64_t header_end = std::min<uint64_t>(kJumpOffset + 2 + image[kJumpOffset + 1],
                                                 kSetupHeaderOffset + sizeof(SetupHeader));
  if (header_end > image.size()) {
    return bzImageError(fmt::format(
        "the setup header ends at {:#x}, past the end of the {}-byte image: the file is truncated",
        header_end, image.size()));
  }
  BzImage result;
  result.header_bytes = image.subspan(kSetupHeaderOffset, header_end - kSetupHeaderOffset);
  std::memset(&result.header, 0, sizeof(result.header));
  std::memcpy(&result.header, result.header_bytes.data(), result.header_bytes.size());
  const SetupHeader& header = result.header;

  const uint16_t version = header.version;
  if (version < kMinBzImageProtocol) {
    return bzImageError(fmt::format(
        "boot protocol {} is too old for 64-bit boot (need {} or later: Linux 3.8 or newer)",
        protocolName(version), protocolName(kMinBzImageProtocol)));
  }
  // The fields used below all exist from 2.10 on; a header too short to hold them is corrupt.
  if (header_end < offsetof(SetupHeader, init_size) + sizeof(uint32_t) + kSetupHeaderOffset) {
    return bzImageError(fmt::format(
        "the setup header of protocol {} ends at {:#x}, before its init_size field: the image "
        "is corrupt",
        protocolName(version), header_end));
  }
  if ((header.xloadflags & linux_boot::kXlfKernel64) == 0) {
    return bzImageError(
        "the kernel has no 64-bit entry point (XLF_KERNEL_64 is not set in xloadflags): it is "
        "a 32-bit kernel; use an x86_64 kernel");
  }
  if ((header.loadflags & linux_boot::kLoadedHigh) == 0) {
    return bzImageError(
        "the kernel loads at 64 KiB (LOADED_HIGH is not set in loadflags): it is a zImage, not a "
        "bzImage");
  }

  const uint64_t setup_sects = header.setup_sects == 0 ? kDefaultSetupSects : header.setup_sects;
  const uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  if (setup_size >= image.size()) {
    return bzImageError(fmt::format(
        "setup_sects = {} puts the kernel at offset {:#x}, at or past the end of the {}-byte "
        "image: the file is truncated or corrupt",
        uint64_t{header.setup_sects}, setup_size, image.size()));
  }
  result.kernel = image.subspan(setup_size);
  if (result.kernel.size() <= linux_boot::kEntry64Offset) {
    return bzImageError(fmt::format(
        "the protected-mode kernel is {} bytes, too short to hold the 64-bit entry point at "
        "{:#x}",
        result.kernel.size(), linux_boot::kEntry64Offset));
  }

  // Load where the kernel prefers to run: a relocatable kernel would move there anyway (it
  // never decompresses below LOAD_PHYSICAL_ADDR, which is pref_address), a fixed one must.
  uint64_t load = header.pref_address;
  if (header.relocatable_kernel != 0) {
    const uint64_t alignment = header.kernel_alignment;
    if (!isPowerOfTwo(alignment) || alignment > kMaxKernelAlignment) {
      return bzImageError(fmt::format(
          "kernel_alignment {:#x} is not a power of two up to 1 GiB: the image is corrupt",
          alignment));
    }
    std::optional<uint64_t> aligned = alignUp(std::max(load, layout::kHighMemory.raw()), alignment);
    if (!aligned) {
      return bzImageError(
          fmt::format("pref_address {:#x} cannot be aligned to {:#x}", load, alignment));
    }
    load = *aligned;
  }
  if (load < layout::kHighMemory.raw()) {
    return bzImageError(fmt::format(
        "the kernel wants to run at {:#x} (pref_address), inside the boot data below 1 MiB", load));
  }
  result.load_address = GuestAddress(load);
  // Fields of the packed header are copied before being passed by reference (std::max, fmt):
  // a reference to a misaligned field is undefined behaviour.
  const uint64_t init_size = header.init_size;
  result.footprint = std::max<uint64_t>(init_size, result.kernel.size());
  std::optional<uint64_t> end = checkedAdd(load, result.footprint);
  const GuestRegion& low = memory.regions().front();
  if (!end || *end > low.end().raw()) {
    const std::string needs = fmt::format(
        "the kernel needs {} from {:#x} (init_size {:#x}, {} in the image){}",
        describeSize(result.footprint), load, init_size, describeSize(result.kernel.size()),
        end ? ", RAM up to " + describeSize(*end) : "");
    if (memory.regions().size() == 1) {
      return bzImageError(fmt::format("{}; the VM has {}: give the VM more memory", needs,
                                      describeSize(memory.ramBytes())));
    }
    return bzImageError(
        fmt::format("{}, beyond the RAM below {}", needs, describeSize(low.end().raw())));
  }
  result.entry64 = result.load_address + linux_boot::kEntry64Offset;
  result.cmdline_max = header.cmdline_size;
  result.initrd_end_max = uint64_t{header.initrd_addr_max} + 1;
  return result;
}

absl::Status loadBzImage(const GuestMemory& memory, const BzImage& image) {
  return memory.write(image.load_address, image.kernel);
}

}  // namespace flotilla::vmm
