// Tests of IscsiPool (storage/iscsi_pool.h) against a real tgtd started by each test
// (TgtDaemon, no targets of its own): volumes created through the pool are reached with the
// VMM's libiscsi backend at the URL of diskOption(), data lands in the volume's file, resize
// grows the LUN under an open session (also with writes in flight), clone copies, remove is
// refused while an initiator is logged in, and reconcile() restores the targets after tgtd
// restarted or crashed, while the backend reconnects by itself.
#include "storage/iscsi_pool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/command.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/block_backend.h"
#include "storage/iscsi.h"
#include "storage/testing/completion_recorder.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"

namespace flotilla::storage {
namespace {

using flotilla::testing::TgtDaemon;
using testing::CompletionRecorder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr char kPrefix[] = "iqn.2026-01.org.flotilla.test:pool1";

std::vector<char> pattern(uint64_t seed, uint64_t offset, size_t length) {
  std::vector<char> data(length);
  for (size_t i = 0; i < length; ++i) {
    data[i] = static_cast<char>(((offset + i) * 131 + seed * 7 + ((offset + i) >> 9)) & 0xff);
  }
  return data;
}

BlockRequest request(uint64_t tag, BlockOp op, uint64_t offset, std::vector<iovec> iov) {
  BlockRequest r;
  r.tag = tag;
  r.op = op;
  r.offset = offset;
  r.iov = std::move(iov);
  return r;
}

class IscsiPoolIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TgtDaemon>> tgtd = TgtDaemon::start();
    ASSERT_TRUE(tgtd.ok()) << tgtd.status();
    tgtd_ = std::move(*tgtd);
    IscsiPoolOptions options;
    options.name = "pool1";
    options.directory = dir_.path();
    options.portal = tgtd_->portal();
    options.iqn_prefix = kPrefix;
    options.tgt_control = tgtd_->control();
    options.tgtadm = tgtd_->tgtadmPath();
    absl::StatusOr<std::unique_ptr<IscsiPool>> pool = IscsiPool::open(runner_, options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
  }

  std::string urlOf(const std::string& volume) {
    absl::StatusOr<std::string> option = pool_->diskOption(volume);
    EXPECT_TRUE(option.ok()) << option.status();
    if (!option.ok()) return {};
    EXPECT_TRUE(option->starts_with("iscsi=")) << *option;
    return option->substr(6);
  }

  std::unique_ptr<IscsiBackend> open(const std::string& volume, CompletionRecorder* recorder) {
    absl::StatusOr<std::unique_ptr<IscsiBackend>> backend = IscsiBackend::open(urlOf(volume), {});
    EXPECT_TRUE(backend.ok()) << backend.status() << "\ntgtd's output:\n" << tgtd_->logTail();
    if (!backend.ok()) return nullptr;
    (*backend)->setCompletionSink(recorder);
    return std::move(*backend);
  }

  BlockResult runOne(BlockBackend& backend, CompletionRecorder& recorder, BlockRequest r) {
    std::vector<BlockRequest> one;
    one.push_back(std::move(r));
    absl::StatusOr<std::vector<BlockResult>> results =
        recorder.submitAndWait(backend, std::move(one));
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? results->front() : BlockResult::kIoError;
  }

  BlockResult write(BlockBackend& backend, CompletionRecorder& recorder, uint64_t offset,
                    std::vector<char>& data) {
    return runOne(backend, recorder,
                  request(next_tag_++, BlockOp::kWrite, offset, {{data.data(), data.size()}}));
  }

  std::vector<char> read(BlockBackend& backend, CompletionRecorder& recorder, uint64_t offset,
                         size_t length) {
    std::vector<char> data(length);
    EXPECT_EQ(runOne(backend, recorder,
                     request(next_tag_++, BlockOp::kRead, offset, {{data.data(), length}})),
              BlockResult::kOk);
    return data;
  }

  std::vector<char> fileBytes(const std::string& volume, uint64_t offset, size_t length) {
    std::vector<char> data(length);
    UniqueFd fd(::open(pool_->files().volumePath(volume).c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(fd.get(), data.data(), length, static_cast<off_t>(offset)),
              static_cast<ssize_t>(length));
    return data;
  }

  // Waits until tgtd lists no session on the volume's target (it notices a closed connection
  // asynchronously). A guard against hangs, not a measurement.
  void waitForNoSessions(const std::string& volume) {
    const absl::Duration deadline = systemClock().monotonicNow() + absl::Seconds(30);
    while (systemClock().monotonicNow() < deadline) {
      absl::StatusOr<std::string> shown =
          tgtd_->tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "target"});
      ASSERT_TRUE(shown.ok()) << shown.status();
      absl::StatusOr<std::vector<TgtTargetState>> targets = parseTgtTargets(*shown);
      ASSERT_TRUE(targets.ok()) << targets.status();
      bool busy = false;
      for (const TgtTargetState& target : *targets) {
        if (target.iqn == pool_->iqn(volume) && !target.sessions.empty()) busy = true;
      }
      if (!busy) return;
      systemClock().sleepFor(absl::Milliseconds(20));
    }
    FAIL() << "the session on " << volume << " did not end";
  }

