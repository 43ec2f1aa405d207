// Migrations over several TCP streams (docs/migration.md, "Several streams"), sender and
// receiver against the fake VMs over socket pairs: the target ends with exactly the paused
// source's memory whatever the number of streams while the guest writes throughout, a stream
// broken mid-round fails the migration with the guest running at the source, a connection
// that is not one of the migration's streams is refused without harm, and a peer without the
// capability gets one stream.
#include <deque>
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
using testing::kPages;

// The target's listener, in memory: the sender's connector puts one end of a socket pair in,
// the receiver takes it out. `intruders` go in before the stream they precede.
class PairAcceptor : public StreamAcceptor {
 public:
  absl::StatusOr<std::unique_ptr<Connection>> accept(absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      return absl::DeadlineExceededError("no connection");
    }
    std::unique_ptr<Connection> next = std::move(queue_.front());
    queue_.pop_front();
    return next;
  }
  void close() override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  void push(std::unique_ptr<Connection> connection) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(connection));
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  absl::Mutex mu_;
  std::deque<std::unique_ptr<Connection>> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

struct Outcome {
  absl::Status sent;
  absl::Status received;
  MigrationStats stats;
  ReceiverStats target;
  bool source_running = true;
};

class MigrationStreamsTest : public ::testing::Test {
 protected:
  // A guest writing 512 pages (8 bitmap words): its dirty pages spread over the streams.
  MigrationStreamsTest() : source_(512, absl::Microseconds(50)) {}

  SendOptions options(uint32_t streams) {
    SendOptions send;
    send.token = "one-time";
    send.downtime_limit = absl::Milliseconds(50);
    send.streams = streams;
    return send;
  }

  // Runs a migration; `target_takes_streams` false: a target without an acceptor (as one
  // that does not know the capability). `during` runs on its own thread meanwhile.
  Outcome migrate(SendOptions send, bool target_takes_streams = true,
                  const std::function<void(MigrationSender&)>& during = {}) {
    auto [source_side, target_side] = testing::connectionPair();
    MigrationReceiver receiver(target_, {.token = "one-time"});
    MigrationSender sender(source_, std::move(send));
    StreamConnector connect =
        [this](uint32_t index) -> absl::StatusOr<std::unique_ptr<Connection>> {
      if (before_stream_) before_stream_(index);
      auto [source_end, target_end] = testing::connectionPair();
      {
        absl::MutexLock lock(&mu_);
        target_streams_.push_back(target_end.get());
      }
      acceptor_.push(std::move(target_end));
      return std::move(source_end);
    };
    Outcome outcome;
    std::thread target([&] {
      outcome.received = receiver.run(*target_side, target_takes_streams ? &acceptor_ : nullptr);
    });
    std::thread side;
    if (during) side = std::thread([&] { during(sender); });
    outcome.sent = sender.run(*source_side, connect);
    if (side.joinable()) side.join();
    source_side.reset();
    target.join();
    outcome.stats = sender.stats();
    outcome.target = receiver.stats();
    outcome.source_running = sender.sourceRunning();
    return outcome;
  }

  void expectMovedExactly(const Outcome& outcome, uint32_t streams) {
    ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
    ASSERT_TRUE(outcome.received.ok()) << outcome.received;
    EXPECT_EQ(outcome.stats.streams, streams);
    EXPECT_EQ(outcome.target.streams, streams);
    EXPECT_TRUE(source_.paused());
    EXPECT_FALSE(outcome.source_running);
    EXPECT_TRUE(target_.running);
    EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "") << "memory differs";
    EXPECT_EQ(outcome.target.pages, outcome.stats.pages_sent);
    EXPECT_EQ(outcome.target.zero_pages, outcome.stats.zero_pages);
    EXPECT_EQ(outcome.target.rounds, outcome.stats.round - 1);
    EXPECT_EQ(outcome.target.bytes_received, outcome.stats.bytes_sent);
  }

  void expectRunsOnlyAtTheSource(const Outcome& outcome) {
    EXPECT_FALSE(outcome.sent.ok());
    EXPECT_FALSE(outcome.received.ok());
    EXPECT_EQ(outcome.stats.phase, MigrationPhase::kFailed);
    EXPECT_TRUE(outcome.source_running);
    EXPECT_FALSE(source_.paused());
    EXPECT_FALSE(target_.running);
    EXPECT_TRUE(target_.discarded);
  }

  void waitForWrites(uint64_t writes) {
    while (source_.writes() < writes) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  FakeSourceVm source_;
  FakeTargetVm target_;
  PairAcceptor acceptor_;
  std::function<void(uint32_t index)> before_stream_;
  absl::Mutex mu_;
  std::vector<Connection*> target_streams_ ABSL_GUARDED_BY(mu_);
};

class MigrationStreamCountTest : public MigrationStreamsTest,
                                 public ::testing::WithParamInterface<uint32_t> {};

