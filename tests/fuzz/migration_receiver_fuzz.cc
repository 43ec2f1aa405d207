// Fuzzes the migration receiver (migration/receiver.cc) with hostile streams: the input is a
// list of frames whose types, payloads and corruptions the fuzzer chooses; the harness adds
// valid headers (checksum and sequence number) unless told to break them, so that the
// fuzzer gets past the framing into the receiver's state machine, page batches and
// messages. The target VM is a fake with 64 pages of memory. Whatever comes, the receiver
// must end with a status (never crash, never touch memory outside the target's), and the
// guest must never run without a complete, well-formed session.
//
// Input: records of
//   u8 type   u8 mode   u16 length (little-endian)   payload[length]
// mode bit 0: a wrong checksum; bit 1: a wrong sequence number; bit 2: stop after the header
// (a truncated stream); bits 3-4: the frame's flags (page batch compression: 1 zstd, 2 lz4).
// A record of type 0xff starts data stream 1 (docs/migration.md, "Several streams"): the
// records after it are that stream's frames, after a hello the harness writes with the
// session the receiver gave on the main connection (a wrong session when the marker's mode
// bit 0 is set), so that the fuzzer reaches the data streams' frame handling too. As a real
// source does, the harness then sends the rest of the main connection only once the data
// stream connected (or the receiver ended) when the first frame is a hello asking for
// several streams.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/crc32c.h"
#include "flotilla/v1/migration.pb.h"
#include "migration/protocol.h"
#include "migration/receiver.h"

namespace flotilla::migration {
namespace {

constexpr uint64_t kPages = 64;
constexpr uint8_t kDataStreamMarker = 0xff;

class FakeTarget : public TargetVm {
 public:
  absl::Status prepare(const flotilla::v1::MigrationMemoryLayout& layout) override {
    if (layout.ram_bytes() != kPages * kPageBytes || layout.memory_bytes() != layout.ram_bytes()) {
      return absl::FailedPreconditionError("another size");
    }
    memory_.assign(layout.memory_bytes(), 0);
    return absl::OkStatus();
  }
  std::span<uint8_t> memory() override { return memory_; }
  absl::Status load(const std::string& state) override {
    if (state.empty()) return absl::DataLossError("empty state");
    loaded_ = true;
    return absl::OkStatus();
  }
  absl::Status resume() override {
    if (!loaded_) __builtin_trap();  // running what was never loaded
    return absl::OkStatus();
  }
  void discard() override { loaded_ = false; }

 private:
  std::vector<uint8_t> memory_;
  bool loaded_ = false;
};

// Appends the frames of records data[at...] (up to a data stream marker or the end) to
// `stream`, numbered from `sequence`; returns where it stopped.
size_t appendFrames(const uint8_t* data, size_t size, size_t at, uint64_t sequence,
                    std::string& stream) {
  while (at + 4 <= size && data[at] != kDataStreamMarker) {
    const uint8_t type = data[at];
    const uint8_t mode = data[at + 1];
    uint16_t length = 0;
    std::memcpy(&length, data + at + 2, sizeof(length));
    at += 4;
    length = static_cast<uint16_t>(std::min<size_t>(length, size - at));
    FrameHeader header;
    header.type = type;
    header.flags = static_cast<uint16_t>((mode >> 3) & 3);
    header.length = length;
    header.crc = crc32c(0, {data + at, length}) ^ ((mode & 1) != 0 ? 1u : 0u);
    header.sequence = sequence++ + ((mode & 2) != 0 ? 1 : 0);
    stream.append(reinterpret_cast<const char*>(&header), sizeof(header));
    if ((mode & 4) != 0) return size;
    stream.append(reinterpret_cast<const char*>(data + at), length);
    at += length;
  }
  return at;
}

// Writes bytes[from, to) to `fd`; false when the reader went away.
bool writeRange(int fd, const std::string& bytes, size_t from, size_t to) {
  while (from < to) {
    const ssize_t n = ::send(fd, bytes.data() + from, to - from, MSG_NOSIGNAL);
    if (n <= 0) return false;
    from += static_cast<size_t>(n);
  }
  return true;
}

// Writes `bytes` to `fd`, then ends the stream (the reader sees EOF after the last byte).
void writeAll(int fd, const std::string& bytes) {
  (void)writeRange(fd, bytes, 0, bytes.size());
  ::shutdown(fd, SHUT_WR);
}

// Opened once the data stream connected or the receiver ended.
class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool open_ = false;
};

// The bytes of the first frame of `stream` when it is a hello asking for several streams (the
// rest waits for the data stream then); 0 otherwise.
size_t streamsHelloBytes(const std::string& stream) {
  FrameHeader header;
  if (stream.size() < sizeof(header)) return 0;
  std::memcpy(&header, stream.data(), sizeof(header));
  if (header.type != static_cast<uint16_t>(FrameType::kHello) ||
      stream.size() < sizeof(header) + header.length) {
    return 0;
  }
  flotilla::v1::MigrationHello hello;
  if (!hello.ParseFromArray(stream.data() + sizeof(header), static_cast<int>(header.length)) ||
      (hello.capabilities() & kCapabilityStreams) == 0 || hello.streams() <= 1) {
    return 0;
  }
  return sizeof(header) + header.length;
}

// Reads exactly `size` bytes from `fd`, waiting at most 200 ms for each part.
bool readExactly(int fd, void* into, size_t size) {
  size_t done = 0;
  while (done < size) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 200) <= 0) return false;
    const ssize_t n = ::recv(fd, static_cast<char*>(into) + done, size - done, 0);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// The receiver's listener for data streams: the first connection carries the input's data