  flotilla::testing::TempDir dir_;
  SystemCommandRunner runner_;
  std::unique_ptr<TgtDaemon> tgtd_;
  std::unique_ptr<IscsiPool> pool_;
  uint64_t next_tag_ = 1;
};

// A port picked free can be taken before tgtd binds it; tgtd then runs on without its portal.
// The test daemon sees that and starts over on a new port.
TEST(TgtDaemonTest, StartsOverOnANewPortWhenItsPortWasTaken) {
  auto taken = flotilla::testing::listenOnFreePort();
  ASSERT_TRUE(taken.ok()) << taken.status();
  int picked = 0;
  auto tgtd = TgtDaemon::start("127.0.0.1", [&]() -> absl::StatusOr<uint16_t> {
    return picked++ == 0 ? taken->port : flotilla::testing::pickFreePort();
  });
  ASSERT_TRUE(tgtd.ok()) << tgtd.status();
  EXPECT_EQ(picked, 2);
  EXPECT_NE((*tgtd)->portal(), fmt::format("127.0.0.1:{}", taken->port));
  auto portals = (*tgtd)->tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "portal"});
  ASSERT_TRUE(portals.ok()) << portals.status();
  EXPECT_THAT(*portals, HasSubstr("Portal: " + (*tgtd)->portal() + ","));

  auto never =
      TgtDaemon::start("127.0.0.1", [&]() -> absl::StatusOr<uint16_t> { return taken->port; });
  ASSERT_FALSE(never.ok());
  EXPECT_THAT(never.status().message(), HasSubstr("does not listen on its portal"));
}

TEST_F(IscsiPoolIntegrationTest, VolumesAreReachableAtTheirUrl) {
  ASSERT_TRUE(pool_->create("web1", 16 * kMiB).ok());
  ASSERT_TRUE(pool_->create("web2", 8 * kMiB).ok());
  EXPECT_EQ(urlOf("web1"), "iscsi://" + tgtd_->portal() + "/" + kPrefix + ":web1/1");

  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("web1", &recorder);
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->sizeBytes(), 16 * kMiB);
  EXPECT_EQ(disk->blockSize(), 512u);
  EXPECT_TRUE(disk->capabilities().discard) << "the pool's LUNs are thin-provisioned";
  std::vector<char> data = pattern(1, 3 * kMiB, 256 << 10);
  ASSERT_EQ(write(*disk, recorder, 3 * kMiB, data), BlockResult::kOk);
  ASSERT_TRUE(disk->drain().ok());
  EXPECT_EQ(fileBytes("web1", 3 * kMiB, data.size()), data);
  EXPECT_EQ(read(*disk, recorder, 3 * kMiB, data.size()), data);

  CompletionRecorder other_recorder;
  std::unique_ptr<IscsiBackend> other = open("web2", &other_recorder);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->sizeBytes(), 8 * kMiB);
  EXPECT_EQ(read(*other, other_recorder, 3 * kMiB, 4096), std::vector<char>(4096, 0));
}

TEST_F(IscsiPoolIntegrationTest, ResizeGrowsTheLunUnderAnOpenSession) {
  ASSERT_TRUE(pool_->create("db", 8 * kMiB).ok());
  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("db", &recorder);
  ASSERT_NE(disk, nullptr);
  std::vector<char> head = pattern(2, 0, 64 << 10);
  ASSERT_EQ(write(*disk, recorder, 0, head), BlockResult::kOk);

  ASSERT_TRUE(pool_->resize("db", 24 * kMiB).ok());
  EXPECT_EQ(pool_->get("db")->size_bytes, 24 * kMiB);
  // The VMM's side of a resize: the backend re-reads the capacity.
  absl::StatusOr<uint64_t> resized = disk->resize(24 * kMiB);
  ASSERT_TRUE(resized.ok()) << resized.status();
  EXPECT_EQ(disk->sizeBytes(), 24 * kMiB);
  std::vector<char> tail = pattern(3, 24 * kMiB - 4096, 4096);
  ASSERT_EQ(write(*disk, recorder, 24 * kMiB - 4096, tail), BlockResult::kOk);
  EXPECT_EQ(read(*disk, recorder, 0, head.size()), head);
  EXPECT_EQ(read(*disk, recorder, 24 * kMiB - 4096, 4096), tail);

  absl::Status shrink = pool_->resize("db", 8 * kMiB);
  EXPECT_TRUE(absl::IsFailedPrecondition(shrink)) << shrink;
}

