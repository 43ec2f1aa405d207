// End-to-end tests of prepareBoot: format detection, what each protocol finds in guest memory
// (zero page, PVH start info, command line, initrd), the entry state, and the errors for bad
// configurations. Images are synthetic (test_images.h); no real kernel is needed.
#include "vmm/boot/boot.h"

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_images.h"
#include "vmm/boot/e820.h"
#include "vmm/boot/linux_boot_params.h"
#include "vmm/boot/pvh.h"
#include "vmm/boot/x86_setup.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;
using testing::kMiB;

class BootTest : public ::testing::Test {
 protected:
  GuestMemory memory_ = testing::testMemory(256 * kMiB);

  absl::StatusOr<BootInfo> boot(const std::vector<uint8_t>& kernel, BootConfig config = {}) {
    config.kernel = kernel;
    return prepareBoot(memory_, config);
  }

  std::string errorOf(const std::vector<uint8_t>& kernel, BootConfig config = {}) {
    absl::StatusOr<BootInfo> info = boot(kernel, std::move(config));
    EXPECT_FALSE(info.ok());
    return std::string(info.status().message());
  }

  std::string readCmdline() {
    std::string text;
    for (GuestAddress at = layout::kCmdline;; at = at + 1) {
      uint8_t c = *memory_.readObject<uint8_t>(at);
      if (c == 0) return text;
      text += static_cast<char>(c);
    }
  }

  std::vector<uint8_t> readBytes(GuestAddress at, uint64_t size) {
    std::vector<uint8_t> bytes(size);
    EXPECT_TRUE(memory_.read(at, bytes).ok());
    return bytes;
  }

  linux_boot::BootParams readBootParams() {
    return *memory_.readObject<linux_boot::BootParams>(layout::kBootParams);
  }
};

std::vector<E820Entry> zeroPageE820(const linux_boot::BootParams& params) {
  std::vector<E820Entry> map;
  for (size_t i = 0; i < params.e820_entries; ++i) {
    map.push_back(
        {params.e820_table[i].addr, params.e820_table[i].size, params.e820_table[i].type});
  }
  return map;
}

TEST_F(BootTest, DetectsTheFormat) {
  EXPECT_EQ(boot(testing::simpleElf(false))->format, KernelFormat::kElf);
  EXPECT_EQ(boot(testing::simpleElf(true))->format, KernelFormat::kPvh);
  BootConfig no_pvh;
  no_pvh.prefer_pvh = false;
  EXPECT_EQ(boot(testing::simpleElf(true), no_pvh)->format, KernelFormat::kElf);
  EXPECT_EQ(boot(testing::buildBzImage({}))->format, KernelFormat::kBzImage);
  EXPECT_STREQ(kernelFormatName(KernelFormat::kBzImage), "bzImage");
  EXPECT_STREQ(kernelFormatName(KernelFormat::kElf), "ELF");
  EXPECT_STREQ(kernelFormatName(KernelFormat::kPvh), "PVH ELF");
}

TEST_F(BootTest, UnknownOrShortImages) {
  EXPECT_EQ(errorOf(std::vector<uint8_t>(12, 0x11)),
            "kernel image (12 bytes) is too short to be an ELF or a bzImage");
  EXPECT_EQ(errorOf({}), "kernel image (0 bytes) is too short to be an ELF or a bzImage");
  std::vector<uint8_t> garbage = testing::pattern(4096, 0);
  EXPECT_THAT(errorOf(garbage),
              HasSubstr("kernel image is neither a bzImage nor an ELF (it starts with 00 07 0e 15 "
                        "1c 23 2a 31 ...)"));
}

