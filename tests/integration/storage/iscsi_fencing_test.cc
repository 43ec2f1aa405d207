// Tests of fencing by generation (storage/iscsi_fencing.h, docs/storage.md "Fencing by
// generation") against a real tgtd started by each test: a newer generation takes the LUN over
// and the older one's writes (and the first command of any kind after the takeover) fail for
// good; an older generation is refused at open; a session that breaks after a takeover finds
// the newer key when it logs in again and is fenced; two openers of one generation (a live
// migration) both write; the reservation is taken again after the target restarts; read-only
// disks and openers without a generation take no reservation.
#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
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
using flotilla::testing::TgtTarget;
using testing::CompletionRecorder;
using ::testing::HasSubstr;

constexpr uint64_t kLunBytes = 16 << 20;
constexpr size_t kBlock = 4096;

// A backend and the sink of its completions.
struct Opened {
  std::unique_ptr<CompletionRecorder> recorder = std::make_unique<CompletionRecorder>();
  std::unique_ptr<IscsiBackend> backend;
  uint64_t next_tag = 1;

  BlockResult write(uint64_t offset, std::vector<char>& data) {
    return runOne(BlockOp::kWrite, offset, {{data.data(), data.size()}});
  }
  BlockResult read(uint64_t offset, std::vector<char>& data) {
    return runOne(BlockOp::kRead, offset, {{data.data(), data.size()}});
  }
  BlockResult runOne(BlockOp op, uint64_t offset, std::vector<iovec> iov) {
    std::vector<BlockRequest> one(1);
    one[0].tag = next_tag++;
    one[0].op = op;
    one[0].offset = offset;
    one[0].iov = std::move(iov);
    auto results = recorder->submitAndWait(*backend, std::move(one));
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? results->front() : BlockResult::kIoError;
  }
};

std::vector<char> filled(char byte) {
  return std::vector<char>(kBlock, byte);
}

class IscsiFencingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto disk = dir_.sparseFile("lun.img", kLunBytes);
    ASSERT_TRUE(disk.ok()) << disk.status();
    disk_ = *disk;
    absl::StatusOr<std::unique_ptr<TgtTarget>> target = TgtTarget::start(disk_);
    ASSERT_TRUE(target.ok()) << target.status();
    tgt_ = std::move(*target);
  }

  absl::StatusOr<std::unique_ptr<IscsiBackend>> tryOpen(std::optional<uint64_t> generation,
                                                        bool read_only = false) {
    IscsiOptions options;
    options.generation = generation;
    options.read_only = read_only;
    return IscsiBackend::open(tgt_->url(), options);
  }

  // Opens with `generation` (none: no fencing); a test failure when that fails.
  Opened open(std::optional<uint64_t> generation, bool read_only = false) {
    Opened opened;
    absl::StatusOr<std::unique_ptr<IscsiBackend>> backend = tryOpen(generation, read_only);
    EXPECT_TRUE(backend.ok()) << backend.status() << "\ntgtd's output:\n" << tgt_->logTail();
    if (backend.ok()) {
      opened.backend = std::move(*backend);
      opened.backend->setCompletionSink(opened.recorder.get());
    }
    return opened;
  }

  std::vector<char> lunFileBytes(uint64_t offset, size_t length) {
    std::vector<char> data(length);
    UniqueFd fd(::open(disk_.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::pread(fd.get(), data.data(), length, static_cast<off_t>(offset)),
              static_cast<ssize_t>(length));
    return data;
  }

  flotilla::testing::TempDir dir_;
  std::string disk_;
  std::unique_ptr<TgtTarget> tgt_;
};

