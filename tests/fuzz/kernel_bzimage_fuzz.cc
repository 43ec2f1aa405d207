// libFuzzer target for the bzImage loader (vmm/boot/bzimage.h through prepareBoot). Inputs get
// the boot flag and the "HdrS" magic patched in (into a copy, padded to hold the setup
// header), so that every input exercises the setup header checks rather than format
// detection. Any input must give a boot or an InvalidArgument error; an accepted boot must
// respect the invariants checked below.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vmm/boot/boot.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/linux_boot_params.h"

namespace {

using flotilla::vmm::BootConfig;
using flotilla::vmm::BootInfo;
using flotilla::vmm::GuestMemory;
using flotilla::vmm::KernelFormat;
namespace linux_boot = flotilla::vmm::linux_boot;
namespace layout = flotilla::vmm::layout;

constexpr uint64_t kRamBytes = uint64_t{64} << 20;
constexpr size_t kBootFlagOffset = 0x1fe;
constexpr size_t kMagicOffset = 0x202;
constexpr size_t kHeaderEnd = 0x26c;

const GuestMemory& memory() {
  static const GuestMemory* const kMemory = [] {
    auto created = GuestMemory::create(kRamBytes, {});
    if (!created.ok()) std::abort();
    return new GuestMemory(std::move(*created));
  }();
  return *kMemory;
}

void check(const absl::StatusOr<BootInfo>& info, const BootConfig& config) {
  if (!info.ok()) {
    if (!absl::IsInvalidArgument(info.status()) || info.status().message().empty()) std::abort();
    return;
  }
  if (info->format != KernelFormat::kBzImage) std::abort();
  if (info->kernel_start < layout::kHighMemory || info->kernel_end.raw() > kRamBytes) std::abort();
  if (info->entry.rip != info->kernel_start.raw() + linux_boot::kEntry64Offset) std::abort();
  const uint64_t initrd_end = info->initrd_start.raw() + info->initrd_size;
  const bool overlaps =
      info->initrd_start < info->kernel_end && info->kernel_start.raw() < initrd_end;
  if (info->initrd_size != config.initrd.size() || info->initrd_start.raw() % 4096 != 0 ||
      initrd_end > kRamBytes || overlaps) {
    std::abort();
  }
  auto params = memory().readObject<linux_boot::BootParams>(layout::kBootParams);
  if (!params.ok() || params->hdr.cmd_line_ptr != layout::kCmdline.raw() ||
      params->hdr.ramdisk_image != info->initrd_start.raw() ||
      params->e820_entries != info->e820.size() || params->hdr.type_of_loader != 0xff) {
    std::abort();
  }
  if (config.cmdline.size() > params->hdr.cmdline_size) std::abort();
  // The initrd ends at or below initrd_addr_max + 1.
  if (initrd_end > uint64_t{params->hdr.initrd_addr_max} + 1) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> image(data, data + size);
  if (image.size() < kHeaderEnd) image.resize(kHeaderEnd, 0);
  const uint16_t flag = linux_boot::kBootFlag;
  const uint32_t magic = linux_boot::kHeaderMagic;
  std::memcpy(&image[kBootFlagOffset], &flag, sizeof(flag));
  std::memcpy(&image[kMagicOffset], &magic, sizeof(magic));

  static const std::vector<uint8_t> kInitrd(5 * 4096 + 3, 0xa5);
  BootConfig config;
  config.kernel = image;
  config.initrd = kInitrd;
  config.cmdline = "console=ttyS0";
  config.vcpus = 1 + (size % 8);
  check(flotilla::vmm::prepareBoot(memory(), config), config);
  return 0;
}
