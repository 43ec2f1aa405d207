// The migration stream's frames and sockets (see protocol.h).
#include "migration/protocol.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "common/status.h"
#include "flotilla/v1/migration.pb.h"
#include "fmt/format.h"

namespace flotilla::migration {
namespace {

// Larger socket buffers keep a 1 MiB batch from stalling on the window over fast links.
constexpr int kSocketBufferBytes = 4 << 20;

bool knownType(uint16_t type) {
  return type >= static_cast<uint16_t>(FrameType::kHello) &&
         type <= static_cast<uint16_t>(FrameType::kDisksDone);
}

// The most payload a frame of `type` may carry.
uint64_t maxPayload(FrameType type) {
  switch (type) {
    case FrameType::kPages:
      return 8 + kMaxPagesPerBatch * (sizeof(uint64_t) + kPageBytes);
    case FrameType::kDiskData:
      return 16 + kMaxPagesPerBatch * kPageBytes;  // disk_transfer.h: 1 MiB of data at most
    case FrameType::kLayoutAccepted:
    case FrameType::kComplete:
    case FrameType::kReady:
    case FrameType::kGo:
    case FrameType::kResumed:
      return 0;
    case FrameType::kDeviceState:
      return kMaxControlBytes;
    default:
      return 1 << 20;
  }
}

// Moves past `bytes` transferred from pieces[first...]; returns the first piece with bytes
// left (pieces.size() when none).
size_t consume(std::vector<iovec>& pieces, size_t first, size_t bytes) {
  while (bytes > 0) {
    iovec& piece = pieces[first];
    const size_t used = std::min(bytes, piece.iov_len);
    piece.iov_base = static_cast<uint8_t*>(piece.iov_base) + used;
    piece.iov_len -= used;
    bytes -= used;
    if (piece.iov_len == 0) ++first;
  }
  while (first < pieces.size() && pieces[first].iov_len == 0) ++first;
  return first;
}

uint32_t crcOf(uint32_t crc, std::span<const iovec> pieces) {
  for (const iovec& piece : pieces) {
    crc = crc32c(crc, {static_cast<const uint8_t*>(piece.iov_base), piece.iov_len});
  }
  return crc;
}

void tuneSocket(int fd) {
  const int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
}

int timeoutMs(absl::Duration left) {
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
}

// "HOST:PORT" or "[V6]:PORT" into host and port.
absl::Status splitAddress(std::string_view address, std::string& host, uint16_t& port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        fmt::format("migration address '{}' is not HOST:PORT", address));
  }
  host = std::string(address.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint32_t number = 0;
  if (!absl::SimpleAtoi(std::string(address.substr(colon + 1)), &number) || number > 65535) {
    return absl::InvalidArgumentError(fmt::format(
        "migration address '{}': '{}' is not a port number", address, address.substr(colon + 1)));
  }
  port = static_cast<uint16_t>(number);
  return absl::OkStatus();
}

struct AddressInfoDeleter {
  void operator()(addrinfo* info) const { ::freeaddrinfo(info); }
};

absl::StatusOr<std::unique_ptr<addrinfo, AddressInfoDeleter>> resolve(std::string_view address,
                                                                      bool passive) {
  std::string host;
  uint16_t port = 0;
  RETURN_IF_ERROR(splitAddress(address, host, port));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc =
      ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::InvalidArgumentError(fmt::format("migration address '{}': cannot resolve {}: {}",
                                                  address, host, ::gai_strerror(rc)));
  }
  return std::unique_ptr<addrinfo, AddressInfoDeleter>(found);
}

std::string describe(const sockaddr* address) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    port = ntohs(v4->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    port = ntohs(v6->sin6_port);
  }
  return fmt::format("[{}]:{}", host, port);
}

}  // namespace

