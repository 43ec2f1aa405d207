// MigrationSender and MigrationReceiver against fake VMs over a socket pair: a "guest" thread
// keeps writing the source's memory during pre-copy, and the target must end up with exactly
// the source's memory at its pause. Every failure path ends with the guest running in
// exactly one place (or, after kGo with no answer, paused at the source and nowhere else).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "migration/receiver.h"
#include "migration/sender.h"
#include "tests/unit/migration/fake_vms.h"
#include "tests/unit/migration/socket_pair.h"

namespace flotilla::migration {
namespace {

using testing::FakeSourceVm;
using testing::FakeTargetVm;
using testing::firstDifference;
using ::testing::HasSubstr;
using testing::kBytes;
using testing::layoutOf;

struct Outcome {
  absl::Status sent;
  absl::Status received;
  MigrationStats stats;
};

class MigrationEngineTest : public ::testing::Test {
 protected:
  Outcome migrate(SendOptions send_options,
                  const std::function<void(MigrationSender&)>& during = {}) {
    auto [source_side, target_side] = testing::connectionPair();
    target_connection_ = target_side.get();
    ReceiveOptions receive_options{.token = "one-time"};
    if (target_stop_) receive_options.stop_point = target_stop_;
    if (source_stop_) send_options.stop_point = source_stop_;
    MigrationReceiver receiver(target_, std::move(receive_options));
    MigrationSender sender(source_, std::move(send_options));
    Outcome outcome;
    std::thread target([&] { outcome.received = receiver.run(*target_side); });
    std::thread side;
    if (during) side = std::thread([&] { during(sender); });
    outcome.sent = sender.run(*source_side);
    if (side.joinable()) side.join();
    // The source may end before the target noticed: close its end so that the target stops.
    source_side.reset();
    target.join();
    outcome.stats = sender.stats();
    stats_ = receiver.stats();
    sender_running_ = sender.sourceRunning();
    return outcome;
  }

  SendOptions options() {
    SendOptions send;
    send.token = "one-time";
    send.downtime_limit = absl::Milliseconds(50);
    return send;
  }

  // Exactly one running copy of the guest.
  void expectRunsOnlyAtTheSource() {
    EXPECT_TRUE(sender_running_);
    EXPECT_FALSE(source_.paused());
    EXPECT_FALSE(target_.running);
    EXPECT_TRUE(target_.discarded);
  }