TEST_P(MigrationStreamCountTest, TargetGetsExactlyTheMemoryOfThePausedSource) {
  waitForWrites(1000);
  Outcome outcome = migrate(options(GetParam()));
  expectMovedExactly(outcome, GetParam());
  EXPECT_GE(outcome.stats.round, 1u);
  EXPECT_TRUE(acceptor_.closed()) << "the listener is no longer needed";
}

TEST_P(MigrationStreamCountTest, CompressedStreamsGiveTheSameMemory) {
  waitForWrites(1000);
  SendOptions send = options(GetParam());
  send.compression = Compression::kLz4;
  Outcome outcome = migrate(send);
  expectMovedExactly(outcome, GetParam());
  EXPECT_GT(outcome.stats.compressed_batches, 0u);
}

TEST_P(MigrationStreamCountTest, ColdMigrationOverStreams) {
  waitForWrites(1000);
  SendOptions send = options(GetParam());
  send.cold = true;
  Outcome outcome = migrate(send);
  ASSERT_TRUE(outcome.sent.ok()) << outcome.sent;
  EXPECT_EQ(outcome.stats.streams, GetParam());
  EXPECT_EQ(firstDifference(target_.memory_, source_.bytes()), "");
}

INSTANTIATE_TEST_SUITE_P(Streams, MigrationStreamCountTest, ::testing::Values(1u, 2u, 4u),
                         [](const ::testing::TestParamInfo<uint32_t>& param) {
                           return fmt::format("streams{}", param.param);
                         });

TEST_F(MigrationStreamsTest, ManyRoundsKeepEveryPageInOrder) {
  // A downtime limit that pre-copy cannot meet: every round re-sends pages the guest keeps
  // writing, over 4 streams, and the forced switchover must still leave the exact memory.
  waitForWrites(1000);
  SendOptions send = options(4);
  send.downtime_limit = absl::Microseconds(1);
  send.max_rounds = 12;
  send.force_switchover = true;
  Outcome outcome = migrate(send);
  expectMovedExactly(outcome, 4);
  EXPECT_EQ(outcome.stats.round, 12u);
}

TEST_F(MigrationStreamsTest, StreamBrokenMidRoundFailsTheMigrationAndTheGuestRunsOn) {
  SendOptions send = options(4);
  send.bandwidth_limit = 4 << 20;  // 4 MiB/s: the first round takes ~0.3 s
  Outcome outcome = migrate(send, true, [this](MigrationSender& sender) {
    while (sender.stats().phase != MigrationPhase::kPrecopy) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    absl::MutexLock lock(&mu_);
    ASSERT_EQ(target_streams_.size(), 3u);
    target_streams_[1]->cancel();  // the connection of stream 2 breaks
  });
  expectRunsOnlyAtTheSource(outcome);
  EXPECT_EQ(outcome.stats.round, 0u) << "it broke in round 0";
  // Whichever end noticed first, the failure names the stream.
  EXPECT_THAT(outcome.received.message(), HasSubstr("data stream 2"));
}

TEST_F(MigrationStreamsTest, StreamThatCannotConnectFailsBeforeAnyMemoryMoves) {
  SendOptions send = options(3);
  Outcome outcome;
  {
    auto [source_side, target_side] = testing::connectionPair();
    MigrationReceiver receiver(target_, {.token = "one-time"});
    MigrationSender sender(source_, send);
    std::thread target([&] { outcome.received = receiver.run(*target_side, &acceptor_); });
    outcome.sent = sender.run(*source_side, [](uint32_t index) {
      return absl::StatusOr<std::unique_ptr<Connection>>(
          absl::UnavailableError(fmt::format("stream {}: connection refused", index)));
    });
    source_side.reset();
    target.join();
    outcome.stats = sender.stats();
    outcome.source_running = sender.sourceRunning();
  }
  EXPECT_THAT(outcome.sent.message(), HasSubstr("opening data stream 1 of 2"));
  EXPECT_EQ(outcome.received.code(), absl::StatusCode::kAborted) << outcome.received;
  EXPECT_THAT(outcome.received.message(), HasSubstr("opening data stream 1 of 2"));
  EXPECT_EQ(outcome.stats.pages_sent, 0u);
  expectRunsOnlyAtTheSource(outcome);
}

// Sends a data stream's hello with `token` and `session` on a new connection to the
// target; returns the target's answer (an error for an intruder).
std::unique_ptr<Connection> intruder(const std::string& token, const std::string& session,
                                     uint32_t index, std::unique_ptr<Connection>& target_end) {
  auto [mine, theirs] = testing::connectionPair(absl::Seconds(5));
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_capabilities(kCapabilityStreams);
  hello.set_token(token);
  hello.set_session(session);
  hello.set_stream_index(index);
  hello.set_streams(4);
  EXPECT_TRUE(mine->send(FrameType::kHello, hello).ok());
  target_end = std::move(theirs);
  return std::move(mine);
}

