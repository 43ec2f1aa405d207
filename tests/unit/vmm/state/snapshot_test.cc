// Tests of snapshot files: a VmSnapshot and a small guest memory written, committed and read
// back; the memory file sparse with every byte at its offset; and every way a state or memory
// file can be wrong (missing, foreign, newer major version, truncated, corrupted, oversized).
#include "vmm/state/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kRam = 8 << 20;
constexpr size_t kHeaderBytes = 32;  // magic, major, minor, payload size, CRC-32, reserved

bool exists(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

template <typename T>
void put(std::string& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
}

uint32_t crc32Of(const std::string& bytes) {
  return static_cast<uint32_t>(
      ::crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

flotilla::v1::VmSnapshot sampleState() {
  flotilla::v1::VmSnapshot state;
  flotilla::v1::VmConfigState* config = state.mutable_config();
  config->set_vcpus(2);
  config->set_memory_bytes(kRam);
  config->set_cpu_model("x86-64-v3");
  config->set_hugepages(false);
  config->set_name("web1");
  for (uint32_t i = 0; i < 2; ++i) {
    flotilla::v1::VcpuState* vcpu = state.add_vcpus();
    vcpu->set_index(i);
    vcpu->set_regs(std::string(144, static_cast<char>('r' + i)));
    vcpu->set_xsave(std::string(4096, static_cast<char>(i)));
    vcpu->set_mp_state(i);
    flotilla::v1::Msr* tsc = vcpu->add_msrs();
    tsc->set_index(0x10);
    tsc->set_value(123456789 + i);
  }
  state.mutable_irqchip()->set_clock_ns(987654321);
  state.mutable_devices()->mutable_serial()->set_rx("typed");
  state.mutable_devices()->mutable_serial()->set_thr_interrupt_pending(true);
  state.mutable_devices()->mutable_i8042()->set_command_byte(0x45);
  state.mutable_devices()->mutable_cmos()->set_clock_offset_seconds(-3600);
  state.set_tsc_khz(2'400'000);
  return state;
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = GuestMemory::create(kRam, {});
    ASSERT_TRUE(memory.ok()) << memory.status();
    memory_.emplace(std::move(*memory));
    std::span<uint8_t> ram = memory_->backing();
    // Page 0 full of a pattern, a run of three pages, a page with one byte at its very end,
    // the last page; pages touched and zeroed again stay holes in the file.
    for (size_t i = 0; i < kPageSize; ++i) ram[i] = static_cast<uint8_t>(i * 7 + 1);
    for (size_t i = 100 * kPageSize; i < 103 * kPageSize; ++i) ram[i] = static_cast<uint8_t>(i);
    ram[201 * kPageSize - 1] = 0x5a;
    for (size_t i = kRam - kPageSize; i < kRam; ++i) ram[i] = 0xee;
    std::memset(ram.data() + 300 * kPageSize, 0xab, 4 * kPageSize);
    std::memset(ram.data() + 300 * kPageSize, 0, 4 * kPageSize);
    expected_written_ = (1 + 3 + 1 + 1) * kPageSize;
  }

  std::string statePath() const { return snapshot_ + "/state"; }
  std::string memoryPath() const { return snapshot_ + "/memory"; }

  // Writes and commits the sample snapshot.
  void writeSample() {
    auto stats = writeSnapshot(snapshot_, sampleState(), *memory_);
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_TRUE(commitSnapshot(snapshot_).ok());
  }

  flotilla::testing::TempDir dir_;
  const std::string snapshot_ = dir_.file("snapshot");
  std::optional<GuestMemory> memory_;
  uint64_t expected_written_ = 0;
};

TEST_F(SnapshotTest, WrittenCommittedAndReadBackUnchanged) {
  auto stats = writeSnapshot(snapshot_, sampleState(), *memory_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->memory_bytes_written, expected_written_) << "only the non-zero pages";

  // Until the commit there is no snapshot, only its parts.
  EXPECT_TRUE(exists(snapshot_ + "/state.tmp"));
  EXPECT_FALSE(exists(statePath()));
  EXPECT_TRUE(exists(memoryPath()));
  auto early = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsNotFound(early.status())) << early.status();

  ASSERT_TRUE(commitSnapshot(snapshot_).ok());
  EXPECT_TRUE(exists(statePath()));
  EXPECT_FALSE(exists(snapshot_ + "/state.tmp"));

  auto state = readSnapshotState(snapshot_);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->DebugString(), sampleState().DebugString());

  const std::string header = readFile(statePath()).substr(0, kHeaderBytes);
  EXPECT_EQ(header.substr(0, 8), "FLOTSNAP");
  EXPECT_EQ(header[8], 1) << "format 1.0, little-endian";
  EXPECT_EQ(header[12], 0);
}

