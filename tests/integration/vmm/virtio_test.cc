// flotilla-vmm's virtio devices with the test guest's drivers on /dev/kvm: the blk workload on
// a raw file (polling and interrupt-driven, with and without indirect descriptors and
// EVENT_IDX), a read-only disk, rng and balloon alongside, disk I/O that keeps going across a
// snapshot and a restore in a new process, the control API for disks and the balloon, and bad
// device options.
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

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
using ::testing::Not;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;

int guestExit(int value) {
  return (value << 1) | 1;
}

// A sparse raw disk image in `dir` (a failure ends the test).
std::string makeDisk(const TempDir& dir, const std::string& name, uint64_t bytes) {
  auto path = dir.sparseFile(name, bytes);
  EXPECT_TRUE(path.ok()) << path.status();
  return path.ok() ? *path : "";
}

std::unique_ptr<VmmProcess> startVmm(const TempDir& dir, const std::string& name,
                                     std::vector<std::string> args) {
  auto vmm = VmmProcess::start(kVmm, std::move(args), dir, name);
  EXPECT_TRUE(vmm.ok()) << vmm.status();
  return vmm.ok() ? std::move(*vmm) : nullptr;
}

// Runs the guest to its end; returns its serial output after checking its exit status.
std::string runGuest(const TempDir& dir, std::vector<std::string> args, int expected_exit) {
  std::vector<std::string> all = {"--kernel", kGuest, "--memory", "256M"};
  all.insert(all.end(), args.begin(), args.end());
  auto vmm = startVmm(dir, "guest", all);
  if (vmm == nullptr) return "";
  auto exited = vmm->wait(absl::Minutes(2));
  EXPECT_TRUE(exited.ok()) << exited.status() << "\n" << vmm->serial() << vmm->log();
  if (exited.ok()) {
    EXPECT_EQ(exited->code, expected_exit) << vmm->serial() << vmm->log();
  }
  return vmm->serial();
}

class VirtioBlockWorkloadTest : public ::testing::TestWithParam<const char*> {};

TEST_P(VirtioBlockWorkloadTest, WritesVerifiesFlushesDiscardsAndZeroes) {
  TempDir dir;
  const std::string disk = makeDisk(dir, "disk.img", uint64_t{64} << 20);
  const std::string serial = runGuest(dir,
                                      {"--disk", "path=" + disk, "--rng", "--balloon", "--cmdline",
                                       fmt::format("workload=blk blk.mib=8 {}", GetParam())},
                                      guestExit(0));
  EXPECT_THAT(serial, HasSubstr("type=blk"));
  EXPECT_THAT(serial, HasSubstr("type=rng"));
  EXPECT_THAT(serial, HasSubstr("type=balloon"));
  EXPECT_THAT(serial, HasSubstr("flotilla-guest: blk ok capacity=131072"));
  EXPECT_THAT(serial, HasSubstr("write=ok flush=ok discard=ok write_zeroes=ok"));
  EXPECT_THAT(serial, Not(HasSubstr("error")));
  // The pattern is on the file: a second boot only verifies it.
  const std::string again = runGuest(
      dir, {"--disk", "path=" + disk, "--cmdline", "workload=blk blk.mib=8 blk.verify-only=1"},
      guestExit(0));
  EXPECT_THAT(again, HasSubstr("blk ok"));
}

INSTANTIATE_TEST_SUITE_P(Drivers, VirtioBlockWorkloadTest,
                         ::testing::Values("", "virtio.indirect=1 virtio.event_idx=1",
                                           "virtio.irq=1",
                                           "virtio.irq=1 virtio.indirect=1 virtio.event_idx=1"));

TEST(VirtioBlockTest, ReadOnlyDiskFailsWritesWithIoErr) {
  TempDir dir;
  const std::string disk = makeDisk(dir, "disk.img", uint64_t{16} << 20);
  const std::string serial =
      runGuest(dir, {"--disk", "path=" + disk + ",readonly", "--cmdline", "workload=blk blk.mib=4"},
               guestExit(0));
  EXPECT_THAT(serial, HasSubstr("ro=1"));
  EXPECT_THAT(serial, HasSubstr("write=ioerr"));
}

