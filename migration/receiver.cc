// MigrationReceiver (see receiver.h).
#include "migration/receiver.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::migration {
namespace {

// How long a connection that wants to join as a data stream may take to say who it is.
constexpr absl::Duration kJoinHelloTimeout = absl::Seconds(2);
constexpr size_t kSessionBytes = 16;

// Tokens compared without an early exit.
bool sameToken(const std::string& a, const std::string& b) {
  unsigned char differ = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    differ |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return differ == 0;
}

// Never-written memory reads as zeroes: a zero page is written only when it holds data, so
// that memory the guest never used stays unallocated.
void zeroPage(uint8_t* page) {
  if (!vmm::isZeroPage(page)) std::memset(page, 0, kPageBytes);
}

absl::StatusOr<std::string> randomSession() {
  std::string session(kSessionBytes, '\0');
  size_t filled = 0;
  while (filled < session.size()) {
    const ssize_t n = ::getrandom(session.data() + filled, session.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(errno, "getrandom (the migration's session id)");
    }
    filled += static_cast<size_t>(n);
  }
  return session;
}

}  // namespace

const char* receiverStateName(ReceiverState state) {
  switch (state) {
    case ReceiverState::kHello:
      return "waiting for hello";
    case ReceiverState::kLayout:
      return "waiting for the memory layout";
    case ReceiverState::kMemory:
      return "receiving memory";
    case ReceiverState::kLoading:
      return "loading the device state";
    case ReceiverState::kReady:
      return "ready, waiting for go";
    case ReceiverState::kResumed:
      return "resumed";
    case ReceiverState::kFailed:
      return "failed";
  }
  return "?";
}

const char* receiverPhaseName(ReceiverState state) {
  switch (state) {
    case ReceiverState::kHello:
      return "waiting";
    case ReceiverState::kLayout:
      return "layout";
    case ReceiverState::kMemory:
      return "memory";
    case ReceiverState::kLoading:
      return "loading";
    case ReceiverState::kReady:
      return "ready";
    case ReceiverState::kResumed:
      return "resumed";
    case ReceiverState::kFailed:
      return "failed";
  }
  return "?";
}

MigrationReceiver::MigrationReceiver(TargetVm& vm, ReceiveOptions options)
    : vm_(vm), options_(std::move(options)), log_(Logger("migration")) {}

MigrationReceiver::~MigrationReceiver() {
  stopStreams();
}

uint64_t MigrationReceiver::bytesReceived() const {
  absl::MutexLock lock(&mu_);
  uint64_t bytes = 0;
  for (const Connection* connection : connections_) bytes += connection->bytesReceived();
  return bytes;
}

ReceiverStats MigrationReceiver::stats() const {
  absl::MutexLock lock(&mu_);
  ReceiverStats stats = stats_;
  if (!connections_.empty()) {
    stats.bytes_received = 0;
    for (const Connection* connection : connections_) {
      stats.bytes_received += connection->bytesReceived();
    }
  }
  return stats;
}

void MigrationReceiver::setState(ReceiverState state) {
  absl::MutexLock lock(&mu_);
  stats_.state = state;
}

