// flotilla-vmm's virtio-blk on an iSCSI LUN served by a tgtd the test starts: the guest's blk
// workload passes on it, and keeps writing and verifying without an error while tgtd is
// stopped and started again under its I/O (the backend reconnects and retries); and fencing by
// generation: a VM restarted as generation + 1 on another VMM makes the first VMM's guest I/O
// fail, and a VMM of the old generation is refused at start.

#include <string>
#include <vector>

#include "fmt/format.h"

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

TEST(VirtioIscsiTest, ANewerGenerationOfTheVmFencesTheOlderVmmsGuest) {
  TempDir dir;
  auto tgt = TgtTarget::start(makeDisk(dir, "lun.img", uint64_t{32} << 20));
  ASSERT_TRUE(tgt.ok()) << tgt.status();
  const std::vector<std::string> workload = {
      "--kernel", kGuest, "--memory", "256M", "--cmdline", "workload=blk blk.mib=4 blk.loop=1"};
  auto withDisk = [&](uint64_t generation) {
    std::vector<std::string> args = workload;
    args.push_back("--disk");
    args.push_back(fmt::format("iscsi={},generation={}", (*tgt)->url(), generation));
    return args;
  };
  // Generation 1 runs and writes on its host.
  auto old_vmm = VmmProcess::start(kVmm, withDisk(1), dir, "gen1");
  ASSERT_TRUE(old_vmm.ok()) << old_vmm.status();
  ASSERT_TRUE((*old_vmm)->waitForSerialCount("blk loop round=", 1, absl::Minutes(2)).ok())
      << (*old_vmm)->serial() << (*old_vmm)->log();

  // Its host is cut off; the VM is restarted elsewhere as generation 2 while it still runs.
  auto new_vmm = VmmProcess::start(kVmm, withDisk(2), dir, "gen2");
  ASSERT_TRUE(new_vmm.ok()) << new_vmm.status();

  // The first VMM's guest gets an I/O error on its next request (a read or a write, where
  // its loop is) and stops: its blk workload fails on any error.
  auto old_exit = (*old_vmm)->wait(absl::Minutes(2));
  ASSERT_TRUE(old_exit.ok()) << old_exit.status() << (*old_vmm)->log();
  EXPECT_NE(old_exit->code, 1) << (*old_vmm)->serial();
  EXPECT_THAT((*old_vmm)->serial(), HasSubstr("flotilla-guest: error blk"));
  EXPECT_THAT((*old_vmm)->log(),
              HasSubstr("fenced: LUN " + (*tgt)->url() + " was taken over by a newer generation"));

  // The new one keeps writing and verifying.
  auto rounds = (*new_vmm)->waitForSerialCount("blk loop round=", 1, absl::Minutes(2));
  ASSERT_TRUE(rounds.ok()) << rounds.status() << (*new_vmm)->log();
  EXPECT_THAT(*rounds, Not(HasSubstr("error")));

  // A VMM of the old generation started again (its agent restarted it) does not start.
  auto stale_vmm = VmmProcess::start(kVmm, withDisk(1), dir, "gen1-again");
  ASSERT_TRUE(stale_vmm.ok()) << stale_vmm.status();
  auto stale_exit = (*stale_vmm)->wait(absl::Minutes(1));
  ASSERT_TRUE(stale_exit.ok()) << stale_exit.status() << (*stale_vmm)->log();
  EXPECT_NE(stale_exit->code, 0);
  EXPECT_THAT((*stale_vmm)->log(),
              HasSubstr("this VM was restarted elsewhere as generation 2; this copy must not run"));
  EXPECT_THAT((*stale_vmm)->serial(), Not(HasSubstr("blk loop round=")));

  EXPECT_THAT((*new_vmm)->serial(), Not(HasSubstr("error")));
  ASSERT_TRUE((*new_vmm)->process().terminate(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace flotilla::vmm