// Writes stay in flight (16 at a time) while the pool resizes the volume: tgtd lets the LUN go
// only at an instant without commands in flight, and the target is offline while the LUN is
// re-created, so the backend reconnects and sends its commands again instead of failing them.
// No request fails, none hangs, and every region then holds its last write.
TEST_F(IscsiPoolIntegrationTest, ResizeWithWritesInFlight) {
  ASSERT_TRUE(pool_->create("busy", 16 * kMiB).ok());
  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("busy", &recorder);
  ASSERT_NE(disk, nullptr);
  constexpr size_t kRegion = 64 << 10;
  constexpr size_t kRegions = 128;
  constexpr size_t kDepth = 16;
  std::vector<uint64_t> last_ok_seed(kRegions, 0);
  std::vector<std::vector<char>> buffers(kDepth);
  std::atomic<bool> resized{false};
  absl::Status resize_status;
  std::thread resizer;
  size_t failures = 0;
  size_t rounds_after = 0;
  for (size_t round = 0; round < 100000 && rounds_after < 5; ++round) {
    if (round == 3) {
      resizer = std::thread([&] {
        resize_status = pool_->resize("busy", 32 * kMiB);
        resized = true;
      });
    }
    std::vector<BlockRequest> writes;
    std::vector<std::pair<size_t, uint64_t>> targets;
    for (size_t j = 0; j < kDepth; ++j) {
      const size_t region = (round * kDepth + j) % kRegions;
      const uint64_t seed = next_tag_;
      buffers[j] = pattern(seed, region * kRegion, kRegion);
      targets.emplace_back(region, seed);
      writes.push_back(
          request(next_tag_++, BlockOp::kWrite, region * kRegion, {{buffers[j].data(), kRegion}}));
    }
    absl::StatusOr<std::vector<BlockResult>> results =
        recorder.submitAndWait(*disk, std::move(writes));
    ASSERT_TRUE(results.ok()) << results.status() << " (a request hung)";
    for (size_t j = 0; j < results->size(); ++j) {
      if ((*results)[j] == BlockResult::kOk) {
        last_ok_seed[targets[j].first] = targets[j].second;
      } else {
        ++failures;
        last_ok_seed[targets[j].first] = 0;  // unknown content now
      }
    }
    if (resized) ++rounds_after;
  }
  if (resizer.joinable()) resizer.join();
  ASSERT_TRUE(resize_status.ok()) << resize_status;
  EXPECT_EQ(failures, 0u) << "writes failed while the LUN was re-created";
  std::printf("reconnects of the backend during the resize: %llu\n",
              static_cast<unsigned long long>(disk->reconnectCount()));
  ASSERT_TRUE(disk->resize(32 * kMiB).ok());
  for (size_t region = 0; region < kRegions; ++region) {
    if (last_ok_seed[region] == 0) continue;
    ASSERT_EQ(read(*disk, recorder, region * kRegion, kRegion),
              pattern(last_ok_seed[region], region * kRegion, kRegion))
        << "region " << region;
  }
}

TEST_F(IscsiPoolIntegrationTest, CloneIsReachableWithTheSourcesData) {
  ASSERT_TRUE(pool_->create("golden", 8 * kMiB).ok());
  {
    CompletionRecorder recorder;
    std::unique_ptr<IscsiBackend> disk = open("golden", &recorder);
    ASSERT_NE(disk, nullptr);
    std::vector<char> data = pattern(4, 5 * kMiB, 128 << 10);
    ASSERT_EQ(write(*disk, recorder, 5 * kMiB, data), BlockResult::kOk);
    ASSERT_TRUE(disk->drain().ok());
  }
  absl::StatusOr<VolumeInfo> copy = pool_->clone("golden", "web3");
  ASSERT_TRUE(copy.ok()) << copy.status();
  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("web3", &recorder);
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->sizeBytes(), 8 * kMiB);
  EXPECT_EQ(read(*disk, recorder, 5 * kMiB, 128 << 10), pattern(4, 5 * kMiB, 128 << 10));
}