absl::Status MigrationReceiver::run(Connection& connection, StreamAcceptor* acceptor) {
  {
    absl::MutexLock lock(&mu_);
    main_ = &connection;
    connections_.push_back(&connection);
  }
  absl::Status status = receive(connection, acceptor);
  if (acceptor != nullptr) acceptor->close();
  if (!status.ok()) status = streamFailure(connection, status);
  stopStreams();
  {
    absl::MutexLock lock(&mu_);
    stats_.bytes_received = 0;
    for (const Connection* counted : connections_) {
      stats_.bytes_received += counted->bytesReceived();
    }
    connections_.clear();
    main_ = nullptr;
  }
  if (status.ok()) return status;
  vm_.discard();
  if (disks_ != nullptr) disks_->discard();
  // The sender is told why, unless it is the one that stopped.
  if (!absl::IsAborted(status) && !absl::IsCancelled(status)) {
    connection.sendError(FrameType::kError, std::string(status.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    stats_.state = ReceiverState::kFailed;
    stats_.error = std::string(status.message());
  }
  log_.warn("incoming migration from {} failed, nothing runs here: {}", connection.peer(),
            status.message());
  return status;
}

absl::Status MigrationReceiver::streamFailure(Connection& main, absl::Status status) {
  absl::Status failed;
  {
    absl::MutexLock lock(&mu_);
    failed = stream_error_;
  }
  if (failed.ok() || !absl::IsCancelled(status) || main.cancelled() || !main.interrupted()) {
    return status;  // not the data stream's doing (e.g. the source's own cancel frame)
  }
  // The main connection was interrupted for the data stream's failure. A source that failed
  // or cancelled says so on the main connection before it closes its data streams: its own
  // message, if it is there, explains better than the broken stream.
  main.clearInterrupt();
  if (main.waitReadable(absl::Milliseconds(100)).ok()) {
    auto header = main.next();
    if (!header.ok() && (absl::IsAborted(header.status()) || absl::IsCancelled(header.status()))) {
      return header.status();
    }
  }
  return failed;
}

absl::Status MigrationReceiver::receive(Connection& connection, StreamAcceptor* acceptor) {
  absl::Status greeted = hello(connection, acceptor);
  // Every stream joined (or none will): no one else may connect.
  if (acceptor != nullptr) acceptor->close();
  RETURN_IF_ERROR(greeted);
  setState(ReceiverState::kLayout);
  RETURN_IF_ERROR(layout(connection));
  setState(ReceiverState::kMemory);
  // The data streams write memory from now on (their sender waits for the layout's
  // acceptance too).
  for (const auto& stream : streams_) {
    DataStream* data = stream.get();
    data->thread = std::thread([this, data] { streamThread(*data); });
  }
  while (true) {
    RETURN_IF_ERROR(awaitFrame(connection));
    ASSIGN_OR_RETURN(FrameHeader header, connection.next());
    switch (static_cast<FrameType>(header.type)) {
      case FrameType::kPages:
        RETURN_IF_ERROR(pages(connection, header, main_scratch_));
        break;
      case FrameType::kRound: {
        flotilla::v1::MigrationRound round;
        RETURN_IF_ERROR(connection.readMessage(header, round));
        // Every page of the round, from every stream, is in memory before the sender hears
        // so: it starts the next round only then, so that no page of the next round can
        // overtake this round's copy on another stream. It also times its rounds up to here,
        // so that its rate is this side's too (compressed data can travel faster than it
        // unpacks).
        RETURN_IF_ERROR(awaitStreams(false, round.round()));
        {
          absl::MutexLock lock(&mu_);
          stats_.rounds = round.round();
        }
        RETURN_IF_ERROR(connection.send(FrameType::kRoundDone, round));
        break;
      }
      case FrameType::kDiskData:
        if (disks_ == nullptr || disks_->finished()) {
          return absl::DataLossError(
              fmt::format("{} sent disk data it did not announce", connection.peer()));
        }
        RETURN_IF_ERROR(disks_->receive(connection, header));
        {
          absl::MutexLock lock(&mu_);
          stats_.disk_bytes = disks_->bytesWritten();
        }
        break;
      case FrameType::kDisksDone: {
        flotilla::v1::MigrationDisks done;
        RETURN_IF_ERROR(connection.readMessage(header, done));
        if (disks_ == nullptr || disks_->finished()) {
          return absl::DataLossError(
              fmt::format("{} finished disks it did not announce", connection.peer()));
        }
        RETURN_IF_ERROR(disks_->finish(done));
        log_.info("{} disks from {}: {} bytes of data", done.disks_size(), connection.peer(),
                  disks_->bytesWritten());
        break;
      }
      case FrameType::kDeviceState: {
        device_state_.assign(header.length, '\0');
        const iovec piece{device_state_.data(), device_state_.size()};
        RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&piece, 1)));
        RETURN_IF_ERROR(connection.verify());
        have_device_state_ = true;
        break;
      }
      case FrameType::kComplete: {
        RETURN_IF_ERROR(connection.verify());
        if (!have_device_state_) {
          return absl::DataLossError(fmt::format(
              "{} completed the migration without sending the device state", connection.peer()));
        }
        if (disks_ != nullptr && !disks_->finished()) {
          return absl::DataLossError(fmt::format(
              "{} completed the migration without finishing its disks", connection.peer()));
        }
        // The last pages of every stream first.
        RETURN_IF_ERROR(awaitStreams(true, 0));
        setState(ReceiverState::kLoading);
        if (options_.stop_point) options_.stop_point("target-loading");
        RETURN_IF_ERROR(annotate(vm_.load(device_state_), "loading the migrated VM"));
        RETURN_IF_ERROR(connection.sendEmpty(FrameType::kReady));
        setState(ReceiverState::kReady);
        if (options_.stop_point) options_.stop_point("target-ready");
        // Only kGo lets the guest run here: without it (the sender cancelled, the connection
        // broke) the VM is discarded, and the source, which never sent it, still has the guest.
        ASSIGN_OR_RETURN(FrameHeader go, connection.expect(FrameType::kGo));
        (void)go;
        RETURN_IF_ERROR(connection.verify());
        if (options_.stop_point) options_.stop_point("target-go");
        RETURN_IF_ERROR(annotate(vm_.resume(), "resuming the migrated VM"));
        setState(ReceiverState::kResumed);
        if (absl::Status told = connection.sendEmpty(FrameType::kResumed); !told.ok()) {
          log_.warn("the guest runs here, but telling {} failed: {}", connection.peer(),
                    told.message());
        }
        const ReceiverStats done = stats();
        log_.info("incoming migration from {} done: {} pages, {} zero pages, {} rounds, {} streams",
                  connection.peer(), done.pages, done.zero_pages, done.rounds, stream_count_);
        return absl::OkStatus();
      }
      default:
        return absl::DataLossError(fmt::format("{} sent a {} frame while {}", connection.peer(),
                                               frameTypeName(static_cast<FrameType>(header.type)),
                                               receiverStateName(stats().state)));
    }
  }
}

