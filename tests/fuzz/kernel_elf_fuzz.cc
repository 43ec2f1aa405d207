// libFuzzer target for the ELF kernel loader (vmm/boot/elf.h through prepareBoot): any input
// must give a boot or an InvalidArgument error, never a crash, a hang or an access outside
// guest memory; an accepted boot must respect the invariants checked below.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "vmm/boot/boot.h"
#include "vmm/boot/layout.h"

namespace {

using flotilla::vmm::BootConfig;
using flotilla::vmm::BootInfo;
using flotilla::vmm::GuestMemory;
using flotilla::vmm::KernelFormat;

constexpr uint64_t kRamBytes = uint64_t{64} << 20;

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
  if (info->format == KernelFormat::kBzImage) std::abort();
  if (info->kernel_start < flotilla::vmm::layout::kHighMemory) std::abort();
  if (info->kernel_end.raw() > kRamBytes || info->kernel_end <= info->kernel_start) std::abort();
  if (info->entry.rip < info->kernel_start.raw() || info->entry.rip >= info->kernel_end.raw()) {
    std::abort();
  }
  if (info->initrd_size != config.initrd.size()) std::abort();
  const uint64_t initrd_end = info->initrd_start.raw() + info->initrd_size;
  const bool overlaps =
      info->initrd_start < info->kernel_end && info->kernel_start.raw() < initrd_end;
  if (info->initrd_start.raw() % 4096 != 0 || initrd_end > kRamBytes || overlaps) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<uint8_t> kInitrd(3 * 4096 + 1, 0x5a);
  BootConfig config;
  config.kernel = {data, size};
  config.initrd = kInitrd;
  config.cmdline = "console=ttyS0 reboot=k panic=1";
  config.vcpus = 2;
  check(flotilla::vmm::prepareBoot(memory(), config), config);
  // The same image through its 64-bit entry when it also has a PVH note.
  config.prefer_pvh = false;
  config.initrd = {};
  check(flotilla::vmm::prepareBoot(memory(), config), config);
  return 0;
}
