// Tests of the iSCSI backend (storage/iscsi.h) against a real tgtd started by each test:
// reads and writes checked against the LUN's backing file, flush, capacity, discard and
// write-zeroes with and without thin provisioning, requests split into several commands,
// open errors (bad URL, nothing listening, a portal that never answers, unknown target,
// missing LUN), the target restarting during I/O with every request completing OK, and an
// outage longer than reconnect_timeout failing requests with kIoError until the target is
// back.
#include "storage/iscsi.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/block_backend.h"
#include "storage/testing/completion_recorder.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"

namespace flotilla::storage {
namespace {

using flotilla::testing::TgtTarget;
using flotilla::testing::TgtTargetOptions;
using testing::CompletionRecorder;
using ::testing::HasSubstr;

constexpr uint64_t kLunBytes = 64 << 20;

char patternAt(uint64_t seed, uint64_t pos) {
  return static_cast<char>((pos * 131 + seed * 7 + (pos >> 9)) & 0xff);
}

std::vector<char> pattern(uint64_t seed, uint64_t offset, size_t length) {
  std::vector<char> data(length);
  for (size_t i = 0; i < length; ++i) data[i] = patternAt(seed, offset + i);
  return data;
}

BlockRequest request(uint64_t tag, BlockOp op, uint64_t offset, std::vector<iovec> iov = {},
                     uint64_t length = 0) {
  BlockRequest r;
  r.tag = tag;
  r.op = op;
  r.offset = offset;
  r.iov = std::move(iov);
  r.length = length;
  return r;
}

class IscsiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto disk = dir_.sparseFile("lun.img", kLunBytes);
    ASSERT_TRUE(disk.ok()) << disk.status();
    disk_ = *disk;
  }

  void startTarget(TgtTargetOptions options = {}) {
    absl::StatusOr<std::unique_ptr<TgtTarget>> target = TgtTarget::start(disk_, options);
    ASSERT_TRUE(target.ok()) << target.status();
    tgt_ = std::move(*target);
  }

  std::unique_ptr<IscsiBackend> open(IscsiOptions options = {}) {
    absl::StatusOr<std::unique_ptr<IscsiBackend>> backend =
        IscsiBackend::open(tgt_->url(), options);
    EXPECT_TRUE(backend.ok()) << backend.status() << "\ntgtd's output:\n" << tgt_->logTail();
    if (!backend.ok()) return nullptr;
    (*backend)->setCompletionSink(&recorder_);
    return std::move(*backend);
  }

  std::vector<BlockResult> run(BlockBackend& backend, std::vector<BlockRequest> requests) {
    const size_t count = requests.size();
    auto results = recorder_.submitAndWait(backend, std::move(requests));
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *results : std::vector<BlockResult>(count, BlockResult::kIoError);
  }

  BlockResult runOne(BlockBackend& backend, BlockRequest r) {
    std::vector<BlockRequest> one;
    one.push_back(std::move(r));
    return run(backend, std::move(one)).front();
  }

  std::vector<char> lunFileBytes(uint64_t offset, size_t length) {
    std::vector<char> data(length);
    UniqueFd fd(::open(disk_.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(fd.get(), data.data(), length, static_cast<off_t>(offset)),
              static_cast<ssize_t>(length));
    return data;
  }

  void writeThrough(const std::function<absl::Status()>& interrupt);

  flotilla::testing::TempDir dir_;
  std::string disk_;
  std::unique_ptr<TgtTarget> tgt_;
  CompletionRecorder recorder_;
};

TEST_F(IscsiTest, ReportsTheLunsGeometry) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->sizeBytes(), kLunBytes);
  EXPECT_EQ(backend->blockSize(), 512u);
  EXPECT_EQ(backend->describe(), tgt_->url());
  EXPECT_FALSE(backend->readOnly());
  EXPECT_TRUE(backend->capabilities().flush);
}

TEST_F(IscsiTest, WritesReachTheLunAndReadBack) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(1, 1 << 20, 256 << 10);
  std::vector<iovec> out = {{data.data(), 512},
                            {data.data() + 512, 4096 - 512},
                            {data.data() + 4096, data.size() - 4096}};
  ASSERT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 1 << 20, out)), BlockResult::kOk);
  ASSERT_EQ(runOne(*backend, request(2, BlockOp::kFlush, 0)), BlockResult::kOk);
  ASSERT_TRUE(backend->drain().ok());
  EXPECT_EQ(lunFileBytes(1 << 20, data.size()), data);

  std::vector<char> back(data.size());
  std::vector<iovec> in;
  for (size_t i = 0; i < back.size(); i += 64 << 10) in.push_back({back.data() + i, 64 << 10});
  ASSERT_EQ(runOne(*backend, request(3, BlockOp::kRead, 1 << 20, in)), BlockResult::kOk);
  EXPECT_EQ(back, data);
}