absl::Status MigrationReceiver::hello(Connection& connection, StreamAcceptor* acceptor) {
  ASSIGN_OR_RETURN(FrameHeader header, connection.expect(FrameType::kHello));
  flotilla::v1::MigrationHello hello;
  RETURN_IF_ERROR(connection.readMessage(header, hello));
  if (hello.version_major() != kVersionMajor) {
    return absl::FailedPreconditionError(
        fmt::format("{} speaks migration protocol {}.{}, this VMM {}.{}: upgrade one of them",
                    connection.peer(), hello.version_major(), hello.version_minor(), kVersionMajor,
                    kVersionMinor));
  }
  if (options_.token.empty() || !sameToken(hello.token(), options_.token)) {
    return absl::PermissionDeniedError(fmt::format(
        "{} presented a wrong migration token: this target accepts only the one it was started "
        "with, once",
        connection.peer()));
  }
  flotilla::v1::MigrationHelloReply reply;
  reply.set_version_major(kVersionMajor);
  reply.set_version_minor(kVersionMinor);
  capabilities_ = hello.capabilities() & kKnownCapabilities;
  if ((capabilities_ & kCapabilityStreams) != 0) {
    // Several streams only with a way to accept them, and only when asked for more than one.
    if (acceptor == nullptr || hello.streams() <= 1) {
      capabilities_ &= ~kCapabilityStreams;
    } else {
      stream_count_ = std::min(hello.streams(), kMaxStreams);
      ASSIGN_OR_RETURN(session_, randomSession());
      reply.set_streams(stream_count_);
      reply.set_session(session_);
    }
  }
  reply.set_capabilities(capabilities_);
  {
    absl::MutexLock lock(&mu_);
    stats_.streams = stream_count_;
  }
  RETURN_IF_ERROR(connection.send(FrameType::kHelloReply, reply));
  if (stream_count_ > 1) RETURN_IF_ERROR(joinStreams(connection, *acceptor));
  return absl::OkStatus();
}