TEST_F(BootTest, PvhBootWritesTheStartInfo) {
  BootConfig config;
  config.cmdline = "console=ttyS0 root=/dev/vda";
  const std::vector<uint8_t> initrd = testing::pattern(3 * kMiB + 5, 11);
  config.initrd = initrd;
  config.vcpus = 2;
  auto info = boot(testing::simpleElf(true), config);
  ASSERT_TRUE(info.ok()) << info.status();

  EXPECT_EQ(info->entry.mode, BootEntry::Mode::kProtected32);
  EXPECT_EQ(info->entry.rip, 16 * kMiB + 0x100);
  EXPECT_EQ(info->entry.rbx, layout::kPvhStartInfo.raw());
  EXPECT_EQ(info->entry.cr3, 0u);
  EXPECT_EQ(info->entry.code_selector, 0x08);
  EXPECT_EQ(info->entry.data_selector, 0x18);
  EXPECT_EQ(info->entry.tss_selector, 0x20);
  EXPECT_EQ(info->entry.gdt_base, layout::kGdt);
  EXPECT_EQ(info->entry.gdt_limit, 47);

  auto start = memory_.readObject<pvh::StartInfo>(layout::kPvhStartInfo);
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(start->magic, 0x336ec578u);
  EXPECT_EQ(start->version, 1u);
  EXPECT_EQ(start->flags, 0u);
  EXPECT_EQ(start->cmdline_paddr, layout::kCmdline.raw());
  EXPECT_EQ(start->rsdp_paddr, 0u);
  ASSERT_EQ(start->nr_modules, 1u);
  ASSERT_EQ(start->memmap_entries, info->e820.size());
  for (size_t i = 0; i < info->e820.size(); ++i) {
    auto entry = memory_.readObject<pvh::MemmapEntry>(GuestAddress(start->memmap_paddr) +
                                                      i * sizeof(pvh::MemmapEntry));
    ASSERT_TRUE(entry.ok());
    EXPECT_EQ((E820Entry{entry->addr, entry->size, entry->type}), info->e820[i]) << i;
    EXPECT_EQ(entry->reserved, 0u);
  }
  auto module = memory_.readObject<pvh::ModlistEntry>(GuestAddress(start->modlist_paddr));
  ASSERT_TRUE(module.ok());
  EXPECT_EQ(module->paddr, info->initrd_start.raw());
  EXPECT_EQ(module->size, initrd.size());
  EXPECT_EQ(module->cmdline_paddr, 0u);
  EXPECT_EQ(readBytes(info->initrd_start, initrd.size()), initrd);
  EXPECT_EQ(readCmdline(), config.cmdline);
}

TEST_F(BootTest, PvhWithoutInitrdHasNoModules) {
  auto info = boot(testing::simpleElf(true));
  ASSERT_TRUE(info.ok()) << info.status();
  auto start = memory_.readObject<pvh::StartInfo>(layout::kPvhStartInfo);
  EXPECT_EQ(start->nr_modules, 0u);
  EXPECT_EQ(start->modlist_paddr, 0u);
  EXPECT_EQ(info->initrd_start, GuestAddress(0));
  EXPECT_EQ(readCmdline(), "");
}

TEST_F(BootTest, VmlinuxBootsThroughThe64BitEntryWithAZeroPage) {
  BootConfig config;
  config.cmdline = "quiet";
  config.prefer_pvh = false;  // the image has a PVH note, but the caller wants the 64-bit entry
  const std::vector<uint8_t> initrd = testing::pattern(0x2345, 1);
  config.initrd = initrd;
  auto info = boot(testing::simpleElf(true, 0x3000, 0x10000), config);
  ASSERT_TRUE(info.ok()) << info.status();

  EXPECT_EQ(info->format, KernelFormat::kElf);
  EXPECT_EQ(info->entry.mode, BootEntry::Mode::kLong64);
  EXPECT_EQ(info->entry.rip, 16 * kMiB);
  EXPECT_EQ(info->entry.rsi, layout::kBootParams.raw());
  EXPECT_EQ(info->entry.cr3, layout::kPml4.raw());
  EXPECT_EQ(info->entry.rsp, layout::kBootStack.raw());
  EXPECT_EQ(info->entry.code_selector, 0x10);
  EXPECT_EQ(info->entry.data_selector, 0x18);
  EXPECT_EQ(info->kernel_start, GuestAddress(16 * kMiB));
  EXPECT_EQ(info->kernel_end, GuestAddress(16 * kMiB + 0x10000));

  const linux_boot::BootParams params = readBootParams();
  EXPECT_EQ(params.hdr.boot_flag, 0xaa55);
  EXPECT_EQ(params.hdr.header, 0x53726448u);
  EXPECT_EQ(params.hdr.version, linux_boot::kLoaderProtocolVersion);
  EXPECT_EQ(params.hdr.kernel_alignment, 2 * kMiB);
  EXPECT_EQ(params.hdr.type_of_loader, 0xff);
  EXPECT_EQ(params.hdr.vid_mode, 0xffff);
  EXPECT_EQ(params.hdr.loadflags & linux_boot::kLoadedHigh, linux_boot::kLoadedHigh);
  EXPECT_EQ(params.hdr.cmd_line_ptr, layout::kCmdline.raw());
  EXPECT_EQ(params.hdr.cmdline_size, layout::kCmdlineMax - 1);
  EXPECT_EQ(params.hdr.ramdisk_image, info->initrd_start.raw());
  EXPECT_EQ(params.hdr.ramdisk_size, initrd.size());
  EXPECT_EQ(params.ext_ramdisk_image, 0u);
  EXPECT_EQ(params.ext_cmd_line_ptr, 0u);
  EXPECT_EQ(zeroPageE820(params), info->e820);
  EXPECT_EQ(info->e820, buildE820Map(memory_));
  EXPECT_EQ(readCmdline(), "quiet");
  EXPECT_EQ(readBytes(GuestAddress(16 * kMiB), 0x3000), testing::pattern(0x3000, 3));
}