TEST_F(SnapshotTest, TheMemoryFileIsSparseWithEveryByteAtItsOffset) {
  writeSample();
  struct stat info {};
  ASSERT_EQ(::stat(memoryPath().c_str(), &info), 0);
  EXPECT_EQ(static_cast<uint64_t>(info.st_size), kRam);
  EXPECT_LT(static_cast<uint64_t>(info.st_blocks) * 512, uint64_t{1} << 20)
      << "holes for the zero pages: " << info.st_blocks << " blocks allocated";
  EXPECT_GE(static_cast<uint64_t>(info.st_blocks) * 512, expected_written_);

  const std::string file = readFile(memoryPath());
  ASSERT_EQ(file.size(), kRam);
  EXPECT_EQ(std::memcmp(file.data(), memory_->backing().data(), kRam), 0);
  EXPECT_EQ(static_cast<uint8_t>(file[1]), 8);
  EXPECT_EQ(static_cast<uint8_t>(file[201 * kPageSize - 1]), 0x5a);
  EXPECT_EQ(static_cast<uint8_t>(file[kRam - 1]), 0xee);
  EXPECT_EQ(file.substr(300 * kPageSize, 4 * kPageSize), std::string(4 * kPageSize, '\0'));
}

TEST_F(SnapshotTest, ReadSnapshotMemoryGivesBackTheSameBytes) {
  writeSample();
  auto state = readSnapshotState(snapshot_);
  ASSERT_TRUE(state.ok()) << state.status();
  auto restored = readSnapshotMemory(snapshot_, *state);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_TRUE(restored->waitLoaded().ok());
  ASSERT_EQ(restored->ramBytes(), kRam);
  EXPECT_EQ(std::memcmp(restored->backing().data(), memory_->backing().data(), kRam), 0);

  // A snapshot of the restored memory is the same snapshot again.
  const std::string again = dir_.file("again");
  auto stats = writeSnapshot(again, *state, *restored);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->memory_bytes_written, expected_written_);
  ASSERT_TRUE(commitSnapshot(again).ok());
  EXPECT_EQ(readFile(again + "/memory"), readFile(memoryPath()));
  EXPECT_EQ(readFile(again + "/state"), readFile(statePath()));
}

TEST_F(SnapshotTest, RewritingASnapshotUnpublishesTheOldStateFirst) {
  writeSample();
  auto stats = writeSnapshot(snapshot_, sampleState(), *memory_);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_FALSE(exists(statePath())) << "an old state must not pair with a new memory file";
  ASSERT_TRUE(commitSnapshot(snapshot_).ok());
  EXPECT_TRUE(readSnapshotState(snapshot_).ok());
  EXPECT_FALSE(commitSnapshot(snapshot_).ok()) << "nothing left to commit";
}

TEST_F(SnapshotTest, AMissingDirectoryHasNoSnapshot) {
  auto state = readSnapshotState(dir_.file("nowhere"));
  EXPECT_TRUE(absl::IsNotFound(state.status())) << state.status();
  EXPECT_THAT(state.status().message(), HasSubstr(dir_.file("nowhere") + " has no snapshot"));
}

TEST_F(SnapshotTest, AFileWithoutTheMagicIsNotASnapshot) {
  writeSample();
  std::string bytes = readFile(statePath());
  bytes.replace(0, 8, "FLOTSNAQ");
  writeFile(statePath(), bytes);
  auto state = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsDataLoss(state.status())) << state.status();
  EXPECT_THAT(state.status().message(),
              HasSubstr(statePath() + " is not a Flotilla snapshot state file"));

  writeFile(statePath(), "FLOTSNAP");  // shorter than a header
  EXPECT_TRUE(absl::IsDataLoss(readSnapshotState(snapshot_).status()));
  writeFile(statePath(), "");
  EXPECT_TRUE(absl::IsDataLoss(readSnapshotState(snapshot_).status()));
}

TEST_F(SnapshotTest, AnotherMajorVersionIsRefusedNamingBothVersions) {
  writeSample();
  std::string bytes = readFile(statePath());
  put<uint32_t>(bytes, 8, 2);
  put<uint32_t>(bytes, 12, 3);
  writeFile(statePath(), bytes);
  auto state = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsFailedPrecondition(state.status())) << state.status();
  EXPECT_THAT(state.status().message(),
              HasSubstr("has snapshot format 2.3; this VMM reads format 1.x"));
}