TEST_F(IscsiTest, RequestsLongerThanOneCommandAreSplit) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  // 40 MiB: more than the 32 MiB one SCSI command carries.
  std::vector<char> data = pattern(2, 4 << 20, 40 << 20);
  std::vector<iovec> out;
  for (size_t i = 0; i < data.size(); i += 5 << 20) out.push_back({data.data() + i, 5 << 20});
  ASSERT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 4 << 20, out)), BlockResult::kOk);
  ASSERT_TRUE(backend->drain().ok());
  EXPECT_TRUE(lunFileBytes(4 << 20, data.size()) == data);
  std::vector<char> back(data.size());
  ASSERT_EQ(runOne(*backend, request(2, BlockOp::kRead, 4 << 20, {{back.data(), back.size()}})),
            BlockResult::kOk);
  EXPECT_TRUE(back == data);
}

TEST_F(IscsiTest, ManyRequestsInFlightCompleteOnce) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  constexpr size_t kRequests = 512;
  std::vector<std::vector<char>> buffers(kRequests);
  std::vector<BlockRequest> writes;
  for (size_t i = 0; i < kRequests; ++i) {
    buffers[i] = pattern(i, i * 8192, 8192);
    writes.push_back(request(i + 1, BlockOp::kWrite, i * 8192, {{buffers[i].data(), 8192}}));
  }
  std::vector<BlockResult> results = run(*backend, std::move(writes));
  EXPECT_THAT(results, ::testing::Each(::testing::Eq(BlockResult::kOk)));
  ASSERT_TRUE(backend->drain().ok());
  for (size_t i = 0; i < kRequests; ++i) {
    ASSERT_EQ(lunFileBytes(i * 8192, 8192), buffers[i]) << "request " << i;
  }
  for (std::thread::id thread : recorder_.threads()) {
    EXPECT_NE(thread, std::this_thread::get_id());
  }
}

TEST_F(IscsiTest, RefusesRequestsPastTheEnd) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  std::vector<char> buffer(4096);
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kRead, kLunBytes, {{buffer.data(), 4096}})),
            BlockResult::kIoError);
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kRead, kLunBytes - 4096, {{buffer.data(), 4096}})),
            BlockResult::kOk);
}

TEST_F(IscsiTest, ThinLunDiscardsAndWritesZeroes) {
  ASSERT_NO_FATAL_FAILURE(startTarget(TgtTargetOptions{.thin_provisioning = true}));
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  BlockCapabilities can = backend->capabilities();
  EXPECT_TRUE(can.discard);
  EXPECT_TRUE(can.write_zeroes);
  std::vector<char> data = pattern(3, 0, 1 << 20);
  ASSERT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kDiscard, 128 << 10, {}, 256 << 10)),
            BlockResult::kOk);
  EXPECT_EQ(runOne(*backend, request(3, BlockOp::kWriteZeroes, 512 << 10, {}, 64 << 10)),
            BlockResult::kOk);
  std::vector<char> back(1 << 20);
  ASSERT_EQ(runOne(*backend, request(4, BlockOp::kRead, 0, {{back.data(), back.size()}})),
            BlockResult::kOk);
  std::vector<char> expected = data;
  std::fill(expected.begin() + (128 << 10), expected.begin() + (384 << 10), '\0');
  std::fill(expected.begin() + (512 << 10), expected.begin() + (576 << 10), '\0');
  EXPECT_TRUE(back == expected);
}

TEST_F(IscsiTest, FullyProvisionedLunWritesZeroesButDoesNotDiscard) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  BlockCapabilities can = backend->capabilities();
  EXPECT_FALSE(can.discard);      // tgtd refuses UNMAP without thin provisioning
  EXPECT_TRUE(can.write_zeroes);  // but reports WRITE SAME(16)
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kDiscard, 0, {}, 4096)),
            BlockResult::kUnsupported);
  std::vector<char> data = pattern(4, 0, 64 << 10);
  ASSERT_EQ(runOne(*backend, request(2, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(runOne(*backend, request(3, BlockOp::kWriteZeroes, 4096, {}, 8192)), BlockResult::kOk);
  ASSERT_TRUE(backend->drain().ok());
  std::vector<char> expected = data;
  std::fill(expected.begin() + 4096, expected.begin() + 12288, '\0');
  EXPECT_EQ(lunFileBytes(0, data.size()), expected);
}

TEST_F(IscsiTest, ReadOnlyRefusesWrites) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  IscsiOptions options;
  options.read_only = true;
  auto backend = open(options);
  ASSERT_NE(backend, nullptr);
  EXPECT_FALSE(backend->capabilities().discard);
  EXPECT_FALSE(backend->capabilities().write_zeroes);
  std::vector<char> buffer(4096, 'x');
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{buffer.data(), 4096}})),
            BlockResult::kIoError);
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kRead, 0, {{buffer.data(), 4096}})),
            BlockResult::kOk);
  EXPECT_EQ(buffer, std::vector<char>(4096, '\0'));
}