std::string_view frameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kHello:
      return "hello";
    case FrameType::kHelloReply:
      return "hello reply";
    case FrameType::kLayout:
      return "memory layout";
    case FrameType::kLayoutAccepted:
      return "layout accepted";
    case FrameType::kPages:
      return "pages";
    case FrameType::kRound:
      return "round";
    case FrameType::kDeviceState:
      return "device state";
    case FrameType::kComplete:
      return "complete";
    case FrameType::kReady:
      return "ready";
    case FrameType::kGo:
      return "go";
    case FrameType::kResumed:
      return "resumed";
    case FrameType::kCancel:
      return "cancel";
    case FrameType::kError:
      return "error";
    case FrameType::kRoundDone:
      return "round done";
    case FrameType::kDisks:
      return "disks";
    case FrameType::kDiskData:
      return "disk data";
    case FrameType::kDisksDone:
      return "disks done";
  }
  return "unknown";
}

Connection::Connection(UniqueFd socket, std::string peer, absl::Duration io_timeout)
    : socket_(std::move(socket)), peer_(std::move(peer)), io_timeout_(io_timeout) {
  tuneSocket(socket_.get());
  const int flags = ::fcntl(socket_.get(), F_GETFL);
  if (flags >= 0) (void)::fcntl(socket_.get(), F_SETFL, flags | O_NONBLOCK);
}

void Connection::cancel() {
  cancelled_.store(true);
  (void)::shutdown(socket_.get(), SHUT_RDWR);
}

bool Connection::cancelled() const {
  return cancelled_.load();
}

absl::Status Connection::cancelledError() const {
  return absl::CancelledError(fmt::format("migration with {} cancelled", peer_));
}

void Connection::interrupt() {
  interrupted_.store(true);
}

void Connection::clearInterrupt() {
  interrupted_.store(false);
}

absl::Status Connection::waitFor(short events, std::string_view what, absl::Duration timeout) {
  constexpr absl::Duration kSlice = absl::Milliseconds(100);  // how soon interrupt() is seen
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  while (true) {
    if (cancelled() || interrupted_.load()) {
      return cancelledError();
    }
    const absl::Duration left = deadline - systemClock().monotonicNow();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          fmt::format("{} did not {} for {}", peer_, what, absl::FormatDuration(timeout)));
    }
    pollfd ready{socket_.get(), events, 0};
    const int rc = ::poll(&ready, 1, timeoutMs(std::min(left, kSlice)));
    if (rc > 0) return absl::OkStatus();
    if (rc < 0 && errno != EINTR) return errnoStatus(errno, fmt::format("poll ({})", what));
  }
}

absl::Status Connection::writeAll(std::vector<iovec> pieces, size_t total) {
  if (broken_) {
    return absl::FailedPreconditionError(
        fmt::format("the stream to {} broke off in the middle of a frame", peer_));
  }
  const size_t frame = total;
  size_t first = 0;
  while (total > 0) {
    if (cancelled() || (total == frame && interrupted_.load())) {
      return cancelledError();
    }
    msghdr message{};
    message.msg_iov = pieces.data() + first;
    message.msg_iovlen = std::min<size_t>(pieces.size() - first, IOV_MAX);
    const ssize_t n = ::sendmsg(socket_.get(), &message, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (absl::Status writable = waitFor(POLLOUT, "take data", io_timeout_); !writable.ok()) {
          broken_ = total != frame;
          return writable;
        }
        continue;
      }
      if (cancelled()) {
        return cancelledError();
      }
      return absl::UnavailableError(fmt::format("sending to {}: {}", peer_, std::strerror(errno)));
    }
    const auto sent = static_cast<size_t>(n);
    bytes_sent_.fetch_add(sent, std::memory_order_relaxed);
    total -= sent;
    first = consume(pieces, first, sent);
  }
  return absl::OkStatus();
}

absl::Status Connection::send(FrameType type, std::span<const iovec> payload, uint16_t flags) {
  size_t length = 0;
  for (const iovec& piece : payload) length += piece.iov_len;
  if (length > maxPayload(type)) {
    return absl::InternalError(fmt::format(
        "a {} frame of {} bytes is larger than the protocol allows", frameTypeName(type), length));
  }
  FrameHeader header;
  header.type = static_cast<uint16_t>(type);
  header.flags = flags;
  header.length = static_cast<uint32_t>(length);
  header.crc = crcOf(0, payload);
  header.sequence = send_sequence_;
  std::vector<iovec> pieces;
  pieces.reserve(payload.size() + 1);
  pieces.push_back({&header, sizeof(header)});
  for (const iovec& piece : payload) {
    if (piece.iov_len > 0) pieces.push_back(piece);
  }
  // A frame that never left (interrupted before its first byte) does not use up its number:
  // the next frame, e.g. the cancel that follows, takes it.
  absl::Status written = writeAll(std::move(pieces), sizeof(header) + length);
  if (written.ok() || broken_) ++send_sequence_;
  return written;
}