TEST_F(BootTest, BzImageBoot) {
  testing::BzImageSpec spec;
  spec.payload = testing::pattern(0x5000, 2);
  const std::vector<uint8_t> image = testing::buildBzImage(spec);
  BootConfig config;
  config.cmdline = "console=ttyS0";
  const std::vector<uint8_t> initrd = testing::pattern(5 * kMiB + 17, 4);
  config.initrd = initrd;
  auto info = boot(image, config);
  ASSERT_TRUE(info.ok()) << info.status();

  EXPECT_EQ(info->format, KernelFormat::kBzImage);
  EXPECT_EQ(info->entry.mode, BootEntry::Mode::kLong64);
  EXPECT_EQ(info->entry.rip, 16 * kMiB + 0x200);
  EXPECT_EQ(info->entry.rsi, layout::kBootParams.raw());
  EXPECT_EQ(info->kernel_start, GuestAddress(16 * kMiB));
  EXPECT_EQ(info->kernel_end, GuestAddress(24 * kMiB)) << "init_size is 8 MiB";
  EXPECT_EQ(readBytes(GuestAddress(16 * kMiB), spec.payload.size()), spec.payload);

  // The initrd: page aligned, as high as RAM allows, clear of the kernel.
  EXPECT_EQ(info->initrd_start.raw() % kPageSize, 0u);
  EXPECT_LE(info->initrd_start.raw() + initrd.size(), 256 * kMiB);
  EXPECT_GT(info->initrd_start.raw() + initrd.size() + kPageSize, 256 * kMiB);
  EXPECT_GE(info->initrd_start, info->kernel_end);
  EXPECT_EQ(readBytes(info->initrd_start, initrd.size()), initrd);

  const linux_boot::BootParams params = readBootParams();
  // The header is the image's own, but for the fields a loader writes.
  linux_boot::SetupHeader expected;
  std::memcpy(&expected, image.data() + linux_boot::kSetupHeaderOffset, sizeof(expected));
  expected.type_of_loader = 0xff;
  expected.vid_mode = 0xffff;
  expected.code32_start = 16 * kMiB;
  expected.cmd_line_ptr = static_cast<uint32_t>(layout::kCmdline.raw());
  expected.ramdisk_image = static_cast<uint32_t>(info->initrd_start.raw());
  expected.ramdisk_size = static_cast<uint32_t>(initrd.size());
  EXPECT_EQ(std::memcmp(&params.hdr, &expected, sizeof(expected)), 0);
  EXPECT_EQ(params.hdr.cmdline_size, 2047u) << "the kernel's own limit is kept";
  EXPECT_EQ(zeroPageE820(params), info->e820);
  EXPECT_EQ(readCmdline(), "console=ttyS0");
}

TEST_F(BootTest, InitrdStaysBelowTheKernelsLimit) {
  testing::BzImageSpec spec;
  spec.initrd_addr_max = 64 * kMiB - 1;
  BootConfig config;
  const std::vector<uint8_t> initrd = testing::pattern(kMiB, 4);
  config.initrd = initrd;
  auto info = boot(testing::buildBzImage(spec), config);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->initrd_start, GuestAddress(63 * kMiB));
}

