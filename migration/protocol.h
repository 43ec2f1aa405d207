// The migration stream (docs/migration.md, "The stream"): frames over TCP connections
// between the sending and the receiving VMM (one main connection, and with the streams
// capability up to kMaxStreams - 1 data streams that carry page batches). Every frame is a 24-byte
// header, then its payload:
//
//   u32 magic "FMIG"   u16 type   u16 flags   u32 payload bytes
//   u32 CRC-32C of the payload   u64 sequence number (0, 1, 2, ... per direction)
//
// little-endian. The checksum covers page data too: a corrupted stream is an error, never a
// corrupted guest. The sequence number catches frames dropped, duplicated or replayed within
// a stream; a whole stream replayed to another target fails on the one-time token.
//
// Control frames carry the protobuf messages of flotilla/v1/migration.proto (device state: a
// VmSnapshot). A page batch (kPages) is
//
//   u32 count   u32 reserved (0)   u64 entry[count]   page data
//
// where each entry is the page's offset in guest memory (its memory file) with bit 0 set for
// a page of zeroes, which has no data; the data is the other pages' 4096 bytes each, in entry
// order. Offsets are page aligned, inside the layout announced before, at most
// kMaxPagesPerBatch per batch. A batch with a compression flag (only one negotiated at
// hello) has the data compressed as one block, and the reserved word is its size.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "google/protobuf/message_lite.h"
#include "migration/compression.h"

namespace flotilla::migration {

inline constexpr uint32_t kVersionMajor = 1;
inline constexpr uint32_t kVersionMinor = 0;
inline constexpr uint32_t kFrameMagic = 0x47494d46;  // "FMIG"
inline constexpr uint64_t kPageBytes = 4096;
inline constexpr uint32_t kMaxPagesPerBatch = 256;  // 1 MiB of data
inline constexpr uint32_t kMaxControlBytes = 64u << 20;
inline constexpr uint64_t kZeroPageFlag = 1;
// Capability bits (MigrationHello.capabilities): the compressions (compression.h), several
// TCP streams (MigrationHello.streams, docs/migration.md "Several streams"), and disks moved
// with a cold migration (docs/migration.md, "Disks").
inline constexpr uint64_t kCapabilityStreams = 1u << 2;
inline constexpr uint64_t kCapabilityDisks = 1u << 3;
inline constexpr uint64_t kKnownCapabilities =
    kCapabilityZstd | kCapabilityLz4 | kCapabilityStreams | kCapabilityDisks;
// The most TCP streams one migration uses, the main connection included.
inline constexpr uint32_t kMaxStreams = 8;

enum class FrameType : uint16_t {
  kHello = 1,           // MigrationHello (sender -> target)
  kHelloReply = 2,      // MigrationHelloReply
  kLayout = 3,          // MigrationMemoryLayout
  kLayoutAccepted = 4,  // empty: the target has memory of that layout
  kPages = 5,           // a page batch
  kRound = 6,           // MigrationRound: a round's pages were all sent
  kDeviceState = 7,     // a serialized VmSnapshot (everything but memory)
  kComplete = 8,        // empty: everything was sent; load it
  kReady = 9,           // empty (target -> sender): loaded, waiting for kGo
  kGo = 10,             // empty (sender -> target): the source will never run again; resume
  kResumed = 11,        // empty (target -> sender): the guest runs on the target
  kCancel = 12,         // MigrationError (sender -> target): stop, discard what you have
  kError = 13,          // MigrationError (either way): a failure; the stream ends
  kRoundDone = 14,      // MigrationRound (target -> sender): every page before kRound is in
  kDisks = 15,          // MigrationDisks: the disks whose data follows (cold, before kLayout)
  kDiskData = 16,       // DiskDataHeader (disk_transfer.h), then the data
  kDisksDone = 17,      // MigrationDisks: every disk's data was sent (bytes per disk)
};

std::string_view frameTypeName(FrameType type);

struct FrameHeader {
  uint32_t magic = kFrameMagic;
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t length = 0;
  uint32_t crc = 0;
  uint64_t sequence = 0;
};
static_assert(sizeof(FrameHeader) == 24);

// One side of a migration connection: frames written and read with checks, deadlines and
// sequence numbers. Blocking; cancel() (from any thread) makes every pending and later call
// fail with Cancelled.
class Connection {
 public:
  // `peer` ("target 10.0.0.2:7201") is for messages. Each read or write waits at most
  // `io_timeout` for the peer.
  Connection(UniqueFd socket, std::string peer, absl::Duration io_timeout);