absl::Status MigrationReceiver::joinStreams(Connection& main, StreamAcceptor& acceptor) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + main.ioTimeout();
  std::vector<std::unique_ptr<DataStream>> joined(stream_count_);
  uint32_t count = 0;
  while (count + 1 < stream_count_) {
    // The source sends nothing on the main connection until its streams joined, but an error
    // or the end of the stream (it could not connect them).
    if (main.inputPending()) {
      ASSIGN_OR_RETURN(FrameHeader header, main.next());
      return absl::DataLossError(fmt::format("{} sent a {} frame while its data streams joined",
                                             main.peer(),
                                             frameTypeName(static_cast<FrameType>(header.type))));
    }
    const absl::Duration left = deadline - clock.monotonicNow();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          fmt::format("only {} of the {} data streams {} announced joined within {}", count,
                      stream_count_ - 1, main.peer(), absl::FormatDuration(main.ioTimeout())));
    }
    auto accepted = acceptor.accept(std::min(left, absl::Milliseconds(100)));
    if (absl::IsDeadlineExceeded(accepted.status())) continue;
    if (!accepted.ok()) return annotate(accepted.status(), "accepting a migration data stream");
    std::unique_ptr<Connection> candidate = std::move(*accepted);
    candidate->setIoTimeout(std::min(main.ioTimeout(), kJoinHelloTimeout));
    auto index = admitStream(*candidate);
    if (index.ok() && joined[*index] != nullptr) {
      index = absl::AlreadyExistsError(fmt::format("stream {} already joined", *index));
    }
    if (!index.ok()) {
      // Whoever it is, it does not get in, and the migration goes on.
      log_.warn("refused a connection from {} that wanted to join the migration: {}",
                candidate->peer(), index.status().message());
      candidate->sendError(FrameType::kError, std::string(index.status().message()));
      continue;
    }
    candidate->setIoTimeout(main.ioTimeout());
    auto stream = std::make_unique<DataStream>();
    stream->index = *index;
    stream->connection = std::move(candidate);
    joined[*index] = std::move(stream);
    ++count;
  }
  // Counted only once they are kept: streams of a join that failed go with `joined`.
  {
    absl::MutexLock lock(&mu_);
    for (auto& stream : joined) {
      if (stream == nullptr) continue;
      connections_.push_back(stream->connection.get());
      streams_.push_back(std::move(stream));
    }
  }
  log_.info("{} data streams from {} joined", count, main.peer());
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> MigrationReceiver::admitStream(Connection& candidate) {
  ASSIGN_OR_RETURN(FrameHeader header, candidate.expect(FrameType::kHello));
  flotilla::v1::MigrationHello hello;
  RETURN_IF_ERROR(candidate.readMessage(header, hello));
  if (hello.version_major() != kVersionMajor) {
    return absl::FailedPreconditionError(
        fmt::format("it speaks migration protocol {}.{}, this VMM {}.{}", hello.version_major(),
                    hello.version_minor(), kVersionMajor, kVersionMinor));
  }
  // The token, and the session only the main connection was told: nothing else joins.
  if (!sameToken(hello.token(), options_.token) || !sameToken(hello.session(), session_)) {
    return absl::PermissionDeniedError(
        "it is not a stream of this migration (wrong token or session)");
  }
  if (hello.stream_index() == 0 || hello.stream_index() >= stream_count_) {
    return absl::InvalidArgumentError(
        fmt::format("it claims to be stream {} of {}", hello.stream_index(), stream_count_));
  }
  flotilla::v1::MigrationHelloReply reply;
  reply.set_version_major(kVersionMajor);
  reply.set_version_minor(kVersionMinor);
  reply.set_capabilities(capabilities_);
  reply.set_streams(stream_count_);
  RETURN_IF_ERROR(candidate.send(FrameType::kHelloReply, reply));
  return hello.stream_index();
}

absl::Status MigrationReceiver::disks(Connection& connection, const FrameHeader& header) {
  flotilla::v1::MigrationDisks announced;
  RETURN_IF_ERROR(connection.readMessage(header, announced));
  if ((capabilities_ & kCapabilityDisks) == 0) {
    return absl::DataLossError(
        fmt::format("{} announced disks without asking at hello", connection.peer()));
  }
  ASSIGN_OR_RETURN(
      disks_, DiskWriter::open(announced, [this](uint32_t index) { return vm_.diskPath(index); }));
  return absl::OkStatus();
}