// The guest writes and verifies rounds on the disk while the VM is snapshotted; the restored
// VM in a new process continues with the same disk and queue and verifies every round.
TEST(VirtioBlockTest, DiskIoContinuesAcrossSnapshotAndRestore) {
  TempDir dir;
  const std::string disk = makeDisk(dir, "disk.img", uint64_t{32} << 20);
  auto source = startVmm(dir, "source",
                         {"--kernel", kGuest, "--memory", "256M", "--disk", "path=" + disk,
                          "--cmdline", "workload=blk blk.mib=4 blk.loop=1 virtio.event_idx=1"});
  ASSERT_NE(source, nullptr);
  ASSERT_TRUE(source->waitForSerialCount("blk loop round=", 2, absl::Minutes(2)).ok())
      << source->serial() << source->log();
  auto api = source->api();
  ASSERT_TRUE(api.ok()) << api.status();
  flotilla::v1::VmmInfo info;
  {
    grpc::ClientContext context;
    ASSERT_TRUE((*api)->GetInfo(&context, {}, &info).ok());
  }
  ASSERT_EQ(info.disks_size(), 1);
  EXPECT_EQ(info.disks(0).size_bytes(), uint64_t{32} << 20);
  EXPECT_THAT(info.disks(0).backend(), HasSubstr(disk));

  // Paused first, so that the source writes nothing after the snapshot (Snapshot resumes a
  // VM that was running): the restored VM must go on from the snapshot, and the disk must
  // hold what the snapshot's guest had written (the pause drained and flushed it).
  {
    flotilla::v1::PauseResponse paused;
    grpc::ClientContext pause_context;
    ASSERT_TRUE((*api)->Pause(&pause_context, {}, &paused).ok());
  }
  const std::string snapshot = dir.file("snapshot");
  flotilla::v1::SnapshotRequest request;
  request.set_directory(snapshot);
  flotilla::v1::SnapshotResponse response;
  grpc::ClientContext context;
  grpc::Status status = (*api)->Snapshot(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(source->process().terminate(absl::ZeroDuration()).ok());
  const std::string before = source->serial();

  auto restored = startVmm(dir, "restored", {"--restore", snapshot});
  ASSERT_NE(restored, nullptr);
  auto more = restored->waitForSerialCount("blk loop round=", 2, absl::Minutes(2));
  ASSERT_TRUE(more.ok()) << more.status() << restored->log();
  EXPECT_THAT(*more, Not(HasSubstr("error"))) << restored->log();
  EXPECT_THAT(*more, Not(HasSubstr("ready"))) << "the guest continued, it did not boot again";
  ASSERT_TRUE(restored->process().terminate(absl::Seconds(10)).ok());
}

TEST(VirtioApiTest, ResizesDisksAndSetsTheBalloon) {
  TempDir dir;
  const std::string disk = makeDisk(dir, "disk.img", uint64_t{16} << 20);
  auto vmm = startVmm(dir, "api",
                      {"--kernel", kGuest, "--memory", "256M", "--disk", "path=" + disk,
                       "--balloon", "--cmdline", "workload=idle"});
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->waitForSerial("ready", absl::Minutes(1)).ok());
  auto api = vmm->api();
  ASSERT_TRUE(api.ok()) << api.status();

  flotilla::v1::ResizeDiskRequest resize;
  resize.set_disk("disk0");
  resize.set_size_bytes(uint64_t{32} << 20);
  flotilla::v1::ResizeDiskResponse resized;
  {
    grpc::ClientContext context;
    grpc::Status status = (*api)->ResizeDisk(&context, resize, &resized);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(resized.size_bytes(), uint64_t{32} << 20);
  struct stat st {};
  ASSERT_EQ(::stat(disk.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), uint64_t{32} << 20);
  {
    resize.set_disk("disk7");
    grpc::ClientContext context;
    grpc::Status status = (*api)->ResizeDisk(&context, resize, &resized);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(status.error_message(), HasSubstr("disk7"));
  }

  flotilla::v1::SetBalloonRequest balloon;
  balloon.set_target_bytes(uint64_t{64} << 20);
  flotilla::v1::BalloonInfo info;
  {
    grpc::ClientContext context;
    grpc::Status status = (*api)->SetBalloon(&context, balloon, &info);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(info.target_bytes(), uint64_t{64} << 20);
  {
    balloon.set_target_bytes(uint64_t{1} << 40);
    grpc::ClientContext context;
    grpc::Status status = (*api)->SetBalloon(&context, balloon, &info);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  ASSERT_TRUE(vmm->process().terminate(absl::Seconds(10)).ok());
}

struct BadOption {
  const char* name;
  std::vector<std::string> args;
  int exit_code;
  const char* message;
};

void PrintTo(const BadOption& option, std::ostream* out) {
  *out << option.name;
}

class VirtioBadInputTest : public ::testing::TestWithParam<BadOption> {};

TEST_P(VirtioBadInputTest, FailsAtStartWithAClearError) {
  TempDir dir;
  std::vector<std::string> args = {"--kernel", kGuest, "--memory", "64M"};
  for (const std::string& arg : GetParam().args) {
    args.push_back(fmt::format(fmt::runtime(arg), fmt::arg("dir", dir.path())));
  }
  auto vmm = startVmm(dir, "bad", args);
  ASSERT_NE(vmm, nullptr);
  auto exited = vmm->wait(absl::Seconds(60));
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(exited->code, GetParam().exit_code) << vmm->log();
  EXPECT_THAT(vmm->log(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Options, VirtioBadInputTest,
    ::testing::Values(
        BadOption{"MissingDiskFile", {"--disk", "path={dir}/missing.img"}, 2, "does not exist"},
        BadOption{"MalformedDisk", {"--disk", "file={dir}/x.img"}, 2, "unknown setting 'file'"},
        BadOption{"TwoBackends", {"--disk", "path=/x,iscsi=iscsi://h/iqn/1"}, 2, "exactly one"},
        BadOption{"MalformedNet", {"--net", "tap=t0,mac=01:02"}, 2, "invalid MAC address"},
        BadOption{
            "MulticastMac", {"--net", "tap=t0,mac=01:00:5e:00:00:01"}, 2, "not a unicast MAC"},
        BadOption{"ClosedTapFd", {"--net", "fd=77"}, 2, "descriptor 77 is not open"},
        BadOption{"UnreachableIscsi",
                  {"--disk", "iscsi=iscsi://127.0.0.1:1/iqn.2026-01.org.x:t/1"},
                  6,
                  "cannot reach iSCSI portal"}),
    [](const ::testing::TestParamInfo<BadOption>& param) { return std::string(param.param.name); });

}  // namespace
}  // namespace flotilla::vmm
