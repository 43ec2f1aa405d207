// prepareBoot (see boot.h): detects the kernel format, checks everything against guest memory
// before writing anything, then writes the kernel, the command line, the initrd and the boot
// data of the kernel's protocol, and says how to start the boot vCPU.
#include "vmm/boot/boot.h"

#include <algorithm>
#include <optional>
#include <string>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/boot/bytes.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/elf.h"
#include "vmm/boot/layout.h"
#include "vmm/boot/linux_boot_params.h"
#include "vmm/boot/mptable.h"
#include "vmm/boot/pvh.h"
#include "vmm/boot/x86_setup.h"

namespace flotilla::vmm {
namespace {

// The boot data areas in layout.h must not overlap one another or the kernel (>= 1 MiB).
static_assert(pvh::kMemmapAddress + 8 * sizeof(pvh::MemmapEntry) <= layout::kPvhModules);
static_assert(layout::kPvhModules + sizeof(pvh::ModlistEntry) <= layout::kBootParams);
static_assert(layout::kBootParams + sizeof(linux_boot::BootParams) < layout::kBootStack);
static_assert(layout::kBootStack < layout::kPml4);
static_assert(layout::kPml4 + kPageSize <= layout::kPdpt);
static_assert(layout::kPdpt + kPageSize <= layout::kPageDirectories);
static_assert(layout::kPageDirectories + x86::kPageDirectoryCount * kPageSize <= layout::kCmdline);
static_assert(layout::kCmdline + layout::kCmdlineMax <= layout::kEbda);
static_assert(layout::kEbda + mptable::tableSize(mptable::kMaxVcpus) <= kBiosRomStart);
static_assert(layout::kEbda.raw() % 16 == 0);

constexpr uint64_t kTooShortForAnyFormat = 0x206;  // the end of bzImage's "HdrS"

// The kernel, parsed and checked, and what its format means for the rest of the boot.
struct KernelPlan {
  KernelFormat format = KernelFormat::kElf;
  std::optional<ElfKernel> elf;
  std::optional<BzImage> bz_image;
  GuestAddress start;  // memory the kernel occupies before it reads the memory map
  GuestAddress end;
  uint64_t entry = 0;
  uint64_t cmdline_max = 0;  // without the NUL
  bool cmdline_max_is_kernels = false;
  uint64_t initrd_end_max = 0;  // the initrd must end at or below
};

absl::StatusOr<KernelPlan> planElf(const GuestMemory& memory, const BootConfig& config) {
  KernelPlan plan;
  ASSIGN_OR_RETURN(plan.elf, parseElfKernel(config.kernel, memory));
  const ElfKernel& elf = *plan.elf;
  plan.start = elf.start;
  plan.end = elf.end;
  plan.cmdline_max = layout::kCmdlineMax - 1;
  plan.initrd_end_max = memory.regions().front().end().raw();
  if (elf.pvh_entry && config.prefer_pvh) {
    if (!elf.loads(*elf.pvh_entry)) {
      return absl::InvalidArgumentError(fmt::format(
          "ELF kernel: the PVH entry point {} is not inside any loaded segment", *elf.pvh_entry));
    }
    plan.format = KernelFormat::kPvh;
    plan.entry = elf.pvh_entry->raw();
    return plan;
  }
  if (!elf.loads(elf.entry)) {
    const bool virtual_address = elf.entry.raw() >= 0xffff'8000'0000'0000;
    return absl::InvalidArgumentError(
        fmt::format("ELF kernel: the entry point {} is not inside any loaded segment{}{}",
                    elf.entry, virtual_address ? " (it looks like a virtual address)" : "",
                    elf.pvh_entry ? "" : "; the image has no PVH entry note either"));
  }
  plan.format = KernelFormat::kElf;
  plan.entry = elf.entry.raw();
  return plan;
}

absl::StatusOr<KernelPlan> planBzImage(const GuestMemory& memory, const BootConfig& config) {
  KernelPlan plan;
  plan.format = KernelFormat::kBzImage;
  ASSIGN_OR_RETURN(plan.bz_image, parseBzImage(config.kernel, memory));
  const BzImage& bz = *plan.bz_image;
  plan.start = bz.load_address;
  plan.end = bz.load_address + bz.footprint;
  plan.entry = bz.entry64.raw();
  plan.cmdline_max_is_kernels = bz.cmdline_max < layout::kCmdlineMax - 1;
  plan.cmdline_max = std::min<uint64_t>(bz.cmdline_max, layout::kCmdlineMax - 1);
  plan.initrd_end_max = std::min(bz.initrd_end_max, memory.regions().front().end().raw());
  return plan;
}

absl::StatusOr<KernelPlan> planKernel(const GuestMemory& memory, const BootConfig& config) {
  const std::span<const uint8_t> image = config.kernel;
  if (looksLikeElf(image)) return planElf(memory, config);
  if (looksLikeBzImage(image)) return planBzImage(memory, config);
  if (image.size() < kTooShortForAnyFormat) {
    return absl::InvalidArgumentError(fmt::format(
        "kernel image ({}) is too short to be an ELF or a bzImage", describeSize(image.size())));
  }
  return absl::InvalidArgumentError(fmt::format(
      "kernel image is neither a bzImage nor an ELF (it starts with {}): give an x86_64 "
      "bzImage (vmlinuz) or an uncompressed vmlinux",
      hexPrefix(image, 8)));
}

absl::Status checkCmdline(const std::string& cmdline, const KernelPlan& plan) {
  if (size_t nul = cmdline.find('\0'); nul != std::string::npos) {
    return absl::InvalidArgumentError(fmt::format(
        "the command line has a NUL byte at offset {}: the kernel would ignore what follows", nul));
  }
  if (cmdline.size() > plan.cmdline_max) {
    return absl::InvalidArgumentError(
        fmt::format("the command line is {} bytes; {} at most {}", cmdline.size(),
                    plan.cmdline_max_is_kernels ? "the kernel accepts" : "the loader passes",
                    plan.cmdline_max));
  }
  return absl::OkStatus();
}

// The highest page-aligned start for `size` bytes in [floor, ceiling), if they fit.
std::optional<uint64_t> highestFit(uint64_t floor, uint64_t ceiling, uint64_t size) {
  if (ceiling < floor || ceiling - floor < size) return std::nullopt;
  const uint64_t start = alignDown(ceiling - size, kPageSize);
  if (start < floor) return std::nullopt;
  return start;
}

// Where the initrd goes: page-aligned at the top of the RAM it may use, above the kernel, or
// below the kernel when the space above is too small.
absl::StatusOr<GuestAddress> placeInitrd(const GuestMemory& memory, const KernelPlan& plan,
                                         uint64_t size) {
  const uint64_t ceiling = plan.initrd_end_max;
  std::optional<uint64_t> start =
      highestFit(std::max(plan.end.raw(), layout::kHighMemory.raw()), ceiling, size);
  if (!start) {
    start = highestFit(layout::kHighMemory.raw(), std::min(plan.start.raw(), ceiling), size);
  }
  if (!start) {
    const bool kernel_limit = ceiling < memory.regions().front().end().raw();
    return absl::InvalidArgumentError(fmt::format(
        "the initrd ({}) does not fit in the VM's {} of RAM next to the kernel (at {}..{}) below "
        "{}{}: give the VM more memory or use a smaller initrd",
        describeSize(size), describeSize(memory.ramBytes()), plan.start, plan.end,
        GuestAddress(ceiling),
        kernel_limit ? " (the kernel's initrd_addr_max)" : " (the end of RAM below 4 GiB)"));
  }
  return GuestAddress(*start);
}

absl::Status writeCmdline(const GuestMemory& memory, const std::string& cmdline) {
  RETURN_IF_ERROR(memory.write(layout::kCmdline,
                               {reinterpret_cast<const uint8_t*>(cmdline.data()), cmdline.size()}));
  return memory.writeObject<uint8_t>(layout::kCmdline + cmdline.size(), 0);
}

BootEntry makeEntry(const KernelPlan& plan) {
  BootEntry entry;
  entry.rip = plan.entry;
  entry.rsp = layout::kBootStack.raw();
  entry.gdt_base = layout::kGdt;
  entry.gdt_limit = x86::kBootGdtLimit;
  entry.data_selector = x86::kDataSelector;
  entry.tss_selector = x86::kTssSelector;
  entry.idt_base = layout::kIdt;
  entry.idt_limit = 0;
  if (plan.format == KernelFormat::kPvh) {
    entry.mode = BootEntry::Mode::kProtected32;
    entry.code_selector = x86::kCode32Selector;
    entry.rbx = layout::kPvhStartInfo.raw();
  } else {
    entry.mode = BootEntry::Mode::kLong64;
    entry.code_selector = x86::kCode64Selector;
    entry.rsi = layout::kBootParams.raw();
    entry.cr3 = layout::kPml4.raw();
  }
  return entry;
}

}  // namespace

const char* kernelFormatName(KernelFormat format) {
  switch (format) {
    case KernelFormat::kBzImage:
      return "bzImage";
    case KernelFormat::kElf:
      return "ELF";
    case KernelFormat::kPvh:
      return "PVH ELF";
  }
  return "unknown";
}

absl::StatusOr<BootInfo> prepareBoot(const GuestMemory& memory, const BootConfig& config) {
  if (config.vcpus == 0 || config.vcpus > mptable::kMaxVcpus) {
    return absl::InvalidArgumentError(
        fmt::format("cannot boot with {} vCPUs: give the VM between 1 and {}", config.vcpus,
                    mptable::kMaxVcpus));
  }
  // Check everything first: a refused boot leaves guest memory as it was.
  ASSIGN_OR_RETURN(KernelPlan plan, planKernel(memory, config));
  RETURN_IF_ERROR(checkCmdline(config.cmdline, plan));
  BootInfo info;
  info.format = plan.format;
  info.kernel_start = plan.start;
  info.kernel_end = plan.end;
  info.cmdline_address = layout::kCmdline;
  info.e820 = buildE820Map(memory);
  if (!config.initrd.empty()) {
    ASSIGN_OR_RETURN(info.initrd_start, placeInitrd(memory, plan, config.initrd.size()));
    info.initrd_size = config.initrd.size();
  }
  info.entry = makeEntry(plan);
  std::optional<linux_boot::BootParams> params;
  if (plan.format != KernelFormat::kPvh) {
    linux_boot::BootParamsInput input;
    if (plan.bz_image) input.setup_header = plan.bz_image->header_bytes;
    input.load_address = plan.start;
    input.cmdline = layout::kCmdline;
    input.cmdline_size = static_cast<uint32_t>(plan.cmdline_max);
    input.initrd = info.initrd_start;
    input.initrd_size = info.initrd_size;
    input.e820 = info.e820;
    ASSIGN_OR_RETURN(params, linux_boot::makeBootParams(input));
  }

  if (plan.elf) {
    RETURN_IF_ERROR(loadElfKernel(memory, config.kernel, *plan.elf));
  } else {
    RETURN_IF_ERROR(loadBzImage(memory, *plan.bz_image));
  }
  RETURN_IF_ERROR(writeCmdline(memory, config.cmdline));
  if (!config.initrd.empty()) RETURN_IF_ERROR(memory.write(info.initrd_start, config.initrd));
  RETURN_IF_ERROR(x86::writeBootGdt(memory));
  RETURN_IF_ERROR(mptable::writeMpTable(memory, layout::kEbda, config.vcpus));
  if (params) {
    RETURN_IF_ERROR(x86::writeIdentityPageTables(memory));
    RETURN_IF_ERROR(memory.writeObject(layout::kBootParams, *params));
  } else {
    RETURN_IF_ERROR(pvh::writeStartInfo(
        memory, {layout::kCmdline, info.initrd_start, info.initrd_size, info.e820}));
  }
  return info;
}

}  // namespace flotilla::vmm