TEST_F(IscsiPoolIntegrationTest, RemoveWaitsUntilNoInitiatorIsLoggedIn) {
  ASSERT_TRUE(pool_->create("web1", 4 * kMiB).ok());
  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("web1", &recorder);
  ASSERT_NE(disk, nullptr);
  absl::Status refused = pool_->remove("web1");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("iqn.2026-01.org.flotilla:vmm (127.0.0.1)"));
  EXPECT_TRUE(pool_->get("web1").ok());

  disk.reset();  // the VM let go of its disk
  ASSERT_NO_FATAL_FAILURE(waitForNoSessions("web1"));
  ASSERT_TRUE(pool_->remove("web1").ok());
  EXPECT_TRUE(absl::IsNotFound(pool_->get("web1").status()));
  absl::StatusOr<std::unique_ptr<BlockBackend>> gone =
      openIscsi("iscsi://" + tgtd_->portal() + "/" + pool_->iqn("web1") + "/1", {});
  EXPECT_FALSE(gone.ok());  // tgtd with no target at all just closes the connection
}

// A storage host whose tgtd restarted (or crashed) has no targets: the VMM's backend keeps
// reconnecting, the agent's reconcile() re-creates the targets, and I/O goes on with the data
// intact. reconcile() also removes a stale target of the pool and never touches others'.
TEST_F(IscsiPoolIntegrationTest, ReconcileAfterTgtdRestart) {
  ASSERT_TRUE(pool_->create("a", 4 * kMiB).ok());
  ASSERT_TRUE(pool_->create("b", 4 * kMiB).ok());
  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("a", &recorder);
  ASSERT_NE(disk, nullptr);
  std::vector<char> before = pattern(5, kMiB, 64 << 10);
  ASSERT_EQ(write(*disk, recorder, kMiB, before), BlockResult::kOk);

  ASSERT_TRUE(tgtd_->restart().ok()) << tgtd_->logTail();
  // Someone else's target and a stale one of the pool (its file is gone).
  ASSERT_TRUE(tgtd_
                  ->tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T",
                            "iqn.2026-01.org.other:keep"})
                  .ok());
  absl::StatusOr<std::string> other_file = dir_.sparseFile("other.raw", kMiB);
  ASSERT_TRUE(other_file.ok());
  ASSERT_TRUE(tgtd_
                  ->tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "2", "-T",
                            pool_->iqn("ghost")})
                  .ok());
  ASSERT_TRUE(tgtd_
                  ->tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "2",
                            "--lun", "1", "-b", *other_file})
                  .ok());

  absl::StatusOr<IscsiReconcileReport> report = pool_->reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->created, ElementsAre("a", "b"));
  EXPECT_THAT(report->removed, ElementsAre("ghost"));
  EXPECT_TRUE(report->failed.empty()) << report->failed.front();

  // The backend reconnected by itself; the data is intact and writes go on.
  EXPECT_EQ(read(*disk, recorder, kMiB, before.size()), before);
  std::vector<char> after = pattern(6, 2 * kMiB, 64 << 10);
  ASSERT_EQ(write(*disk, recorder, 2 * kMiB, after), BlockResult::kOk);
  EXPECT_GE(disk->reconnectCount(), 1u);

  absl::StatusOr<std::string> shown =
      tgtd_->tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "target"});
  ASSERT_TRUE(shown.ok());
  absl::StatusOr<std::vector<TgtTargetState>> targets = parseTgtTargets(*shown);
  ASSERT_TRUE(targets.ok()) << targets.status();
  std::vector<std::string> iqns;
  for (const TgtTargetState& target : *targets) iqns.push_back(target.iqn);
  EXPECT_THAT(iqns, ::testing::UnorderedElementsAre("iqn.2026-01.org.other:keep", pool_->iqn("a"),
                                                    pool_->iqn("b")));

  report = pool_->reconcile();  // nothing left to do
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->created.empty() && report->repaired.empty() && report->removed.empty());
}

TEST_F(IscsiPoolIntegrationTest, ReconcileAfterTgtdCrash) {
  ASSERT_TRUE(pool_->create("a", 4 * kMiB).ok());
  CompletionRecorder recorder;
  std::unique_ptr<IscsiBackend> disk = open("a", &recorder);
  ASSERT_NE(disk, nullptr);
  std::vector<char> before = pattern(7, 0, 64 << 10);
  ASSERT_EQ(write(*disk, recorder, 0, before), BlockResult::kOk);
  ASSERT_TRUE(tgtd_->kill().ok());
  ASSERT_TRUE(tgtd_->startAgain().ok()) << tgtd_->logTail();
  absl::StatusOr<IscsiReconcileReport> report = pool_->reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->created, ElementsAre("a"));
  EXPECT_EQ(read(*disk, recorder, 0, before.size()), before);
}

}  // namespace
}  // namespace flotilla::storage