absl::Status MigrationReceiver::layout(Connection& connection) {
  ASSIGN_OR_RETURN(FrameHeader header, connection.next());
  if (header.type == static_cast<uint16_t>(FrameType::kDisks)) {
    // A cold migration with disks: their files exist, at their sizes, before the VM that
    // opens them is built.
    RETURN_IF_ERROR(disks(connection, header));
    ASSIGN_OR_RETURN(header, connection.next());
  }
  if (header.type != static_cast<uint16_t>(FrameType::kLayout)) {
    return absl::DataLossError(fmt::format("{} sent a {} frame where a memory layout frame was due",
                                           connection.peer(),
                                           frameTypeName(static_cast<FrameType>(header.type))));
  }
  flotilla::v1::MigrationMemoryLayout layout;
  RETURN_IF_ERROR(connection.readMessage(header, layout));
  if (layout.page_size() != kPageBytes || layout.memory_bytes() % kPageBytes != 0) {
    return absl::DataLossError(fmt::format("{} announced pages of {} bytes and {} bytes of memory",
                                           connection.peer(), layout.page_size(),
                                           layout.memory_bytes()));
  }
  RETURN_IF_ERROR(vm_.prepare(layout));
  memory_ = vm_.memory();
  if (memory_.size() != layout.memory_bytes()) {
    return absl::InternalError(fmt::format("prepared {} bytes of memory for a layout of {}",
                                           memory_.size(), layout.memory_bytes()));
  }
  return connection.sendEmpty(FrameType::kLayoutAccepted);
}

absl::Status MigrationReceiver::awaitFrame(Connection& connection) {
  uint64_t seen = bytesReceived();
  while (true) {
    absl::Status ready = connection.waitReadable(connection.ioTimeout());
    if (!absl::IsDeadlineExceeded(ready)) return ready;
    const uint64_t now = bytesReceived();
    if (now == seen) {
      return absl::DeadlineExceededError(
          fmt::format("nothing came from {} on any of its {} streams for {}", connection.peer(),
                      stream_count_, absl::FormatDuration(connection.ioTimeout())));
    }
    seen = now;
  }
}

absl::Status MigrationReceiver::awaitStreams(bool complete, uint32_t round) {
  if (streams_.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  auto delivered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!stream_error_.ok()) return true;
    for (const auto& stream : streams_) {
      if (stream->complete) continue;  // nothing more comes from it
      if (complete || stream->last_round < static_cast<int64_t>(round)) return false;
    }
    return true;
  };
  mu_.Await(absl::Condition(&delivered));
  return stream_error_;
}

void MigrationReceiver::streamThread(DataStream& stream) {
  setCurrentThreadName(fmt::format("migration-r{}", stream.index));
  absl::Status status = receiveStream(stream);
  if (status.ok()) return;
  absl::MutexLock lock(&mu_);
  if (stopping_ || !stream_error_.ok()) return;
  stream_error_ = annotate(status, fmt::format("data stream {}", stream.index));
  // The main connection's reader stops waiting for its next frame.
  if (main_ != nullptr) main_->interrupt();
}

absl::Status MigrationReceiver::receiveStream(DataStream& stream) {
  Connection& connection = *stream.connection;
  while (true) {
    RETURN_IF_ERROR(awaitFrame(connection));
    ASSIGN_OR_RETURN(FrameHeader header, connection.next());
    switch (static_cast<FrameType>(header.type)) {
      case FrameType::kPages:
        RETURN_IF_ERROR(pages(connection, header, stream.scratch));
        break;
      case FrameType::kRound: {
        flotilla::v1::MigrationRound round;
        RETURN_IF_ERROR(connection.readMessage(header, round));
        absl::MutexLock lock(&mu_);
        if (static_cast<int64_t>(round.round()) <= stream.last_round) {
          return absl::DataLossError(
              fmt::format("{} ended round {} on data stream {} after round {}", connection.peer(),
                          round.round(), stream.index, stream.last_round));
        }
        stream.last_round = round.round();
        break;
      }
      case FrameType::kComplete: {
        RETURN_IF_ERROR(connection.verify());
        absl::MutexLock lock(&mu_);
        stream.complete = true;
        return absl::OkStatus();
      }
      default:
        return absl::DataLossError(
            fmt::format("{} sent a {} frame, which only the main connection carries",
                        connection.peer(), frameTypeName(static_cast<FrameType>(header.type))));
    }
  }
}