// stream part, after a hello with the session read from the receiver's reply on the main
// connection (the harness's end `main_fd`); nothing else ever connects.
class FuzzAcceptor : public StreamAcceptor {
 public:
  FuzzAcceptor(int main_fd, const uint8_t* data, size_t size, size_t at, Gate& connected)
      : main_fd_(main_fd), data_(data), size_(size), at_(at), connected_(connected) {}
  ~FuzzAcceptor() override {
    if (writer_.joinable()) writer_.join();
  }

  absl::StatusOr<std::unique_ptr<Connection>> accept(absl::Duration) override {
    if (used_ || at_ >= size_) return absl::UnavailableError("no more connections");
    used_ = true;
    auto connection = connect();
    connected_.open();
    return connection;
  }
  void close() override {}

 private:
  absl::StatusOr<std::unique_ptr<Connection>> connect() {
    // The reply to the main connection's hello: the session to join with.
    FrameHeader header;
    if (!readExactly(main_fd_, &header, sizeof(header)) || header.length > 4096) {
      return absl::UnavailableError("no hello reply");
    }
    std::string payload(header.length, '\0');
    if (!readExactly(main_fd_, payload.data(), payload.size())) {
      return absl::UnavailableError("no hello reply");
    }
    flotilla::v1::MigrationHelloReply reply;
    if (!reply.ParseFromString(payload)) return absl::UnavailableError("a bad hello reply");
    flotilla::v1::MigrationHello hello;
    hello.set_version_major(kVersionMajor);
    hello.set_capabilities(reply.capabilities());
    hello.set_token("token");
    // accept() checked only at_ < size_: the byte after it may be past the input.
    const bool wrong_session = at_ + 1 < size_ && (data_[at_ + 1] & 1) != 0;
    hello.set_session(wrong_session ? "wrong" : reply.session());
    hello.set_stream_index(1);
    hello.set_streams(reply.streams());
    const std::string message = hello.SerializeAsString();
    FrameHeader hello_header;
    hello_header.type = static_cast<uint16_t>(FrameType::kHello);
    hello_header.length = static_cast<uint32_t>(message.size());
    hello_header.crc =
        crc32c(0, {reinterpret_cast<const uint8_t*>(message.data()), message.size()});
    std::string stream(reinterpret_cast<const char*>(&hello_header), sizeof(hello_header));
    stream += message;
    appendFrames(data_, size_, at_ + 4, 1, stream);
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      return absl::UnavailableError("socketpair");
    }
    writer_end_ = flotilla::UniqueFd(fds[0]);
    writer_ =
        std::thread([this, stream = std::move(stream)] { writeAll(writer_end_.get(), stream); });
    return std::make_unique<Connection>(flotilla::UniqueFd(fds[1]), "fuzz stream 1",
                                        absl::Milliseconds(200));
  }

  const int main_fd_;
  const uint8_t* data_;
  const size_t size_;
  const size_t at_;  // the data stream marker, or size_
  Gate& connected_;
  bool used_ = false;
  flotilla::UniqueFd writer_end_;
  std::thread writer_;
};

}  // namespace
}  // namespace flotilla::migration

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flotilla::migration;
  std::string stream;
  const size_t data_stream = appendFrames(data, size, 0, 0, stream);
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  flotilla::UniqueFd sender(fds[0]);
  Gate connected;
  // The whole stream (the hello first, when the rest must wait for the data stream), then the
  // end of it: the receiver sees EOF after the last byte.
  const size_t first = data_stream < size ? streamsHelloBytes(stream) : 0;
  std::thread writer([&sender, &stream, &connected, first] {
    if (first > 0) {
      if (!writeRange(sender.get(), stream, 0, first)) return;
      connected.wait();
    }
    (void)writeRange(sender.get(), stream, first, stream.size());
    ::shutdown(sender.get(), SHUT_WR);
  });
  {
    Connection connection(flotilla::UniqueFd(fds[1]), "fuzz", absl::Milliseconds(200));
    FakeTarget target;
    FuzzAcceptor acceptor(sender.get(), data, size, data_stream, connected);
    {
      MigrationReceiver receiver(target, {.token = "token", .stop_point = {}});
      (void)receiver.run(connection, &acceptor);
    }
    connected.open();
    connection.cancel();  // unblocks the writer if the receiver stopped reading early
    writer.join();
  }
  return 0;
}