TEST_F(IscsiTest, ResizeOnlyConfirmsTheLunsSize) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  absl::StatusOr<uint64_t> same = backend->resize(kLunBytes);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(*same, kLunBytes);
  absl::StatusOr<uint64_t> bigger = backend->resize(2 * kLunBytes);
  EXPECT_EQ(bigger.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(bigger.status().message()), HasSubstr("resized on the target"));
}

TEST_F(IscsiTest, DestroyingWithRequestsInFlightReportsEachOnce) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  auto backend = open();
  ASSERT_NE(backend, nullptr);
  constexpr size_t kRequests = 256;
  std::vector<std::vector<char>> buffers(kRequests, std::vector<char>(64 << 10));
  std::vector<BlockRequest> reads;
  for (size_t i = 0; i < kRequests; ++i) {
    reads.push_back(
        request(i + 1, BlockOp::kRead, i * (64 << 10), {{buffers[i].data(), buffers[i].size()}}));
  }
  backend->submit(std::span<BlockRequest>(reads));
  backend.reset();
  std::vector<BlockCompletion> all = recorder_.all();
  ASSERT_EQ(all.size(), kRequests);
  std::set<uint64_t> tags;
  for (const BlockCompletion& c : all) EXPECT_TRUE(tags.insert(c.tag).second);
}

TEST_F(IscsiTest, BadUrlsSayWhatIsExpected) {
  for (const std::string& url :
       {std::string("iscsi://127.0.0.1"), std::string("iscsi://127.0.0.1:3260/iqn.x/abc"),
        std::string("http://127.0.0.1/iqn.x/1"), std::string("")}) {
    absl::StatusOr<std::unique_ptr<IscsiBackend>> backend = IscsiBackend::open(url, {});
    ASSERT_FALSE(backend.ok()) << url;
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(std::string(backend.status().message()),
                HasSubstr("invalid iSCSI URL '" + url + "'"));
    EXPECT_THAT(std::string(backend.status().message()),
                HasSubstr("expected iscsi://HOST[:PORT]/IQN/LUN"));
  }
}

TEST_F(IscsiTest, NothingListeningOnThePortal) {
  absl::StatusOr<uint16_t> port = flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  const std::string url =
      fmt::format("iscsi://127.0.0.1:{}/iqn.2026-01.org.flotilla:none/1", *port);
  absl::StatusOr<std::unique_ptr<IscsiBackend>> backend = IscsiBackend::open(url, {});
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(backend.status().message()),
              HasSubstr(fmt::format("cannot reach iSCSI portal 127.0.0.1:{} ({})", *port, url)));
  EXPECT_THAT(std::string(backend.status().message()), HasSubstr("Connection refused"));
}

TEST_F(IscsiTest, PortalThatNeverAnswersTimesOut) {
  // A TCP listener that accepts connections (the kernel completes the handshake) and never
  // answers the login.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  socklen_t length = sizeof(addr);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &length), 0);
  const std::string url =
      fmt::format("iscsi://127.0.0.1:{}/iqn.2026-01.org.flotilla:silent/1", ntohs(addr.sin_port));
  IscsiOptions options;
  options.connect_timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<IscsiBackend>> backend = IscsiBackend::open(url, options);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(backend.status().message()),
              HasSubstr("within 1s while logging in (" + url + ")"));
}

TEST_F(IscsiTest, UnknownTargetAndMissingLun) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  const std::string unknown = "iscsi://" + tgt_->portal() + "/iqn.2026-01.org.flotilla:nope/1";
  absl::StatusOr<std::unique_ptr<IscsiBackend>> no_target = IscsiBackend::open(unknown, {});
  ASSERT_FALSE(no_target.ok());
  EXPECT_EQ(no_target.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(no_target.status().message()),
              HasSubstr("iSCSI target iqn.2026-01.org.flotilla:nope is not known at portal " +
                        tgt_->portal()));

  absl::StatusOr<std::unique_ptr<IscsiBackend>> no_lun = IscsiBackend::open(tgt_->url(7), {});
  ASSERT_FALSE(no_lun.ok());
  EXPECT_EQ(no_lun.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(no_lun.status().message()),
              HasSubstr("iSCSI target " + tgt_->iqn() + " at " + tgt_->portal() + " has no LUN 7"));

  // LUN 0 of a tgt target is its controller, not a disk.
  absl::StatusOr<std::unique_ptr<IscsiBackend>> controller = IscsiBackend::open(tgt_->url(0), {});
  ASSERT_FALSE(controller.ok());
  EXPECT_THAT(std::string(controller.status().message()), HasSubstr("is it a disk?"));
}