  FakeSourceVm source_;
  FakeTargetVm target_;
  Connection* target_connection_ = nullptr;
  // Test hooks at the switchover's points (test_hook.h).
  StopPoint source_stop_;
  StopPoint target_stop_;
  ReceiverStats stats_;
  bool sender_running_ = true;
};

TEST_F(MigrationEngineTest, TargetGetsExactlyTheMemoryOfThePausedSource) {
  // Let the guest write for a while first.
  while (source_.writes() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Outcome outcome = migrate(options());
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  ASSERT_TRUE(outcome.received.ok()) << outcome.received;
  EXPECT_TRUE(source_.paused());
  EXPECT_FALSE(sender_running_);
  EXPECT_TRUE(target_.running);
  EXPECT_FALSE(target_.discarded);
  EXPECT_EQ(target_.state_, "device state");
  ASSERT_EQ(target_.memory_.size(), source_.bytes().size());
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "") << "memory differs";
  EXPECT_EQ(outcome.stats.phase, MigrationPhase::kCompleted);
  EXPECT_GE(outcome.stats.round, 1u);
  EXPECT_GT(outcome.stats.pages_sent, 0u);
  EXPECT_EQ(stats_.state, ReceiverState::kResumed);
  EXPECT_EQ(stats_.pages, outcome.stats.pages_sent);
  EXPECT_EQ(stats_.zero_pages, outcome.stats.zero_pages);
}

TEST_F(MigrationEngineTest, ColdMigrationPausesFirstAndSendsMemoryOnce) {
  while (source_.writes() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  SendOptions send = options();
  send.cold = true;
  Outcome outcome = migrate(send);
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  EXPECT_EQ(outcome.stats.round, 0u) << "no pre-copy rounds";
  EXPECT_EQ(stats_.rounds, 0u);
  EXPECT_TRUE(source_.paused());
  EXPECT_TRUE(target_.running);
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "");
  // Every page went once: the zero pages of the first pass are skipped, none is resent.
  EXPECT_EQ(outcome.stats.zero_pages, 0u);
}

class CompressedMigrationTest : public MigrationEngineTest,
                                public ::testing::WithParamInterface<Compression> {};

TEST_P(CompressedMigrationTest, TargetGetsTheSameMemoryInFewerBytes) {
  while (source_.writes() < 200) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  SendOptions send = options();
  send.compression = GetParam();
  Outcome outcome = migrate(send);
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "");
  EXPECT_GT(outcome.stats.compressed_batches, 0u);
  // The fake guest's pages are a byte or two each in a page of zeroes.
  EXPECT_LT(outcome.stats.bytes_sent, outcome.stats.pages_sent * kPageBytes / 4);
}

INSTANTIATE_TEST_SUITE_P(Codecs, CompressedMigrationTest,
                         ::testing::Values(Compression::kZstd, Compression::kLz4),
                         [](const ::testing::TestParamInfo<Compression>& param) {
                           return std::string(compressionName(param.param));
                         });

// A sender that compresses what the target never agreed to: the target refuses the batch.
TEST(MigrationReceiverTest, RefusesCompressionThatWasNotNegotiated) {
  auto [sender, receiver_side] = testing::connectionPair();
  FakeTargetVm target;
  MigrationReceiver receiver(target, {.token = "one-time"});
  absl::Status received;
  std::thread run([&] { received = receiver.run(*receiver_side); });
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_token("one-time");  // no capabilities
  ASSERT_TRUE(sender->send(FrameType::kHello, hello).ok());
  ASSERT_TRUE(sender->expect(FrameType::kHelloReply).ok());
  ASSERT_TRUE(sender->skipPayload().ok());
  ASSERT_TRUE(sender->send(FrameType::kLayout, layoutOf(kBytes)).ok());
  ASSERT_TRUE(sender->expect(FrameType::kLayoutAccepted).ok());
  ASSERT_TRUE(sender->verify().ok());
  Codec codec(Compression::kZstd);
  std::vector<uint8_t> page(kPageBytes, 0x5a);
  std::vector<uint8_t> packed;
  ASSERT_TRUE(codec.compress(page, packed));
  const uint32_t head[2] = {1, static_cast<uint32_t>(packed.size())};
  const uint64_t entry = 0;
  const iovec pieces[] = {{const_cast<uint32_t*>(head), sizeof(head)},
                          {const_cast<uint64_t*>(&entry), sizeof(entry)},
                          {packed.data(), packed.size()}};
  ASSERT_TRUE(sender->send(FrameType::kPages, pieces, kFlagZstd).ok());
  run.join();
  EXPECT_EQ(received.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(received.message(), HasSubstr("did not negotiate"));
  EXPECT_TRUE(target.discarded);
}

TEST_F(MigrationEngineTest, WrongTokenIsRefusedAndTheGuestRunsOn) {
  SendOptions send = options();
  send.token = "guessed";
  Outcome outcome = migrate(send);
  EXPECT_EQ(outcome.received.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(outcome.sent.message(), HasSubstr("wrong migration token"));
  expectRunsOnlyAtTheSource();
}

TEST_F(MigrationEngineTest, LayoutTheTargetCannotTakeFailsWithItsReason) {
  target_.expected_bytes = 2 * kBytes;
  Outcome outcome = migrate(options());
  EXPECT_FALSE(outcome.sent.ok());
  EXPECT_THAT(outcome.sent.message(), HasSubstr("started for"));
  expectRunsOnlyAtTheSource();
}

TEST_F(MigrationEngineTest, LoadFailureOnTheTargetResumesTheSource) {
  target_.load_error = absl::InternalError("vCPU state refused");
  Outcome outcome = migrate(options());
  EXPECT_THAT(outcome.sent.message(), HasSubstr("vCPU state refused"));
  EXPECT_EQ(outcome.stats.phase, MigrationPhase::kFailed);
  EXPECT_EQ(source_.resumes(), 1);
  expectRunsOnlyAtTheSource();
}

TEST_F(MigrationEngineTest, NotConvergingCancelsUnlessForced) {
  SendOptions send = options();
  send.downtime_limit = absl::Microseconds(1);  // below the fixed cost: never fits
  send.max_rounds = 3;
  Outcome outcome = migrate(send);
  EXPECT_EQ(outcome.sent.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(outcome.sent.message(), HasSubstr("does not converge"));
  EXPECT_EQ(outcome.stats.round, 3u);
  expectRunsOnlyAtTheSource();
  EXPECT_EQ(source_.resumes(), 0) << "the source was never paused";
}

TEST_F(MigrationEngineTest, ForcedSwitchoverCompletesWithALongerPause) {
  SendOptions send = options();
  send.downtime_limit = absl::Microseconds(1);
  send.max_rounds = 2;
  send.force_switchover = true;
  Outcome outcome = migrate(send);
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "");
}

TEST_F(MigrationEngineTest, CancelDuringPrecopyLeavesTheGuestAtTheSource) {
  SendOptions send = options();
  send.bandwidth_limit = 4 << 20;  // 4 MiB/s: the first round alone takes ~0.3 s
  Outcome outcome = migrate(send, [](MigrationSender& sender) {
    while (sender.stats().phase != MigrationPhase::kPrecopy) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    sender.cancel();
  });
  EXPECT_EQ(outcome.sent.code(), absl::StatusCode::kCancelled);
  // The target is told, in a cancel frame (the connection was interrupted, not closed).
  EXPECT_EQ(outcome.received.code(), absl::StatusCode::kCancelled) << outcome.received;
  EXPECT_THAT(outcome.received.message(), HasSubstr("cancelled the migration"));
  expectRunsOnlyAtTheSource();
}

TEST_F(MigrationEngineTest, ConnectionLostAfterGoKeepsTheSourcePaused) {
  // The target runs the guest, then its connection breaks before kResumed reaches the source.
  target_.on_resume = [this] { target_connection_->cancel(); };
  Outcome outcome = migrate(options());
  EXPECT_FALSE(outcome.sent.ok());
  EXPECT_EQ(outcome.stats.phase, MigrationPhase::kUnknown);
  EXPECT_FALSE(sender_running_);
  EXPECT_TRUE(source_.paused()) << "the source must not run a second copy";
  EXPECT_EQ(source_.resumes(), 0);
  EXPECT_TRUE(target_.running);
}

// The target lost at each point of the switchover after `complete` (its connection cut where
// flotilla-vmm's test hook would stop it): before `go` the source resumes; once `go` left, it
// stays paused.
TEST_F(MigrationEngineTest, TargetLostBeforeReadyResumesTheSource) {
  target_stop_ = [this](std::string_view point) {
    if (point == "target-loading") target_connection_->cancel();
  };
  Outcome outcome = migrate(options());
  EXPECT_FALSE(outcome.sent.ok());
  EXPECT_EQ(outcome.stats.phase, MigrationPhase::kFailed);
  EXPECT_EQ(source_.resumes(), 1);
  expectRunsOnlyAtTheSource();
}

TEST_F(MigrationEngineTest, TargetLostBetweenReadyAndGoResumesTheSource) {
  // The source got `ready`; before it says `go`, the target's end closes: it checks, and
  // never hands the guest to a target that is gone.
  source_stop_ = [this](std::string_view point) {
    if (point == "source-ready") target_connection_->cancel();
  };
  Outcome outcome = migrate(options());
  EXPECT_FALSE(outcome.sent.ok());
  EXPECT_EQ(outcome.stats.phase, MigrationPhase::kFailed) << outcome.sent;
  EXPECT_EQ(source_.resumes(), 1);
  expectRunsOnlyAtTheSource();
}

TEST_F(MigrationEngineTest, TargetLostAfterGoKeepsTheSourcePausedInPhaseUnknown) {
  target_stop_ = [this](std::string_view point) {
    if (point == "target-go") target_connection_->cancel();
  };
  Outcome outcome = migrate(options());
  EXPECT_FALSE(outcome.sent.ok());
  EXPECT_EQ(outcome.stats.phase, MigrationPhase::kUnknown);
  EXPECT_FALSE(outcome.stats.error.empty());
  EXPECT_FALSE(sender_running_);
  EXPECT_TRUE(source_.paused()) << "the source must not run a second copy";
  EXPECT_EQ(source_.resumes(), 0);
}

TEST_F(MigrationEngineTest, AutoConvergeThrottlesAGuestThatOutrunsTheLink) {
  SendOptions send = options();
  send.bandwidth_limit = 2 << 20;  // 2 MiB/s against a guest dirtying ~20 MB/s of pages
  send.downtime_limit = absl::Milliseconds(5);
  send.max_rounds = 8;
  send.force_switchover = true;
  send.auto_converge = true;
  Outcome outcome = migrate(send);
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  std::vector<int> throttles = source_.throttles();
  ASSERT_FALSE(throttles.empty());
  EXPECT_GT(*std::max_element(throttles.begin(), throttles.end()), 0);
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "");
}

}  // namespace
}  // namespace flotilla::migration
