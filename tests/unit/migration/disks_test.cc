// Cold migration with disks (docs/migration.md, "Disks"), sender and receiver against the fake
// VMs with real image files in a temporary directory: the target's files end equal to the
// source's, with holes and zero blocks left holes; a target file that holds data is refused and
// left alone; a failure after the disks moved removes what the target wrote; disks move only
// with a cold migration and only to a target that has a place for each.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "migration/receiver.h"
#include "migration/sender.h"
#include "tests/support/test_env.h"
#include "tests/unit/migration/fake_vms.h"
#include "tests/unit/migration/socket_pair.h"

namespace flotilla::migration {
namespace {

using testing::FakeSourceVm;
using testing::FakeTargetVm;
using testing::firstDifference;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;

// Writes `bytes` at `offset` of `path` (created if missing).
void writeAt(const std::string& path, uint64_t offset, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

uint64_t allocatedBytes(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return 0;
  return static_cast<uint64_t>(info.st_blocks) * 512;
}

std::string contents(const std::string& path) {
  auto text = readFileToString(path, 64 * kMiB);
  return text.ok() ? *text : "<" + std::string(text.status().message()) + ">";
}

class MigrationDisksTest : public ::testing::Test {
 protected:
  MigrationDisksTest() {
    // Disk 0: 16 MiB, sparse, with data at its start, an allocated block of zeroes, data in
    // the middle ending inside a block, and data in its last block.
    source0_ = dir_.file("source0.img");
    auto sparse = dir_.sparseFile("source0.img", 16 * kMiB);
    EXPECT_TRUE(sparse.ok());
    writeAt(source0_, 0, std::string(64 * 1024, 'a'));
    writeAt(source0_, 1 * kMiB, std::string(4096, '\0'));
    writeAt(source0_, 8 * kMiB + 100, std::string(5000, 'b'));
    writeAt(source0_, 16 * kMiB - 10, std::string(10, 'c'));
    // Disk 1: an odd size, one byte of data.
    source1_ = dir_.file("source1.img");
    writeAt(source1_, kMiB + 99, "z");
    source_.disks = {{.index = 0, .path = source0_}, {.index = 1, .path = source1_}};
    target0_ = dir_.file("target0.img");                    // missing: created
    auto empty = dir_.sparseFile("target1.img", 3 * kMiB);  // empty: taken, resized
    EXPECT_TRUE(empty.ok());
    target1_ = *empty;
    target_.disk_paths = {target0_, target1_};
  }

  struct Outcome {
    absl::Status sent;
    absl::Status received;
    MigrationStats stats;
    ReceiverStats target;
    bool source_running = true;
  };

  Outcome migrate(bool cold = true) {
    auto [source_side, target_side] = testing::connectionPair();
    MigrationReceiver receiver(target_, {.token = "one-time", .stop_point = {}});
    SendOptions send;
    send.token = "one-time";
    send.cold = cold;
    send.with_disks = true;
    send.stop_point = {};
    MigrationSender sender(source_, send);
    Outcome outcome;
    std::thread target([&] { outcome.received = receiver.run(*target_side); });
    outcome.sent = sender.run(*source_side);
    source_side.reset();
    target.join();
    outcome.stats = sender.stats();
    outcome.target = receiver.stats();
    outcome.source_running = sender.sourceRunning();
    return outcome;
  }

  void expectRunsOnlyAtTheSource(const Outcome& outcome) {
    EXPECT_FALSE(outcome.sent.ok());
    EXPECT_TRUE(outcome.source_running);
    EXPECT_FALSE(source_.paused());
    EXPECT_FALSE(target_.running);
    EXPECT_TRUE(target_.discarded);
  }

  ::flotilla::testing::TempDir dir_;
  FakeSourceVm source_;
  FakeTargetVm target_;
  std::string source0_, source1_, target0_, target1_;
};

TEST_F(MigrationDisksTest, ColdMigrationMovesEveryDiskAndKeepsHolesHoles) {
  Outcome outcome = migrate();
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  ASSERT_TRUE(outcome.received.ok()) << outcome.received;
  EXPECT_TRUE(target_.running);
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "");
  EXPECT_TRUE(contents(target0_) == contents(source0_)) << "disk 0 differs";
  EXPECT_TRUE(contents(target1_) == contents(source1_)) << "disk 1 differs";
  // The blocks that hold data, not the zeroes: disk 0's first 64 KiB, the two blocks the
  // 5000 bytes touch and its last block; disk 1's last (partial) block of 100 bytes.
  const uint64_t data = 64 * 1024 + 2 * 4096 + 4096;
  EXPECT_EQ(outcome.stats.disk_bytes, data + 100);
  EXPECT_EQ(outcome.target.disk_bytes, outcome.stats.disk_bytes);
  EXPECT_LT(allocatedBytes(target0_), data + 4096)
      << "the block of zeroes and the holes stay unallocated";
}

TEST_F(MigrationDisksTest, TargetFileThatHoldsDataIsRefusedAndLeftAlone) {
  writeAt(target0_, 4096, "precious");
  const std::string before = contents(target0_);
  Outcome outcome = migrate();
  EXPECT_THAT(outcome.sent.message(), HasSubstr("already holds data"));
  expectRunsOnlyAtTheSource(outcome);
  EXPECT_EQ(contents(target0_), before);
}

TEST_F(MigrationDisksTest, FailureAfterTheDisksMovedTakesBackWhatTheTargetWrote) {
  target_.load_error = absl::InternalError("vCPU state refused");
  Outcome outcome = migrate();
  EXPECT_THAT(outcome.sent.message(), HasSubstr("vCPU state refused"));
  expectRunsOnlyAtTheSource(outcome);
  EXPECT_NE(::access(target0_.c_str(), F_OK), 0) << "the file it created is gone";
  struct stat info {};
  ASSERT_EQ(::stat(target1_.c_str(), &info), 0) << "the file that was there stays";
  EXPECT_EQ(info.st_size, static_cast<off_t>(3 * kMiB)) << "at its size";
  EXPECT_EQ(allocatedBytes(target1_), 0u) << "and empty";
}

TEST_F(MigrationDisksTest, DisksMoveOnlyWithAColdMigration) {
  Outcome outcome = migrate(/*cold=*/false);
  EXPECT_EQ(outcome.sent.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(outcome.sent.message(), HasSubstr("cold migration"));
  expectRunsOnlyAtTheSource(outcome);
  EXPECT_NE(::access(target0_.c_str(), F_OK), 0);
}

TEST_F(MigrationDisksTest, TargetWithoutAPlaceForEveryDiskRefuses) {
  target_.disk_paths.pop_back();
  Outcome outcome = migrate();
  EXPECT_THAT(outcome.sent.message(), HasSubstr("disk 1"));
  EXPECT_THAT(outcome.sent.message(), HasSubstr("this target has 1 disks"));
  expectRunsOnlyAtTheSource(outcome);
  EXPECT_NE(::access(target0_.c_str(), F_OK), 0) << "nothing half-made";
}

}  // namespace
}  // namespace flotilla::migration