TEST_F(SnapshotTest, ANewerMinorVersionIsRead) {
  writeSample();
  std::string bytes = readFile(statePath());
  put<uint32_t>(bytes, 12, 7);
  writeFile(statePath(), bytes);
  auto state = readSnapshotState(snapshot_);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->config().name(), "web1");
}

TEST_F(SnapshotTest, ATruncatedPayloadIsDataLoss) {
  writeSample();
  const std::string bytes = readFile(statePath());
  const size_t payload = bytes.size() - kHeaderBytes;
  writeFile(statePath(), bytes.substr(0, kHeaderBytes + payload / 2));
  auto state = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsDataLoss(state.status())) << state.status();
  EXPECT_THAT(state.status().message(),
              HasSubstr(fmt::format("is truncated: {} of {} state bytes", payload / 2, payload)));
}

TEST_F(SnapshotTest, AFlippedPayloadByteFailsTheChecksum) {
  writeSample();
  std::string bytes = readFile(statePath());
  bytes[kHeaderBytes + 10] = static_cast<char>(bytes[kHeaderBytes + 10] ^ 0x01);
  writeFile(statePath(), bytes);
  auto state = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsDataLoss(state.status())) << state.status();
  EXPECT_THAT(state.status().message(), HasSubstr("is corrupted: its checksum does not match"));
}

TEST_F(SnapshotTest, APayloadThatDoesNotParseIsDataLoss) {
  writeSample();
  const std::string payload = "\xff\xff\xff\xff";  // a truncated varint tag
  std::string bytes = readFile(statePath()).substr(0, kHeaderBytes) + payload;
  put<uint64_t>(bytes, 16, payload.size());
  put<uint32_t>(bytes, 24, crc32Of(payload));
  writeFile(statePath(), bytes);
  auto state = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsDataLoss(state.status())) << state.status();
  EXPECT_THAT(state.status().message(), HasSubstr("its state does not parse"));
}

TEST_F(SnapshotTest, APayloadSizeAboveTheCapIsRefusedBeforeReading) {
  writeSample();
  std::string bytes = readFile(statePath());
  put<uint64_t>(bytes, 16, kMaxStateBytes + 1);
  writeFile(statePath(), bytes);
  auto state = readSnapshotState(snapshot_);
  EXPECT_TRUE(absl::IsDataLoss(state.status())) << state.status();
  EXPECT_THAT(state.status().message(), HasSubstr("more than the 64M limit"));
  put<uint64_t>(bytes, 16, ~uint64_t{0});
  writeFile(statePath(), bytes);
  EXPECT_TRUE(absl::IsDataLoss(readSnapshotState(snapshot_).status()));
}

TEST_F(SnapshotTest, AMemoryFileOfTheWrongSizeIsDataLoss) {
  writeSample();
  ASSERT_EQ(::truncate(memoryPath().c_str(), kRam / 2), 0);
  auto restored = readSnapshotMemory(snapshot_, sampleState());
  EXPECT_TRUE(absl::IsDataLoss(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(),
              HasSubstr(fmt::format("is {} bytes but the snapshot's VM has {} bytes of memory",
                                    kRam / 2, kRam)));
  ASSERT_EQ(::truncate(memoryPath().c_str(), kRam + kPageSize), 0);
  EXPECT_TRUE(absl::IsDataLoss(readSnapshotMemory(snapshot_, sampleState()).status()));
}

TEST_F(SnapshotTest, AMissingMemoryFileIsNamed) {
  writeSample();
  ASSERT_EQ(::unlink(memoryPath().c_str()), 0);
  auto restored = readSnapshotMemory(snapshot_, sampleState());
  EXPECT_TRUE(absl::IsNotFound(restored.status())) << restored.status();
  EXPECT_THAT(restored.status().message(), HasSubstr("opening " + memoryPath()));
}

TEST_F(SnapshotTest, WritingIntoAnUncreatableDirectoryFails) {
  writeFile(dir_.file("plain"), "x");
  auto stats = writeSnapshot(dir_.file("plain/snapshot"), sampleState(), *memory_);
  EXPECT_FALSE(stats.ok());
  EXPECT_THAT(stats.status().message(), HasSubstr("creating snapshot directory"));
}

}  // namespace
}  // namespace flotilla::vmm