TEST_F(BootTest, InitrdGoesBelowTheKernelWhenItDoesNotFitAbove) {
  memory_ = testing::testMemory(64 * kMiB);
  BootConfig config;
  const std::vector<uint8_t> initrd = testing::pattern(10 * kMiB, 4);
  config.initrd = initrd;
  // The kernel takes [16 MiB, 56 MiB): 8 MiB are left above it.
  auto info = boot(testing::simpleElf(false, 0x1000, 40 * kMiB), config);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->initrd_start, GuestAddress(6 * kMiB));
}

TEST_F(BootTest, InitrdTooBig) {
  BootConfig config;
  const std::vector<uint8_t> initrd(250 * kMiB, 1);
  config.initrd = initrd;
  EXPECT_THAT(errorOf(testing::buildBzImage({}), config),
              HasSubstr("the initrd (250 MiB) does not fit in the VM's 256 MiB of RAM next to the "
                        "kernel (at 0x1000000..0x1800000) below 0x10000000 (the end of RAM below "
                        "4 GiB): give the VM more memory or use a smaller initrd"));
  testing::BzImageSpec spec;
  spec.initrd_addr_max = 32 * kMiB - 1;
  const std::vector<uint8_t> medium(20 * kMiB, 1);
  config.initrd = medium;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec), config),
              HasSubstr("below 0x2000000 (the kernel's initrd_addr_max)"));
}

TEST_F(BootTest, CommandLineLimits) {
  BootConfig config;
  config.cmdline = std::string(3000, 'x');
  EXPECT_EQ(errorOf(testing::buildBzImage({}), config),
            "the command line is 3000 bytes; the kernel accepts at most 2047");
  config.cmdline = std::string(2047, 'x');
  EXPECT_TRUE(boot(testing::buildBzImage({}), config).ok());
  EXPECT_EQ(readCmdline(), config.cmdline);

  config.cmdline = std::string(70000, 'x');
  EXPECT_EQ(errorOf(testing::simpleElf(true), config),
            "the command line is 70000 bytes; the loader passes at most 65535");
  config.cmdline = std::string("a\0b", 3);
  EXPECT_THAT(errorOf(testing::simpleElf(true), config), HasSubstr("NUL byte at offset 1"));
}

TEST_F(BootTest, VcpuCounts) {
  BootConfig config;
  config.vcpus = 0;
  EXPECT_THAT(errorOf(testing::simpleElf(true), config), HasSubstr("cannot boot with 0 vCPUs"));
  config.vcpus = 255;
  EXPECT_THAT(errorOf(testing::simpleElf(true), config), HasSubstr("between 1 and 254"));
  config.vcpus = 254;
  EXPECT_TRUE(boot(testing::simpleElf(true), config).ok());
}

TEST_F(BootTest, EntryPointOutsideTheKernel) {
  testing::ElfSpec spec;
  spec.segments.push_back({16 * kMiB, testing::pattern(0x1000, 1), 0});
  spec.entry = 0xffffffff81000000;
  EXPECT_THAT(errorOf(testing::buildElf(spec)),
              HasSubstr("the entry point 0xffffffff81000000 is not inside any loaded segment (it "
                        "looks like a virtual address)"));
  spec.entry = 16 * kMiB;
  spec.pvh_entry = 32 * kMiB;
  EXPECT_THAT(errorOf(testing::buildElf(spec)),
              HasSubstr("the PVH entry point 0x2000000 is not inside any loaded segment"));
}

TEST_F(BootTest, ARefusedBootLeavesMemoryAlone) {
  BootConfig config;
  config.cmdline = std::string(3000, 'x');
  EXPECT_FALSE(boot(testing::buildBzImage({}), config).ok());
  EXPECT_EQ(readBytes(GuestAddress(16 * kMiB), 16), std::vector<uint8_t>(16, 0));
  EXPECT_EQ(readBytes(layout::kBootParams, 16), std::vector<uint8_t>(16, 0));
  EXPECT_EQ(readBytes(layout::kEbda, 16), std::vector<uint8_t>(16, 0));
}

}  // namespace
}  // namespace flotilla::vmm