TEST_F(IscsiFencingTest, ANewerGenerationFencesTheOlderOneOffTheLun) {
  Opened a = open(1);
  ASSERT_NE(a.backend, nullptr);
  std::vector<char> first = filled('a');
  ASSERT_EQ(a.write(0, first), BlockResult::kOk);

  // The VM restarted elsewhere as generation 2 while the first copy still runs.
  Opened b = open(2);
  ASSERT_NE(b.backend, nullptr);

  std::vector<char> late = filled('A');
  EXPECT_EQ(a.write(0, late), BlockResult::kIoError);
  EXPECT_TRUE(a.backend->fenced());
  // For good: the next write too, and every other request, without reaching the LUN.
  EXPECT_EQ(a.write(kBlock, late), BlockResult::kIoError);
  std::vector<char> back(kBlock);
  EXPECT_EQ(a.read(0, back), BlockResult::kIoError);
  absl::Status drained = a.backend->drain();
  EXPECT_EQ(drained.code(), absl::StatusCode::kFailedPrecondition) << drained;
  EXPECT_THAT(drained.message(),
              HasSubstr("fenced: LUN " + tgt_->url() + " was taken over by a newer generation"));

  std::vector<char> second = filled('b');
  ASSERT_EQ(b.write(0, second), BlockResult::kOk);
  ASSERT_EQ(b.write(kBlock, second), BlockResult::kOk);
  ASSERT_TRUE(b.backend->drain().ok());
  EXPECT_FALSE(b.backend->fenced());
  EXPECT_EQ(lunFileBytes(0, kBlock), second);
  EXPECT_EQ(lunFileBytes(kBlock, kBlock), second);
}

TEST_F(IscsiFencingTest, TheFirstCommandAfterATakeoverFailsEvenARead) {
  Opened a = open(1);
  ASSERT_NE(a.backend, nullptr);
  Opened b = open(2);
  ASSERT_NE(b.backend, nullptr);
  // The preempted session's first command gets the UNIT ATTENTION of the takeover: that
  // fences it, although a read alone would not conflict with the reservation.
  std::vector<char> back(kBlock);
  EXPECT_EQ(a.read(0, back), BlockResult::kIoError);
  EXPECT_TRUE(a.backend->fenced());
  std::vector<char> data = filled('x');
  EXPECT_EQ(a.write(0, data), BlockResult::kIoError);
}

TEST_F(IscsiFencingTest, AnOlderGenerationIsRefusedOnceANewerOneHoldsTheLun) {
  Opened a = open(1);
  ASSERT_NE(a.backend, nullptr);
  Opened b = open(2);
  ASSERT_NE(b.backend, nullptr);
  a.backend.reset();  // the old copy's VMM exited; its key stays registered until preempted
  b.backend.reset();  // and the new one stopped: the LUN still belongs to generation 2

  absl::StatusOr<std::unique_ptr<IscsiBackend>> stale = tryOpen(1);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  EXPECT_THAT(stale.status().message(), HasSubstr(tgt_->url()));
  EXPECT_THAT(stale.status().message(), HasSubstr("this VMM has generation 1"));
  EXPECT_THAT(stale.status().message(),
              HasSubstr("restarted elsewhere as generation 2; this copy must not run"));

  // Generation 2 again (StartVm after a stop) and a newer one both open.
  Opened again = open(2);
  ASSERT_NE(again.backend, nullptr);
  std::vector<char> data = filled('c');
  EXPECT_EQ(again.write(0, data), BlockResult::kOk);
  Opened newer = open(3);
  ASSERT_NE(newer.backend, nullptr);
  EXPECT_EQ(newer.write(0, data), BlockResult::kOk);
  EXPECT_EQ(again.write(0, data), BlockResult::kIoError);
}