absl::Status Connection::send(FrameType type, const google::protobuf::MessageLite& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return absl::InternalError(fmt::format("serializing a {} frame", frameTypeName(type)));
  }
  const iovec piece{bytes.data(), bytes.size()};
  return send(type, std::span<const iovec>(&piece, 1));
}

absl::Status Connection::sendEmpty(FrameType type) {
  return send(type, std::span<const iovec>());
}

absl::Status Connection::readAll(std::span<const iovec> into) {
  std::vector<iovec> pieces(into.begin(), into.end());
  size_t total = 0;
  for (const iovec& piece : pieces) total += piece.iov_len;
  size_t first = 0;
  while (total > 0) {
    if (cancelled()) return cancelledError();
    const ssize_t n = ::readv(socket_.get(), pieces.data() + first,
                              static_cast<int>(std::min<size_t>(pieces.size() - first, IOV_MAX)));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        RETURN_IF_ERROR(waitFor(POLLIN, "send data", io_timeout_));
        continue;
      }
      if (cancelled()) {
        return cancelledError();
      }
      return absl::UnavailableError(
          fmt::format("receiving from {}: {}", peer_, std::strerror(errno)));
    }
    if (n == 0) {
      if (cancelled()) {
        return cancelledError();
      }
      return absl::UnavailableError(
          fmt::format("{} closed the connection in the middle of the stream", peer_));
    }
    const auto got = static_cast<size_t>(n);
    bytes_received_.fetch_add(got, std::memory_order_relaxed);
    total -= got;
    first = consume(pieces, first, got);
  }
  return absl::OkStatus();
}

absl::StatusOr<FrameHeader> Connection::readHeader() {
  if (remaining_ != 0) {
    return absl::InternalError("a frame header was read before the previous payload");
  }
  FrameHeader header;
  const iovec piece{&header, sizeof(header)};
  RETURN_IF_ERROR(readAll(std::span<const iovec>(&piece, 1)));
  if (header.magic != kFrameMagic) {
    return absl::DataLossError(
        fmt::format("{} sent something that is not a Flotilla migration frame (magic {:#010x})",
                    peer_, header.magic));
  }
  if (!knownType(header.type)) {
    return absl::DataLossError(
        fmt::format("{} sent a frame of unknown type {}", peer_, header.type));
  }
  const auto type = static_cast<FrameType>(header.type);
  if (header.length > maxPayload(type)) {
    return absl::DataLossError(fmt::format("{} sent a {} frame of {} bytes, more than {}", peer_,
                                           frameTypeName(type), header.length, maxPayload(type)));
  }
  if (header.flags != 0 && type != FrameType::kPages) {
    return absl::DataLossError(fmt::format("{} sent a {} frame with flags {:#x}", peer_,
                                           frameTypeName(type), header.flags));
  }
  if (header.sequence != receive_sequence_) {
    return absl::DataLossError(fmt::format(
        "{} sent frame number {} where {} was due (frames lost, duplicated or replayed)", peer_,
        header.sequence, receive_sequence_));
  }
  ++receive_sequence_;
  current_ = header;
  remaining_ = header.length;
  crc_ = 0;
  return header;
}

absl::Status Connection::readPayload(std::span<const iovec> into) {
  size_t total = 0;
  for (const iovec& piece : into) total += piece.iov_len;
  if (total > remaining_) {
    return absl::DataLossError(fmt::format("a {} frame from {} is shorter than its content says",
                                           frameTypeName(static_cast<FrameType>(current_.type)),
                                           peer_));
  }
  RETURN_IF_ERROR(readAll(into));
  crc_ = crcOf(crc_, into);
  remaining_ -= static_cast<uint32_t>(total);
  return absl::OkStatus();
}

