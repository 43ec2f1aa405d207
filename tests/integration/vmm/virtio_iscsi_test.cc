// flotilla-vmm's virtio-blk on an iSCSI LUN served by a tgtd the test starts: the guest's blk
// workload passes on it, and keeps writing and verifying without an error while tgtd is
// stopped and started again under its I/O (the backend reconnects and retries).

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::TempDir;
using ::flotilla::testing::TgtTarget;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;

// A sparse raw disk image in `dir` (a failure ends the test).
std::string makeDisk(const TempDir& dir, const std::string& name, uint64_t bytes) {
  auto path = dir.sparseFile(name, bytes);
  EXPECT_TRUE(path.ok()) << path.status();
  return path.ok() ? *path : "";
}

TEST(VirtioIscsiTest, BlkWorkloadPassesOnALun) {
  TempDir dir;
  auto tgt = TgtTarget::start(makeDisk(dir, "lun.img", uint64_t{64} << 20));
  ASSERT_TRUE(tgt.ok()) << tgt.status();
  auto vmm = VmmProcess::start(kVmm,
                               {"--kernel", kGuest, "--memory", "256M", "--disk",
                                "iscsi=" + (*tgt)->url(), "--cmdline", "workload=blk blk.mib=8"},
                               dir, "iscsi");
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  auto exited = (*vmm)->wait(absl::Minutes(2));
  ASSERT_TRUE(exited.ok()) << exited.status() << (*vmm)->log();
  EXPECT_EQ(exited->code, 1) << (*vmm)->serial() << (*vmm)->log();
  EXPECT_THAT((*vmm)->serial(), HasSubstr("flotilla-guest: blk ok capacity=131072"));
}

TEST(VirtioIscsiTest, GuestSeesNoErrorWhenTheTargetRestartsDuringIo) {
  TempDir dir;
  auto tgt = TgtTarget::start(makeDisk(dir, "lun.img", uint64_t{32} << 20));
  ASSERT_TRUE(tgt.ok()) << tgt.status();
  auto vmm =
      VmmProcess::start(kVmm,
                        {"--kernel", kGuest, "--memory", "256M", "--disk", "iscsi=" + (*tgt)->url(),
                         "--cmdline", "workload=blk blk.mib=4 blk.loop=1"},
                        dir, "iscsi");
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  ASSERT_TRUE((*vmm)->waitForSerialCount("blk loop round=", 1, absl::Minutes(2)).ok())
      << (*vmm)->serial() << (*vmm)->log();
  ASSERT_TRUE((*tgt)->restart().ok()) << (*tgt)->logTail();
  const size_t rounds_before = [&] {
    std::string serial = (*vmm)->serial();
    size_t count = 0;
    for (size_t at = serial.find("blk loop round="); at != std::string::npos;
         at = serial.find("blk loop round=", at + 1)) {
      ++count;
    }
    return count;
  }();
  auto more = (*vmm)->waitForSerialCount("blk loop round=", rounds_before + 2, absl::Minutes(2));
  ASSERT_TRUE(more.ok()) << more.status() << (*vmm)->log();
  EXPECT_THAT(*more, Not(HasSubstr("error"))) << (*vmm)->log();
  EXPECT_THAT(*more, Not(HasSubstr("stall")));
  // The outage was real: the backend lost the session and logged in again.
  EXPECT_THAT((*vmm)->log(), HasSubstr("lost the session"));
  EXPECT_THAT((*vmm)->log(), HasSubstr("reconnected after"));
  ASSERT_TRUE((*vmm)->process().terminate(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace flotilla::vmm
