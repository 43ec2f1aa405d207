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
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/crc32c.h"
#include "migration/protocol.h"
#include "migration/receiver.h"

namespace flotilla::migration {
namespace {

constexpr uint64_t kPages = 64;

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

// The stream the input describes, with valid framing unless the input says otherwise.
std::string buildStream(const uint8_t* data, size_t size) {
  std::string stream;
  uint64_t sequence = 0;
  size_t at = 0;
  while (at + 4 <= size) {
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
    if ((mode & 4) != 0) break;
    stream.append(reinterpret_cast<const char*>(data + at), length);
    at += length;
  }
  return stream;
}

}  // namespace
}  // namespace flotilla::migration

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flotilla::migration;
  const std::string stream = buildStream(data, size);
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  flotilla::UniqueFd sender(fds[0]);
  // The whole stream, then the end of it: the receiver sees EOF after the last byte.
  std::thread writer([&sender, &stream] {
    size_t done = 0;
    while (done < stream.size()) {
      const ssize_t n =
          ::send(sender.get(), stream.data() + done, stream.size() - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::shutdown(sender.get(), SHUT_WR);
  });
  {
    Connection connection(flotilla::UniqueFd(fds[1]), "fuzz", absl::Milliseconds(200));
    FakeTarget target;
    MigrationReceiver receiver(target, {.token = "token"});
    (void)receiver.run(connection);
    connection.cancel();  // unblocks the writer if the receiver stopped reading early
    writer.join();
  }
  return 0;
}