absl::Status Connection::verify() {
  if (remaining_ != 0) {
    return absl::DataLossError(fmt::format("a {} frame from {} has {} bytes more than its content",
                                           frameTypeName(static_cast<FrameType>(current_.type)),
                                           peer_, remaining_));
  }
  if (crc_ != current_.crc) {
    return absl::DataLossError(fmt::format(
        "a {} frame from {} failed its checksum (CRC-32C {:#010x}, expected {:#010x}): the "
        "stream is corrupted",
        frameTypeName(static_cast<FrameType>(current_.type)), peer_, crc_, current_.crc));
  }
  return absl::OkStatus();
}

absl::Status Connection::skipPayload() {
  std::vector<uint8_t> sink(std::min<uint32_t>(remaining_, 1 << 20));
  while (remaining_ > 0) {
    const iovec piece{sink.data(), std::min<size_t>(sink.size(), remaining_)};
    RETURN_IF_ERROR(readPayload(std::span<const iovec>(&piece, 1)));
  }
  return verify();
}

absl::Status Connection::readMessage(const FrameHeader& header,
                                     google::protobuf::MessageLite& message) {
  std::string bytes(header.length, '\0');
  const iovec piece{bytes.data(), bytes.size()};
  RETURN_IF_ERROR(readPayload(std::span<const iovec>(&piece, 1)));
  RETURN_IF_ERROR(verify());
  if (!message.ParseFromString(bytes)) {
    return absl::DataLossError(fmt::format("{} sent a {} frame that does not parse", peer_,
                                           frameTypeName(static_cast<FrameType>(header.type))));
  }
  return absl::OkStatus();
}

absl::Status Connection::waitReadable(absl::Duration timeout) {
  return waitFor(POLLIN, "send anything", timeout);
}

bool Connection::inputPending() {
  pollfd ready{socket_.get(), POLLIN, 0};
  return ::poll(&ready, 1, 0) > 0;
}

absl::Status Connection::peerError(const FrameHeader& header) {
  flotilla::v1::MigrationError error;
  RETURN_IF_ERROR(readMessage(header, error));
  const bool cancel = header.type == static_cast<uint16_t>(FrameType::kCancel);
  return cancel ? absl::CancelledError(
                      fmt::format("{} cancelled the migration: {}", peer_, error.message()))
                : absl::AbortedError(fmt::format("{} failed: {}", peer_, error.message()));
}

absl::StatusOr<FrameHeader> Connection::next() {
  ASSIGN_OR_RETURN(FrameHeader header, readHeader());
  if (header.type == static_cast<uint16_t>(FrameType::kError) ||
      header.type == static_cast<uint16_t>(FrameType::kCancel)) {
    return peerError(header);
  }
  return header;
}

absl::StatusOr<FrameHeader> Connection::expect(FrameType expected) {
  ASSIGN_OR_RETURN(FrameHeader header, next());
  if (header.type != static_cast<uint16_t>(expected)) {
    return absl::DataLossError(fmt::format("{} sent a {} frame where a {} frame was due", peer_,
                                           frameTypeName(static_cast<FrameType>(header.type)),
                                           frameTypeName(expected)));
  }
  return header;
}

void Connection::sendError(FrameType type, std::string_view message) {
  if (cancelled() || broken_) return;
  interrupted_.store(false);
  flotilla::v1::MigrationError error;
  error.set_message(std::string(message));
  const absl::Duration saved = io_timeout_;
  io_timeout_ = std::min(io_timeout_, absl::Seconds(1));
  (void)send(type, error);
  io_timeout_ = saved;
}