TEST_F(IscsiFencingTest, TwoOpenersOfOneGenerationBothWrite) {
  // A live migration: the target VMM opens the LUN while the source still runs.
  Opened source = open(4);
  ASSERT_NE(source.backend, nullptr);
  Opened target = open(4);
  ASSERT_NE(target.backend, nullptr);
  std::vector<char> from_source = filled('s');
  std::vector<char> from_target = filled('t');
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(source.write(0, from_source), BlockResult::kOk);
    EXPECT_EQ(target.write(kBlock, from_target), BlockResult::kOk);
  }
  EXPECT_FALSE(source.backend->fenced());
  EXPECT_FALSE(target.backend->fenced());
  EXPECT_EQ(lunFileBytes(0, kBlock), from_source);
  EXPECT_EQ(lunFileBytes(kBlock, kBlock), from_target);

  // The source exits after the switch-over; the target keeps writing.
  source.backend.reset();
  std::vector<char> later = filled('u');
  EXPECT_EQ(target.write(0, later), BlockResult::kOk);

  // An HA restart of that generation fences both sessions of it.
  Opened restarted = open(5);
  ASSERT_NE(restarted.backend, nullptr);
  EXPECT_EQ(target.write(0, later), BlockResult::kIoError);
  EXPECT_EQ(restarted.write(0, later), BlockResult::kOk);
}

TEST_F(IscsiFencingTest, WritersWithoutTheReservationAreRefusedWithoutRetries) {
  Opened holder = open(0);
  ASSERT_NE(holder.backend, nullptr);
  Opened plain = open(std::nullopt);  // an opener without a generation takes no reservation
  ASSERT_NE(plain.backend, nullptr);
  std::vector<char> data = filled('p');
  EXPECT_EQ(plain.write(0, data), BlockResult::kIoError);
  EXPECT_FALSE(plain.backend->fenced());  // not fenced: it holds no generation to lose
  std::vector<char> back(kBlock);
  EXPECT_EQ(plain.read(0, back), BlockResult::kOk);  // Write Exclusive: reads are for anyone
  EXPECT_EQ(holder.write(0, data), BlockResult::kOk);
}

TEST_F(IscsiFencingTest, TheReservationIsTakenAgainAfterTheTargetRestarts) {
  // tgtd keeps no reservation across a restart (no APTPL): each reconnect takes it again.
  Opened holder = open(7);
  ASSERT_NE(holder.backend, nullptr);
  std::vector<char> data = filled('r');
  ASSERT_EQ(holder.write(0, data), BlockResult::kOk);
  ASSERT_TRUE(tgt_->restart().ok()) << tgt_->logTail();
  ASSERT_EQ(holder.write(0, data), BlockResult::kOk);  // waits for the reconnect
  EXPECT_EQ(holder.backend->reconnectCount(), 1u);

  Opened plain = open(std::nullopt);
  ASSERT_NE(plain.backend, nullptr);
  EXPECT_EQ(plain.write(0, data), BlockResult::kIoError);
  absl::StatusOr<std::unique_ptr<IscsiBackend>> stale = tryOpen(6);
  ASSERT_FALSE(stale.ok());
  EXPECT_THAT(stale.status().message(), HasSubstr("generation 7"));
}

TEST_F(IscsiFencingTest, AFencedBackendDoesNotReconnect) {
  Opened a = open(1);
  ASSERT_NE(a.backend, nullptr);
  Opened b = open(2);
  ASSERT_NE(b.backend, nullptr);
  std::vector<char> data = filled('f');
  ASSERT_EQ(a.write(0, data), BlockResult::kIoError);
  ASSERT_TRUE(a.backend->fenced());
  ASSERT_TRUE(tgt_->restart().ok()) << tgt_->logTail();  // the new target knows no reservation
  ASSERT_EQ(b.write(0, data), BlockResult::kOk);         // generation 2 takes it again
  EXPECT_EQ(a.write(0, data), BlockResult::kIoError);
  EXPECT_EQ(a.backend->reconnectCount(), 0u);
}

TEST_F(IscsiFencingTest, ReadOnlyDisksTakeNoReservation) {
  Opened holder = open(2);
  ASSERT_NE(holder.backend, nullptr);
  // A read-only disk never writes, so an older generation of it (or another VM sharing it)
  // opens and reads.
  Opened reader = open(1, /*read_only=*/true);
  ASSERT_NE(reader.backend, nullptr);
  std::vector<char> back(kBlock);
  EXPECT_EQ(reader.read(0, back), BlockResult::kOk);
  std::vector<char> data = filled('w');
  EXPECT_EQ(holder.write(0, data), BlockResult::kOk);
}

