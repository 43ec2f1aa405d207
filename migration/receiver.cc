// MigrationReceiver (see receiver.h).
#include "migration/receiver.h"

#include <cstring>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::migration {
namespace {

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

MigrationReceiver::MigrationReceiver(TargetVm& vm, ReceiveOptions options)
    : vm_(vm), options_(std::move(options)), log_(Logger("migration")) {}

ReceiverStats MigrationReceiver::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void MigrationReceiver::setState(ReceiverState state) {
  absl::MutexLock lock(&mu_);
  stats_.state = state;
}

absl::Status MigrationReceiver::run(Connection& connection) {
  absl::Status status = receive(connection);
  {
    absl::MutexLock lock(&mu_);
    stats_.bytes_received = connection.bytesReceived();
  }
  if (status.ok()) return status;
  vm_.discard();
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

absl::Status MigrationReceiver::receive(Connection& connection) {
  RETURN_IF_ERROR(hello(connection));
  setState(ReceiverState::kLayout);
  RETURN_IF_ERROR(layout(connection));
  setState(ReceiverState::kMemory);
  while (true) {
    ASSIGN_OR_RETURN(FrameHeader header, connection.next());
    switch (static_cast<FrameType>(header.type)) {
      case FrameType::kPages:
        RETURN_IF_ERROR(pages(connection, header));
        break;
      case FrameType::kRound: {
        flotilla::v1::MigrationRound round;
        RETURN_IF_ERROR(connection.readMessage(header, round));
        {
          absl::MutexLock lock(&mu_);
          stats_.rounds = round.round();
        }
        // Every page before it is in memory: the sender times its rounds up to here, so that
        // its rate is this side's too (compressed data can travel faster than it unpacks).
        RETURN_IF_ERROR(connection.send(FrameType::kRoundDone, round));
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
        setState(ReceiverState::kLoading);
        RETURN_IF_ERROR(annotate(vm_.load(device_state_), "loading the migrated VM"));
        RETURN_IF_ERROR(connection.sendEmpty(FrameType::kReady));
        setState(ReceiverState::kReady);
        // Only kGo lets the guest run here: without it (the sender cancelled, the connection
        // broke) the VM is discarded, and the source, which never sent it, still has the guest.
        ASSIGN_OR_RETURN(FrameHeader go, connection.expect(FrameType::kGo));
        (void)go;
        RETURN_IF_ERROR(connection.verify());
        RETURN_IF_ERROR(annotate(vm_.resume(), "resuming the migrated VM"));
        setState(ReceiverState::kResumed);
        if (absl::Status told = connection.sendEmpty(FrameType::kResumed); !told.ok()) {
          log_.warn("the guest runs here, but telling {} failed: {}", connection.peer(),
                    told.message());
        }
        const ReceiverStats done = stats();
        log_.info("incoming migration from {} done: {} pages, {} zero pages, {} rounds",
                  connection.peer(), done.pages, done.zero_pages, done.rounds);
        return absl::OkStatus();
      }
      default:
        return absl::DataLossError(fmt::format("{} sent a {} frame while {}", connection.peer(),
                                               frameTypeName(static_cast<FrameType>(header.type)),
                                               receiverStateName(stats().state)));
    }
  }
}

absl::Status MigrationReceiver::hello(Connection& connection) {
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
  reply.set_capabilities(capabilities_);
  return connection.send(FrameType::kHelloReply, reply);
}

absl::Status MigrationReceiver::layout(Connection& connection) {
  ASSIGN_OR_RETURN(FrameHeader header, connection.expect(FrameType::kLayout));
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

absl::Status MigrationReceiver::pages(Connection& connection, const FrameHeader& header) {
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
  entries_.resize(counts[0]);
  const iovec list{entries_.data(), entries_.size() * sizeof(uint64_t)};
  RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&list, 1)));
  auto checked = checkBatchEntries(entries_, memory_.size());
  if (!checked.ok()) {
    return annotate(checked.status(), fmt::format("a page batch from {}", connection.peer()));
  }
  const uint32_t data_pages = *checked;
  const uint64_t data_bytes = compressed ? counts[1] : uint64_t{data_pages} * kPageBytes;
  if (header.length != sizeof(counts) + entries_.size() * sizeof(uint64_t) + data_bytes ||
      (compressed && (data_pages == 0 || data_bytes == 0))) {
    return absl::DataLossError(
        fmt::format("{} sent a page batch of {} bytes for {} pages with data", connection.peer(),
                    header.length, data_pages));
  }
  if (compressed) {
    // Into scratch buffers first: nothing reaches guest memory before it checked out.
    compressed_.resize(data_bytes);
    const iovec piece{compressed_.data(), compressed_.size()};
    RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&piece, 1)));
    RETURN_IF_ERROR(connection.verify());
    if (codec_ == nullptr || codec_->compression() != *compression) {
      codec_ = std::make_unique<Codec>(*compression);
    }
    decompressed_.resize(uint64_t{data_pages} * kPageBytes);
    RETURN_IF_ERROR(annotate(codec_->decompress(compressed_, decompressed_),
                             fmt::format("a page batch from {}", connection.peer())));
    size_t next = 0;
    for (uint64_t entry : entries_) {
      if ((entry & kZeroPageFlag) != 0) continue;
      std::memcpy(memory_.data() + entry, decompressed_.data() + next * kPageBytes, kPageBytes);
      ++next;
    }
  } else {
    data_.clear();
    for (uint64_t entry : entries_) {
      if ((entry & kZeroPageFlag) != 0) continue;
      uint8_t* page = memory_.data() + entry;
      if (!data_.empty() &&
          static_cast<uint8_t*>(data_.back().iov_base) + data_.back().iov_len == page) {
        data_.back().iov_len += kPageBytes;
      } else {
        data_.push_back({page, kPageBytes});
      }
    }
    RETURN_IF_ERROR(connection.readPayload(data_));
    RETURN_IF_ERROR(connection.verify());
  }
  for (uint64_t entry : entries_) {
    if ((entry & kZeroPageFlag) != 0) zeroPage(memory_.data() + (entry & ~kZeroPageFlag));
  }
  absl::MutexLock lock(&mu_);
  stats_.pages += data_pages;
  stats_.zero_pages += entries_.size() - data_pages;
  return absl::OkStatus();
}

}  // namespace flotilla::migration