  const std::string& peer() const { return peer_; }
  absl::Duration ioTimeout() const { return io_timeout_; }
  // Not while another thread uses the connection.
  void setIoTimeout(absl::Duration io_timeout) { io_timeout_ = io_timeout; }

  // `flags`: kPages frames only (the compression of its data, compression.h).
  absl::Status send(FrameType type, std::span<const iovec> payload, uint16_t flags = 0);
  absl::Status send(FrameType type, const google::protobuf::MessageLite& message);
  absl::Status sendEmpty(FrameType type);

  // The next frame's header, checked: magic, a known type, a length within bounds for its
  // type, the expected sequence number. Its payload must be read next (readPayload or
  // readMessage), completely.
  absl::StatusOr<FrameHeader> readHeader();
  // Reads the payload into `into` (whose sizes add up to at most what is left of it),
  // updating the checksum; verify() once all of it was read.
  absl::Status readPayload(std::span<const iovec> into);
  absl::Status verify();
  // readPayload + verify + parse, for control frames.
  absl::Status readMessage(const FrameHeader& header, google::protobuf::MessageLite& message);
  // Reads and discards the rest of the payload (verified).
  absl::Status skipPayload();

  // Reads frames until one of type `expected` (its header is returned, its payload unread)
  // and turns a kError or kCancel from the peer into an error carrying the peer's message.
  absl::StatusOr<FrameHeader> expect(FrameType expected);
  // readHeader, and a kError / kCancel frame into an error with its message.
  absl::StatusOr<FrameHeader> next();

  // Waits up to `timeout` until something can be read (a frame, the end of the stream or an
  // error): OK, DeadlineExceeded, or Cancelled.
  absl::Status waitReadable(absl::Duration timeout);
  // Something can be read now (a frame, the end of the stream or an error), without waiting.
  bool inputPending();

  // Best effort: a kError or kCancel frame with `message`, without waiting long.
  void sendError(FrameType type, std::string_view message);

  // Shuts the socket down: blocked and later calls fail.
  void cancel();
  bool cancelled() const;
  // Makes a blocked or later read or write fail with Cancelled, within 100 ms, without closing
  // the connection: sendError() can still tell the peer why, unless a frame was left half
  // written (then the stream is broken and it sends nothing).
  void interrupt();
  // Undoes interrupt(): reads and writes work again (unless the stream broke meanwhile).
  void clearInterrupt();
  bool interrupted() const { return interrupted_.load(); }

  // From any thread.
  uint64_t bytesSent() const { return bytes_sent_.load(std::memory_order_relaxed); }
  uint64_t bytesReceived() const { return bytes_received_.load(std::memory_order_relaxed); }

 private:
  absl::Status writeAll(std::vector<iovec> pieces, size_t total);
  absl::Status readAll(std::span<const iovec> into);
  absl::Status waitFor(short events, std::string_view what, absl::Duration timeout);
  absl::Status peerError(const FrameHeader& header);
  absl::Status cancelledError() const;

  UniqueFd socket_;
  std::string peer_;
  absl::Duration io_timeout_;
  uint64_t send_sequence_ = 0;
  uint64_t receive_sequence_ = 0;
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> bytes_received_{0};
  // The frame being read.
  FrameHeader current_{};
  uint32_t remaining_ = 0;
  uint32_t crc_ = 0;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> interrupted_{false};
  bool broken_ = false;  // a frame was left half written
};

// Page batch helpers. The entries of a batch, checked against a memory of `memory_bytes`:
// page aligned, in range, at most kMaxPagesPerBatch; the number of data pages that follow.
absl::StatusOr<uint32_t> checkBatchEntries(std::span<const uint64_t> entries,
                                           uint64_t memory_bytes);

// Connects to "HOST:PORT" (numeric IPv4 or IPv6 in brackets, or a name), waiting up to
// `timeout`.
absl::StatusOr<UniqueFd> connectTo(std::string_view address, absl::Duration timeout);
// A listening socket on "HOST:PORT" (port 0: any); the port it got.
struct Listener {
  UniqueFd fd;
  uint16_t port = 0;
};
absl::StatusOr<Listener> listenOn(std::string_view address);
// Accepts one connection, waiting up to `timeout`; the peer's address in `peer`.
absl::StatusOr<UniqueFd> acceptOne(int listener, absl::Duration timeout, std::string* peer);

}  // namespace flotilla::migration