TEST_F(MigrationStreamsTest, ForeignConnectionCannotJoinAndTheMigrationGoesOn) {
  waitForWrites(500);
  std::vector<std::unique_ptr<Connection>> intruders;
  before_stream_ = [&](uint32_t index) {
    std::unique_ptr<Connection> target_end;
    if (index == 1) {
      // A port scanner's guess: no token, no session.
      intruders.push_back(intruder("", "", 1, target_end));
    } else if (index == 2) {
      // Someone who learned the token but not the session the main connection was given.
      intruders.push_back(intruder("one-time", "0123456789abcdef", 2, target_end));
    } else {
      return;
    }
    acceptor_.push(std::move(target_end));
  };
  Outcome outcome = migrate(options(4));
  expectMovedExactly(outcome, 4);
  ASSERT_EQ(intruders.size(), 2u);
  for (auto& refused : intruders) {
    auto answer = refused->expect(FrameType::kHelloReply);
    EXPECT_EQ(answer.status().code(), absl::StatusCode::kAborted) << answer.status();
    EXPECT_THAT(answer.status().message(), HasSubstr("not a stream of this migration"));
  }
}

TEST_F(MigrationStreamsTest, TargetWithoutTheCapabilityGetsOneStream) {
  waitForWrites(500);
  Outcome outcome = migrate(options(4), /*target_takes_streams=*/false);
  expectMovedExactly(outcome, 1);
  absl::MutexLock lock(&mu_);
  EXPECT_TRUE(target_streams_.empty()) << "no data stream was opened";
}

TEST_F(MigrationStreamsTest, SourceAskingForOneStreamSendsNoStreamFrames) {
  waitForWrites(500);
  Outcome outcome = migrate(options(1));
  expectMovedExactly(outcome, 1);
  absl::MutexLock lock(&mu_);
  EXPECT_TRUE(target_streams_.empty());
}

TEST_F(MigrationStreamsTest, TooManyStreamsIsRefusedUpFront) {
  Outcome outcome = migrate(options(kMaxStreams + 1));
  EXPECT_EQ(outcome.sent.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(outcome.sent.message(), HasSubstr("1 to 8 streams"));
  EXPECT_TRUE(outcome.source_running);
  EXPECT_FALSE(target_.running);
}

// A data stream that carries a frame only the main connection may carry fails the migration,
// and the error names the stream.
TEST(MigrationReceiverStreamsTest, DataStreamFrameOutOfPlaceFailsTheMigration) {
  auto [sender, receiver_side] = testing::connectionPair();
  FakeTargetVm target;
  PairAcceptor acceptor;
  MigrationReceiver receiver(target, {.token = "one-time"});
  absl::Status received;
  std::thread run([&] { received = receiver.run(*receiver_side, &acceptor); });
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_capabilities(kCapabilityStreams);
  hello.set_streams(2);
  hello.set_token("one-time");
  ASSERT_TRUE(sender->send(FrameType::kHello, hello).ok());
  auto header = sender->expect(FrameType::kHelloReply);
  ASSERT_TRUE(header.ok()) << header.status();
  flotilla::v1::MigrationHelloReply reply;
  ASSERT_TRUE(sender->readMessage(*header, reply).ok());
  EXPECT_EQ(reply.streams(), 2u);
  EXPECT_EQ(reply.session().size(), 16u);
  auto [stream, target_end] = testing::connectionPair();
  acceptor.push(std::move(target_end));
  hello.set_session(reply.session());
  hello.set_stream_index(1);
  ASSERT_TRUE(stream->send(FrameType::kHello, hello).ok());
  ASSERT_TRUE(stream->expect(FrameType::kHelloReply).ok());
  ASSERT_TRUE(stream->skipPayload().ok());
  ASSERT_TRUE(sender->send(FrameType::kLayout, testing::layoutOf(testing::kBytes)).ok());
  ASSERT_TRUE(sender->expect(FrameType::kLayoutAccepted).ok());
  ASSERT_TRUE(sender->verify().ok());
  // On the data stream: a frame only the main connection carries.
  ASSERT_TRUE(stream->sendEmpty(FrameType::kGo).ok());
  run.join();
  EXPECT_EQ(received.code(), absl::StatusCode::kDataLoss) << received;
  EXPECT_THAT(received.message(), HasSubstr("data stream 1"));
  EXPECT_THAT(received.message(), HasSubstr("go frame, which only the main connection carries"));
  EXPECT_TRUE(target.discarded);
  EXPECT_FALSE(target.running);
  // The source hears why on the main connection.
  auto error = sender->next();
  EXPECT_THAT(error.status().message(), HasSubstr("data stream 1"));
}

}  // namespace
}  // namespace flotilla::migration