void MigrationReceiver::stopStreams() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (const auto& stream : streams_) {
    // A stream that delivered everything has ended; the others are cut off.
    stream->connection->cancel();
    if (stream->thread.joinable()) stream->thread.join();
  }
}

absl::Status MigrationReceiver::pages(Connection& connection, const FrameHeader& header,
                                      BatchScratch& scratch) {
  auto compression = compressionOfFlags(header.flags);
  if (!compression.ok()) return compression.status();
  const bool compressed = *compression != Compression::kNone;
  if (compressed && (capabilities_ & capabilityOf(*compression)) == 0) {
    return absl::DataLossError(fmt::format("{} sent {} page data it did not negotiate",
                                           connection.peer(), compressionName(*compression)));
  }
  uint32_t counts[2] = {0, 0};  // pages, compressed data bytes
  const iovec head{counts, sizeof(counts)};
  RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&head, 1)));
  if (counts[0] == 0 || counts[0] > kMaxPagesPerBatch || (!compressed && counts[1] != 0)) {
    return absl::DataLossError(fmt::format("{} sent a page batch of {} pages (1 to {} allowed)",
                                           connection.peer(), counts[0], kMaxPagesPerBatch));
  }
  std::vector<uint64_t>& entries = scratch.entries;
  entries.resize(counts[0]);
  const iovec list{entries.data(), entries.size() * sizeof(uint64_t)};
  RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&list, 1)));
  auto checked = checkBatchEntries(entries, memory_.size());
  if (!checked.ok()) {
    return annotate(checked.status(), fmt::format("a page batch from {}", connection.peer()));
  }
  const uint32_t data_pages = *checked;
  const uint64_t data_bytes = compressed ? counts[1] : uint64_t{data_pages} * kPageBytes;
  if (header.length != sizeof(counts) + entries.size() * sizeof(uint64_t) + data_bytes ||
      (compressed && (data_pages == 0 || data_bytes == 0))) {
    return absl::DataLossError(
        fmt::format("{} sent a page batch of {} bytes for {} pages with data", connection.peer(),
                    header.length, data_pages));
  }
  if (compressed) {
    // Into scratch buffers first: nothing reaches guest memory before it checked out.
    scratch.compressed.resize(data_bytes);
    const iovec piece{scratch.compressed.data(), scratch.compressed.size()};
    RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&piece, 1)));
    RETURN_IF_ERROR(connection.verify());
    if (scratch.codec == nullptr || scratch.codec->compression() != *compression) {
      scratch.codec = std::make_unique<Codec>(*compression);
    }
    scratch.decompressed.resize(uint64_t{data_pages} * kPageBytes);
    RETURN_IF_ERROR(annotate(scratch.codec->decompress(scratch.compressed, scratch.decompressed),
                             fmt::format("a page batch from {}", connection.peer())));
    size_t next = 0;
    for (uint64_t entry : entries) {
      if ((entry & kZeroPageFlag) != 0) continue;
      std::memcpy(memory_.data() + entry, scratch.decompressed.data() + next * kPageBytes,
                  kPageBytes);
      ++next;
    }
  } else {
    std::vector<iovec>& data = scratch.data;
    data.clear();
    for (uint64_t entry : entries) {
      if ((entry & kZeroPageFlag) != 0) continue;
      uint8_t* page = memory_.data() + entry;
      if (!data.empty() &&
          static_cast<uint8_t*>(data.back().iov_base) + data.back().iov_len == page) {
        data.back().iov_len += kPageBytes;
      } else {
        data.push_back({page, kPageBytes});
      }
    }
    RETURN_IF_ERROR(connection.readPayload(data));
    RETURN_IF_ERROR(connection.verify());
  }
  for (uint64_t entry : entries) {
    if ((entry & kZeroPageFlag) != 0) zeroPage(memory_.data() + (entry & ~kZeroPageFlag));
  }
  absl::MutexLock lock(&mu_);
  stats_.pages += data_pages;
  stats_.zero_pages += entries.size() - data_pages;
  return absl::OkStatus();
}

}  // namespace flotilla::migration
