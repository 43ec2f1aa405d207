// Tests of the raw backend (storage/raw_file.h) on a host block device: a loop device over a
// temporary file (needs root), with 512- and 4096-byte logical blocks: geometry from the
// BLKGETSIZE64/BLKSSZGET ioctls, reads and writes reaching the backing file, discard and
// write-zeroes, and resize re-reading the device's size. Each test detaches its loop device
// by name, also when it fails.
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/command.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/block_backend.h"
#include "storage/testing/completion_recorder.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using testing::CompletionRecorder;
using ::testing::HasSubstr;

constexpr uint64_t kBytes = 16 << 20;

std::vector<char> pattern(uint64_t seed, size_t length) {
  std::vector<char> data(length);
  for (size_t i = 0; i < length; ++i) data[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
  return data;
}

class RawBlockDeviceTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> losetup = flotilla::testing::findProgram("losetup", "mount");
    ASSERT_TRUE(losetup.ok()) << losetup.status();
    losetup_ = *losetup;
    file_ = dir_.file("backing.img");
    UniqueFd fd(::open(file_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::ftruncate(fd.get(), kBytes), 0);
    absl::StatusOr<std::string> device =
        runChecked(runner_, {losetup_, "-f", "--show", "-b", std::to_string(GetParam()), file_});
    ASSERT_TRUE(device.ok()) << device.status() << " (loop devices need root)";
    device_ = std::string(absl::StripAsciiWhitespace(*device));
  }

  void TearDown() override {
    if (!device_.empty()) {
      absl::StatusOr<std::string> detached = runChecked(runner_, {losetup_, "-d", device_});
      EXPECT_TRUE(detached.ok()) << detached.status();
    }
  }

  BlockResult runOne(BlockBackend& backend, BlockRequest r) {
    const size_t before = recorder_.all().size();
    const uint64_t tag = r.tag;
    std::vector<BlockRequest> one;
    one.push_back(std::move(r));
    backend.submit(std::span<BlockRequest>(one));
    recorder_.waitFor(before + 1);
    return recorder_.resultOf(tag).value_or(BlockResult::kIoError);
  }

  std::vector<char> fileBytes(uint64_t offset, size_t length) {
    std::vector<char> data(length);
    UniqueFd fd(::open(file_.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(fd.get(), data.data(), length, static_cast<off_t>(offset)),
              static_cast<ssize_t>(length));
    return data;
  }

  flotilla::testing::TempDir dir_;
  SystemCommandRunner runner_;
  std::string losetup_;
  std::string file_;
  std::string device_;
  CompletionRecorder recorder_;
};

TEST_P(RawBlockDeviceTest, ReadsWritesDiscardsAndZeroes) {
  absl::StatusOr<std::unique_ptr<BlockBackend>> opened = openRawFile(device_, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  BlockBackend& backend = **opened;
  backend.setCompletionSink(&recorder_);
  EXPECT_EQ(backend.describe(), "block device " + device_);
  EXPECT_EQ(backend.sizeBytes(), kBytes);
  EXPECT_EQ(backend.blockSize(), GetParam());
  EXPECT_TRUE(backend.capabilities().write_zeroes);
  EXPECT_TRUE(backend.capabilities().flush);

  const size_t length = 64 << 10;
  std::vector<char> data = pattern(1, length);
  BlockRequest write;
  write.tag = 1;
  write.op = BlockOp::kWrite;
  write.offset = 1 << 20;
  write.iov = {{data.data(), length}};
  ASSERT_EQ(runOne(backend, std::move(write)), BlockResult::kOk);
  ASSERT_TRUE(backend.drain().ok());
  EXPECT_TRUE(fileBytes(1 << 20, length) == data);

  // Misaligned for this device's block size (512 is misaligned for 4096-byte blocks).
  std::vector<char> small(512);
  BlockRequest misaligned;
  misaligned.tag = 2;
  misaligned.op = BlockOp::kRead;
  misaligned.offset = GetParam() == 4096 ? 512 : 100;
  misaligned.iov = {{small.data(), small.size()}};
  EXPECT_EQ(runOne(backend, std::move(misaligned)), BlockResult::kIoError);

  BlockRequest zeroes;
  zeroes.tag = 3;
  zeroes.op = BlockOp::kWriteZeroes;
  zeroes.offset = (1 << 20) + 8192;
  zeroes.length = 8192;
  EXPECT_EQ(runOne(backend, std::move(zeroes)), BlockResult::kOk);
  uint64_t next_tag = 4;
  if (backend.capabilities().discard) {
    BlockRequest discard;
    discard.tag = next_tag++;
    discard.op = BlockOp::kDiscard;
    discard.offset = (1 << 20) + 32768;
    discard.length = 16384;
    EXPECT_EQ(runOne(backend, std::move(discard)), BlockResult::kOk);
  }
  std::vector<char> back(length);
  BlockRequest read;
  read.tag = next_tag++;
  read.op = BlockOp::kRead;
  read.offset = 1 << 20;
  read.iov = {{back.data(), length}};
  ASSERT_EQ(runOne(backend, std::move(read)), BlockResult::kOk);
  std::vector<char> expected = data;
  std::fill(expected.begin() + 8192, expected.begin() + 16384, '\0');
  if (backend.capabilities().discard) {
    std::fill(expected.begin() + 32768, expected.begin() + 49152, '\0');
  }
  EXPECT_TRUE(back == expected);
}

TEST_P(RawBlockDeviceTest, ResizeReReadsTheDevicesSize) {
  absl::StatusOr<std::unique_ptr<BlockBackend>> opened = openRawFile(device_, {});
  ASSERT_TRUE(opened.ok()) << opened.status();
  BlockBackend& backend = **opened;
  absl::StatusOr<uint64_t> same = backend.resize(kBytes);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(*same, kBytes);
  absl::StatusOr<uint64_t> bigger = backend.resize(2 * kBytes);
  EXPECT_EQ(bigger.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(bigger.status().message()), HasSubstr("resize the device itself"));
}

INSTANTIATE_TEST_SUITE_P(BlockSizes, RawBlockDeviceTest, ::testing::Values(512u, 4096u));

}  // namespace
}  // namespace flotilla::storage