// The old copy's session breaks after the takeover, before any of its commands saw the UNIT
// ATTENTION of it (that belonged to the old session): logging in again, it finds the newer key.
TEST(IscsiFencingReconnectTest, ASessionLostAfterATakeoverIsFencedWhenItLogsInAgain) {
  flotilla::testing::TempDir dir;
  auto disk = dir.sparseFile("lun.img", kLunBytes);
  ASSERT_TRUE(disk.ok()) << disk.status();
  absl::StatusOr<std::unique_ptr<TgtDaemon>> tgtd = TgtDaemon::start();
  ASSERT_TRUE(tgtd.ok()) << tgtd.status();
  const std::string iqn = "iqn.2026-01.org.flotilla:fencing";
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", iqn},
           {"--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
            "-b", *disk},
           {"--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"}}) {
    absl::StatusOr<std::string> done = (*tgtd)->tgtadm(args);
    ASSERT_TRUE(done.ok()) << done.status();
  }
  const std::string url = fmt::format("iscsi://{}/{}/1", (*tgtd)->portal(), iqn);
  const std::string old_initiator = "iqn.2026-01.org.flotilla:old-host";

  IscsiOptions old_options;
  old_options.generation = 1;
  old_options.initiator_name = old_initiator;
  Opened old_copy;
  absl::StatusOr<std::unique_ptr<IscsiBackend>> opened = IscsiBackend::open(url, old_options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  old_copy.backend = std::move(*opened);
  old_copy.backend->setCompletionSink(old_copy.recorder.get());
  std::vector<char> data = filled('o');
  ASSERT_EQ(old_copy.write(0, data), BlockResult::kOk);

  IscsiOptions new_options;
  new_options.generation = 2;
  Opened new_copy;
  opened = IscsiBackend::open(url, new_options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  new_copy.backend = std::move(*opened);
  new_copy.backend->setCompletionSink(new_copy.recorder.get());

  // Close the old copy's connection on the target (its session: `tgtadm --op show --mode conn`
  // lists "Session: N" before the initiator's name).
  absl::StatusOr<std::string> connections =
      (*tgtd)->tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "conn", "--tid", "1"});
  ASSERT_TRUE(connections.ok()) << connections.status();
  std::string session;
  std::string last_session;
  for (absl::string_view line : absl::StrSplit(*connections, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "Session: ")) last_session = std::string(line);
    if (line == "Initiator: " + old_initiator) session = last_session;
  }
  ASSERT_FALSE(session.empty()) << *connections;
  absl::StatusOr<std::string> closed =
      (*tgtd)->tgtadm({"--lld", "iscsi", "--op", "delete", "--mode", "conn", "--tid", "1", "--sid",
                       session, "--cid", "0"});
  ASSERT_TRUE(closed.ok()) << closed.status();

  // The backend notices the loss, logs in again, reads the keys and gives up on the LUN.
  for (int i = 0; i < 300 && !old_copy.backend->fenced(); ++i) {
    systemClock().sleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(old_copy.backend->fenced());
  EXPECT_EQ(old_copy.write(0, data), BlockResult::kIoError);
  EXPECT_EQ(old_copy.backend->reconnectCount(), 0u);
  absl::Status drained = old_copy.backend->drain();
  EXPECT_THAT(drained.message(), HasSubstr("was taken over by a newer generation")) << drained;

  std::vector<char> newer = filled('n');
  EXPECT_EQ(new_copy.write(0, newer), BlockResult::kOk);
  ASSERT_TRUE(new_copy.backend->drain().ok());
  old_copy.backend.reset();
  new_copy.backend.reset();
  EXPECT_TRUE((*tgtd)->stop().ok());
}

TEST_F(IscsiFencingTest, AGenerationTooLargeForAKeyIsRefused) {
  absl::StatusOr<std::unique_ptr<IscsiBackend>> backend = tryOpen(uint64_t{1} << 32);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(backend.status().message(), HasSubstr(tgt_->url()));
}

}  // namespace
}  // namespace flotilla::storage
