// The migration stream's frames: round trips, and every malformed input refused with a
// clear error: corrupted payload, foreign magic, unknown type, oversized frame, a replayed
// or lost frame, a truncated stream, bad page batch entries.
#include "migration/protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "common/crc32c.h"
#include "flotilla/v1/migration.pb.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/migration/socket_pair.h"

namespace flotilla::migration {
namespace {

using ::testing::HasSubstr;

TEST(MigrationProtocolTest, ControlMessageRoundTrip) {
  auto [a, b] = testing::connectionPair();
  ASSERT_NE(a, nullptr);
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_token("secret");
  ASSERT_TRUE(a->send(FrameType::kHello, hello).ok());
  ASSERT_TRUE(a->sendEmpty(FrameType::kComplete).ok());
  auto header = b->expect(FrameType::kHello);
  ASSERT_TRUE(header.ok()) << header.status();
  flotilla::v1::MigrationHello got;
  ASSERT_TRUE(b->readMessage(*header, got).ok());
  EXPECT_EQ(got.token(), "secret");
  auto complete = b->expect(FrameType::kComplete);
  ASSERT_TRUE(complete.ok()) << complete.status();
  EXPECT_EQ(complete->sequence, 1u);
  EXPECT_TRUE(b->verify().ok());
}

TEST(MigrationProtocolTest, PeerErrorBecomesAnErrorWithItsMessage) {
  auto [a, b] = testing::connectionPair();
  a->sendError(FrameType::kError, "disk full");
  auto header = b->expect(FrameType::kReady);
  EXPECT_EQ(header.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(header.status().message(), HasSubstr("disk full"));
  a->sendError(FrameType::kCancel, "operator said so");
  EXPECT_EQ(b->next().status().code(), absl::StatusCode::kCancelled);
}

TEST(MigrationProtocolTest, UnexpectedFrameTypeIsAnError) {
  auto [a, b] = testing::connectionPair();
  ASSERT_TRUE(a->sendEmpty(FrameType::kGo).ok());
  auto header = b->expect(FrameType::kReady);
  EXPECT_EQ(header.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(header.status().message(), HasSubstr("go frame where a ready frame was due"));
}

// Raw bytes written to the peer's socket, as a broken or hostile sender would.
class RawStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    raw_ = UniqueFd(fds[0]);
    connection_ = std::make_unique<Connection>(UniqueFd(fds[1]), "source", absl::Seconds(5));
  }
  void write(const void* data, size_t size) {
    ASSERT_EQ(::write(raw_.get(), data, size), static_cast<ssize_t>(size));
  }
  void writeHeader(FrameHeader header) { write(&header, sizeof(header)); }

  UniqueFd raw_;
  std::unique_ptr<Connection> connection_;
};

TEST_F(RawStreamTest, CorruptedPayloadFailsTheChecksum) {
  const std::string payload(1000, 'x');
  FrameHeader header;
  header.type = static_cast<uint16_t>(FrameType::kDeviceState);
  header.length = static_cast<uint32_t>(payload.size());
  header.crc = crc32c(0, {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()});
  std::string corrupted = payload;
  corrupted[500] = 'y';  // one byte flipped on the way
  writeHeader(header);
  write(corrupted.data(), corrupted.size());
  auto read = connection_->readHeader();
  ASSERT_TRUE(read.ok()) << read.status();
  std::string bytes(payload.size(), '\0');
  const iovec into{bytes.data(), bytes.size()};
  ASSERT_TRUE(connection_->readPayload(std::span<const iovec>(&into, 1)).ok());
  absl::Status verified = connection_->verify();
  EXPECT_EQ(verified.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(verified.message(), HasSubstr("checksum"));
}

TEST_F(RawStreamTest, ForeignBytesAreNotAFrame) {
  const char http[24] = "GET / HTTP/1.1\r\nHost: x";
  write(http, sizeof(http));
  auto header = connection_->readHeader();
  EXPECT_EQ(header.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(header.status().message(), HasSubstr("not a Flotilla migration frame"));
}

TEST_F(RawStreamTest, UnknownTypeIsRefused) {
  FrameHeader unknown;
  unknown.type = 99;
  writeHeader(unknown);
  EXPECT_THAT(connection_->readHeader().status().message(), HasSubstr("unknown type 99"));
}

TEST_F(RawStreamTest, OversizedFrameIsRefusedBeforeItsPayload) {
  FrameHeader huge;
  huge.type = static_cast<uint16_t>(FrameType::kPages);
  huge.length = 0xffffffff;
  writeHeader(huge);
  auto header = connection_->readHeader();
  EXPECT_EQ(header.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(header.status().message(), HasSubstr("more than"));
}

TEST_F(RawStreamTest, ReplayedOrLostFrameBreaksTheSequence) {
  FrameHeader first;
  first.type = static_cast<uint16_t>(FrameType::kComplete);
  writeHeader(first);
  writeHeader(first);  // the same frame again
  ASSERT_TRUE(connection_->readHeader().ok());
  auto replayed = connection_->readHeader();
  EXPECT_EQ(replayed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(replayed.status().message(), HasSubstr("frame number 0 where 1 was due"));
}

TEST_F(RawStreamTest, TruncatedStreamIsAnErrorNotAHang) {
  FrameHeader header;
  header.type = static_cast<uint16_t>(FrameType::kDeviceState);
  header.length = 100;
  writeHeader(header);
  write("only ten b", 10);
  raw_.reset();  // the sender is gone
  ASSERT_TRUE(connection_->readHeader().ok());
  std::string bytes(100, '\0');
  const iovec into{bytes.data(), bytes.size()};
  absl::Status read = connection_->readPayload(std::span<const iovec>(&into, 1));
  EXPECT_EQ(read.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(read.message(), HasSubstr("closed the connection"));
}

TEST(MigrationProtocolTest, SilentPeerTimesOut) {
  auto [a, b] = testing::connectionPair(absl::Milliseconds(100));
  auto header = b->readHeader();
  EXPECT_EQ(header.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(header.status().message(), HasSubstr("did not send data"));
}

TEST(MigrationProtocolTest, CancelWakesABlockedReader) {
  auto [a, b] = testing::connectionPair(absl::Seconds(60));
  std::thread canceller([&b] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    b->cancel();
  });
  auto header = b->readHeader();
  canceller.join();
  EXPECT_EQ(header.status().code(), absl::StatusCode::kCancelled);
}

TEST(MigrationProtocolTest, BatchEntriesAreChecked) {
  const uint64_t memory = 16 * kPageBytes;
  std::vector<uint64_t> good = {0, kPageBytes | kZeroPageFlag, 15 * kPageBytes};
  auto data = checkBatchEntries(good, memory);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, 2u);
  std::vector<uint64_t> outside = {16 * kPageBytes};
  EXPECT_THAT(checkBatchEntries(outside, memory).status().message(), HasSubstr("outside"));
  std::vector<uint64_t> flags = {kPageBytes | 2};
  EXPECT_THAT(checkBatchEntries(flags, memory).status().message(), HasSubstr("flag bits"));
  EXPECT_FALSE(checkBatchEntries({}, memory).ok());
  std::vector<uint64_t> too_many(kMaxPagesPerBatch + 1, 0);
  EXPECT_FALSE(checkBatchEntries(too_many, memory).ok());
}

TEST(MigrationProtocolTest, ListenConnectAccept) {
  auto listener = listenOn("127.0.0.1:0");
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_NE(listener->port, 0);
  auto client = connectTo(fmt::format("127.0.0.1:{}", listener->port), absl::Seconds(5));
  ASSERT_TRUE(client.ok()) << client.status();
  std::string peer;
  auto accepted = acceptOne(listener->fd.get(), absl::Seconds(5), &peer);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_THAT(peer, HasSubstr("127.0.0.1:"));
  EXPECT_FALSE(connectTo("127.0.0.1", absl::Seconds(1)).ok());
  EXPECT_THAT(connectTo("127.0.0.1:99999", absl::Seconds(1)).status().message(),
              HasSubstr("not a port number"));
}

}  // namespace
}  // namespace flotilla::migration