absl::StatusOr<uint32_t> checkBatchEntries(std::span<const uint64_t> entries,
                                           uint64_t memory_bytes) {
  if (entries.empty() || entries.size() > kMaxPagesPerBatch) {
    return absl::DataLossError(fmt::format("a page batch of {} pages (1 to {} allowed)",
                                           entries.size(), kMaxPagesPerBatch));
  }
  uint32_t data_pages = 0;
  for (uint64_t entry : entries) {
    const uint64_t offset = entry & ~(kPageBytes - 1);
    const uint64_t flags = entry & (kPageBytes - 1);
    if ((flags & ~kZeroPageFlag) != 0) {
      return absl::DataLossError(
          fmt::format("a page batch entry {:#x} has unknown flag bits", entry));
    }
    if (offset >= memory_bytes) {
      return absl::DataLossError(
          fmt::format("a page batch names offset {:#x}, outside the {} bytes of guest memory",
                      offset, memory_bytes));
    }
    if ((flags & kZeroPageFlag) == 0) ++data_pages;
  }
  return data_pages;
}

absl::StatusOr<UniqueFd> connectTo(std::string_view address, absl::Duration timeout) {
  ASSIGN_OR_RETURN(auto found, resolve(address, false));
  absl::Status last = absl::UnavailableError(fmt::format("{}: no address to connect to", address));
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  for (addrinfo* candidate = found.get(); candidate != nullptr; candidate = candidate->ai_next) {
    UniqueFd fd(::socket(candidate->ai_family,
                         candidate->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                         candidate->ai_protocol));
    if (!fd.valid()) {
      last = errnoStatus(errno, "socket");
      continue;
    }
    if (::connect(fd.get(), candidate->ai_addr, candidate->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
      last = absl::UnavailableError(fmt::format("cannot connect to the migration target {}: {}",
                                                address, std::strerror(errno)));
      continue;
    }
    pollfd writable{fd.get(), POLLOUT, 0};
    const int rc = ::poll(&writable, 1, timeoutMs(deadline - systemClock().monotonicNow()));
    if (rc == 0) {
      last = absl::DeadlineExceededError(
          fmt::format("no answer from the migration target {} within {}", address,
                      absl::FormatDuration(timeout)));
      continue;
    }
    int error = 0;
    socklen_t length = sizeof(error);
    if (rc < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 ||
        error != 0) {
      last =
          absl::UnavailableError(fmt::format("cannot connect to the migration target {}: {}",
                                             address, std::strerror(error != 0 ? error : errno)));
      continue;
    }
    return fd;
  }
  return last;
}

absl::StatusOr<Listener> listenOn(std::string_view address) {
  ASSIGN_OR_RETURN(auto found, resolve(address, true));
  absl::Status last = absl::UnavailableError(fmt::format("{}: no address to listen on", address));
  for (addrinfo* candidate = found.get(); candidate != nullptr; candidate = candidate->ai_next) {
    UniqueFd fd(::socket(candidate->ai_family, candidate->ai_socktype | SOCK_CLOEXEC,
                         candidate->ai_protocol));
    if (!fd.valid()) {
      last = errnoStatus(errno, "socket");
      continue;
    }
    const int one = 1;
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), candidate->ai_addr, candidate->ai_addrlen) != 0 ||
        ::listen(fd.get(), static_cast<int>(kMaxStreams)) != 0) {
      last = absl::UnavailableError(
          fmt::format("cannot listen for a migration on {}: {}", address, std::strerror(errno)));
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
      return errnoStatus(errno, "getsockname");
    }
    const uint16_t port = bound.ss_family == AF_INET
                              ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                              : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    return Listener{std::move(fd), port};
  }
  return last;
}

absl::StatusOr<UniqueFd> acceptOne(int listener, absl::Duration timeout, std::string* peer) {
  pollfd readable{listener, POLLIN, 0};
  const int rc =
      ::poll(&readable, 1, timeout == absl::InfiniteDuration() ? -1 : timeoutMs(timeout));
  if (rc == 0) {
    return absl::DeadlineExceededError(
        fmt::format("no migration source connected within {}", absl::FormatDuration(timeout)));
  }
  if (rc < 0) return errnoStatus(errno, "waiting for the migration source");
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  UniqueFd fd(::accept4(listener, reinterpret_cast<sockaddr*>(&address), &length, SOCK_CLOEXEC));
  if (!fd.valid()) return errnoStatus(errno, "accepting the migration source");
  if (peer != nullptr) *peer = describe(reinterpret_cast<const sockaddr*>(&address));
  return fd;
}

}  // namespace flotilla::migration
