// Debian's stock kernel (the fixture deploy/fetch-linux.sh fetches) booted by flotilla-vmm as
// an uncompressed vmlinux through its PVH entry: it prints its banner, the exact command line
// the VMM passed, an e820 map matching the configured memory, and finds the MP table. On a
// PVM host the kernel cannot get much further (it stops on an instruction KVM's emulator
// cannot handle, see docs/vmm.md); the test kills it once it has seen what it checks.
#include <unistd.h>

#include <random>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::TempDir;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kVmlinux[] = FLOTILLA_LINUX_FIXTURES "/vmlinux";
constexpr char kBzImage[] = FLOTILLA_LINUX_FIXTURES "/bzImage";

TEST(LinuxBootTest, VmlinuxBootsThroughPvhWithTheGivenCommandLineAndMemoryMap) {
  ASSERT_EQ(::access(kVmlinux, R_OK), 0)
      << kVmlinux << " is missing: run deploy/fetch-linux.sh (deploy/test.sh does)";
  TempDir dir;
  // A token the kernel cannot have made up, to check the command line arrived byte for byte.
  const std::string token = fmt::format("flotilla.check={:08x}", std::random_device{}());
  const std::string cmdline =
      "console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 pci=off acpi=off nomodules " + token;
  auto vmm = VmmProcess::start(
      kVmm, {"--kernel", kVmlinux, "--memory", "384M", "--vcpus", "2", "--cmdline", cmdline}, dir,
      "linux");
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  // Clearing the kernel's BSS alone takes tens of seconds of emulated CPL0 under PVM.
  auto serial = (*vmm)->waitForSerial("Intel MultiProcessor Specification", absl::Minutes(4));
  ASSERT_TRUE(serial.ok()) << serial.status();
  EXPECT_THAT(*serial, HasSubstr("Linux version 6."));
  // The serial console ends lines with CR LF.
  EXPECT_THAT(*serial, HasSubstr("Command line: " + cmdline + "\r\n"));
  // 384 MiB: RAM below 640 KiB up to the EBDA, then from 1 MiB to the end.
  EXPECT_THAT(*serial, HasSubstr("BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable"));
  EXPECT_THAT(*serial, HasSubstr("BIOS-e820: [mem 0x0000000000100000-0x0000000017ffffff] usable"));
  EXPECT_THAT(*serial, HasSubstr("Hypervisor detected: KVM"));
  EXPECT_THAT(*serial, HasSubstr("found SMP MP-table"));
  ASSERT_TRUE((*vmm)->process().terminate(absl::Seconds(10)).ok());
}

// The compressed bzImage through the Linux boot protocol's 64-bit entry: its decompressor
// finds the command line through boot_params and says so. (Decompressing then takes far too
// long under PVM, where the decompressor's CPL0 code is emulated: see docs/vmm.md.)
TEST(LinuxBootTest, BzImageEntersItsDecompressorWithTheCommandLine) {
  ASSERT_EQ(::access(kBzImage, R_OK), 0)
      << kBzImage << " is missing: run deploy/fetch-linux.sh (deploy/test.sh does)";
  TempDir dir;
  auto vmm = VmmProcess::start(kVmm,
                               {"--kernel", kBzImage, "--memory", "256M", "--cmdline",
                                "console=ttyS0 earlyprintk=ttyS0 nokaslr"},
                               dir, "bzimage");
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  auto serial = (*vmm)->waitForSerial("KASLR disabled: 'nokaslr' on cmdline.", absl::Minutes(3));
  ASSERT_TRUE(serial.ok()) << serial.status();
  EXPECT_THAT((*vmm)->log(), HasSubstr("bzImage kernel"));
  ASSERT_TRUE((*vmm)->process().terminate(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace flotilla::vmm