// Keeps 16 writes in flight while `interrupt` runs on another thread, then checks that every
// write completed OK and that the LUN holds what was written last.
void IscsiTest::writeThrough(const std::function<absl::Status()>& interrupt) {
  auto backend = open();  // reconnect_timeout: the default 30 s, far longer than a restart
  ASSERT_NE(backend, nullptr);
  constexpr size_t kRegion = 64 << 10;
  constexpr size_t kRegions = 256;
  constexpr size_t kDepth = 16;
  std::vector<uint64_t> last_seed(kRegions, 0);
  std::vector<std::vector<char>> buffers(kDepth);

  std::atomic<bool> restart_done{false};
  absl::Status restart_status;
  std::thread restarter;
  size_t rounds_after_restart = 0;
  uint64_t tag = 1;
  size_t failures = 0;
  for (size_t round = 0; round < 100000 && rounds_after_restart < 5; ++round) {
    if (round == 3) {
      restarter = std::thread([&] {
        restart_status = interrupt();
        restart_done = true;
      });
    }
    std::vector<BlockRequest> writes;
    for (size_t j = 0; j < kDepth; ++j) {
      const size_t region = (round * kDepth + j) % kRegions;
      const uint64_t seed = tag;
      buffers[j] = pattern(seed, region * kRegion, kRegion);
      last_seed[region] = seed;
      writes.push_back(
          request(tag++, BlockOp::kWrite, region * kRegion, {{buffers[j].data(), kRegion}}));
    }
    for (BlockResult result : run(*backend, std::move(writes))) {
      if (result != BlockResult::kOk) ++failures;
    }
    if (restart_done) ++rounds_after_restart;
  }
  if (restarter.joinable()) restarter.join();
  ASSERT_TRUE(restart_status.ok()) << restart_status;
  EXPECT_EQ(failures, 0u) << "requests failed across the restart";
  EXPECT_GE(backend->reconnectCount(), 1u) << "the session was not re-established";

  // Every region holds what was written to it last.
  ASSERT_TRUE(backend->drain().ok());
  std::vector<char> back(kRegion);
  for (size_t region = 0; region < kRegions; ++region) {
    if (last_seed[region] == 0) continue;
    ASSERT_EQ(runOne(*backend,
                     request(tag++, BlockOp::kRead, region * kRegion, {{back.data(), kRegion}})),
              BlockResult::kOk);
    ASSERT_TRUE(back == pattern(last_seed[region], region * kRegion, kRegion))
        << "region " << region;
  }
}

TEST_F(IscsiTest, TargetRestartDuringIoLosesNoRequest) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  writeThrough([this] { return tgt_->restart(); });
}

TEST_F(IscsiTest, TargetCrashAndRestartDuringIoLosesNoRequest) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  writeThrough([this] {
    absl::Status killed = tgt_->kill();
    if (!killed.ok()) return killed;
    return tgt_->startAgain();
  });
}

TEST_F(IscsiTest, OutageLongerThanReconnectTimeoutFailsUntilTheTargetIsBack) {
  ASSERT_NO_FATAL_FAILURE(startTarget());
  IscsiOptions options;
  options.reconnect_timeout = absl::Seconds(1);
  options.connect_timeout = absl::Seconds(2);
  auto backend = open(options);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(5, 0, 4096);
  ASSERT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{data.data(), 4096}})),
            BlockResult::kOk);

  ASSERT_TRUE(tgt_->stop().ok());
  std::vector<char> back(4096);
  // Waits for the target for reconnect_timeout, then fails; afterwards requests fail at once.
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kRead, 0, {{back.data(), 4096}})),
            BlockResult::kIoError);
  EXPECT_EQ(runOne(*backend, request(3, BlockOp::kRead, 0, {{back.data(), 4096}})),
            BlockResult::kIoError);
  EXPECT_EQ(backend->reconnectCount(), 0u);

  // The backend kept trying: once the target is back, requests succeed again.
  ASSERT_TRUE(tgt_->startAgain().ok()) << tgt_->logTail();
  BlockResult result = BlockResult::kIoError;
  for (uint64_t tag = 100; tag < 400 && result != BlockResult::kOk; ++tag) {
    result = runOne(*backend, request(tag, BlockOp::kRead, 0, {{back.data(), 4096}}));
    if (result != BlockResult::kOk) systemClock().sleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(result, BlockResult::kOk);
  EXPECT_EQ(back, data);
  EXPECT_EQ(backend->reconnectCount(), 1u);
}

}  // namespace
}  // namespace flotilla::storage
