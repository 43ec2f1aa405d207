// MigrationSender (see sender.h).
#include "migration/sender.h"

#include <algorithm>
#include <cstring>

#include "common/status.h"
#include "fmt/format.h"
#include "migration/convergence.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::migration {

const char* phaseName(MigrationPhase phase) {
  switch (phase) {
    case MigrationPhase::kIdle:
      return "idle";
    case MigrationPhase::kSetup:
      return "setup";
    case MigrationPhase::kPrecopy:
      return "precopy";
    case MigrationPhase::kSwitchover:
      return "switchover";
    case MigrationPhase::kCompleted:
      return "completed";
    case MigrationPhase::kFailed:
      return "failed";
    case MigrationPhase::kUnknown:
      return "unknown";
  }
  return "?";
}

MigrationSender::MigrationSender(SourceVm& vm, SendOptions options, Clock& clock)
    : vm_(vm), options_(std::move(options)), clock_(clock), log_(Logger("migration")) {}

bool MigrationSender::cancel() {
  absl::MutexLock lock(&mu_);
  if (handed_over_) return false;
  cancelled_ = true;
  // Interrupted, not closed: the target is told in a cancel frame.
  if (connection_ != nullptr) connection_->interrupt();
  return true;
}

MigrationStats MigrationSender::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool MigrationSender::sourceRunning() const {
  absl::MutexLock lock(&mu_);
  return !paused_;
}

absl::Status MigrationSender::run(Connection& connection) {
  const absl::Duration start = clock_.monotonicNow();
  {
    absl::MutexLock lock(&mu_);
    connection_ = &connection;
    stats_.phase = MigrationPhase::kSetup;
    if (cancelled_) connection.interrupt();
  }
  memory_ = vm_.memory();
  buffer_.resize(kMaxPagesPerBatch * kPageBytes);
  absl::Status status = precopy(connection);
  if (status.ok()) status = switchover(connection);
  update([&](MigrationStats& stats) {
    stats.total_time = clock_.monotonicNow() - start;
    stats.bytes_sent = connection.bytesSent();
  });
  if (!status.ok()) fail(connection, status);
  absl::MutexLock lock(&mu_);
  connection_ = nullptr;
  return status;
}

void MigrationSender::fail(Connection& connection, const absl::Status& status) {
  bool handed_over = false;
  bool cancelled = false;
  {
    absl::MutexLock lock(&mu_);
    handed_over = handed_over_;
    cancelled = cancelled_;
  }
  if (handed_over) {
    update([&](MigrationStats& stats) {
      stats.phase = MigrationPhase::kUnknown;
      stats.error = std::string(status.message());
    });
    log_.error(
        "the connection to {} failed after the target was told to run the guest: {}; this VM "
        "stays paused until it is known whether the target runs it",
        connection.peer(), status.message());
    return;
  }
  // Tell the target (unless it is the one that failed or the connection is gone), then make
  // this VM whole again.
  if (!absl::IsAborted(status)) {
    connection.sendError(cancelled ? FrameType::kCancel : FrameType::kError,
                         std::string(status.message()));
  }
  vm_.setThrottle(0);
  if (absl::Status stopped = vm_.stopDirtyLog(); !stopped.ok()) {
    log_.warn("stopping dirty logging: {}", stopped.message());
  }
  bool paused = false;
  {
    absl::MutexLock lock(&mu_);
    paused = paused_;
  }
  if (paused) {
    if (absl::Status resumed = vm_.resume(); !resumed.ok()) {
      log_.error("resuming the VM after the failed migration: {}", resumed.message());
    } else {
      absl::MutexLock lock(&mu_);
      paused_ = false;
    }
  }
  update([&](MigrationStats& stats) {
    stats.phase = MigrationPhase::kFailed;
    stats.throttle_percent = 0;
    stats.error = std::string(status.message());
  });
  log_.warn("migration to {} failed, the VM runs here: {}", connection.peer(), status.message());
}

absl::Status MigrationSender::precopy(Connection& connection) {
  const flotilla::v1::MigrationMemoryLayout layout = vm_.layout();
  if (layout.memory_bytes() != memory_.size() || layout.memory_bytes() % kPageBytes != 0) {
    return absl::InternalError("the VM's memory does not match its layout");
  }
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_version_minor(kVersionMinor);
  hello.set_capabilities(capabilityOf(options_.compression));
  hello.set_token(options_.token);
  RETURN_IF_ERROR(connection.send(FrameType::kHello, hello));
  ASSIGN_OR_RETURN(FrameHeader header, connection.expect(FrameType::kHelloReply));
  flotilla::v1::MigrationHelloReply reply;
  RETURN_IF_ERROR(connection.readMessage(header, reply));
  if (reply.version_major() != kVersionMajor) {
    return absl::FailedPreconditionError(
        fmt::format("{} speaks migration protocol {}.{}, this VMM {}.{}", connection.peer(),
                    reply.version_major(), reply.version_minor(), kVersionMajor, kVersionMinor));
  }
  if (options_.compression != Compression::kNone) {
    if ((reply.capabilities() & capabilityOf(options_.compression)) != 0) {
      codec_ = std::make_unique<Codec>(options_.compression);
    } else {
      log_.warn("{} does not take {} compression: page data goes uncompressed", connection.peer(),
                compressionName(options_.compression));
    }
  }
  RETURN_IF_ERROR(connection.send(FrameType::kLayout, layout));
  ASSIGN_OR_RETURN(header, connection.expect(FrameType::kLayoutAccepted));
  RETURN_IF_ERROR(connection.verify());

  pending_ = vmm::DirtyBitmap(layout.memory_bytes() / kPageBytes);
  vmm::DirtyBitmap& dirty = pending_;
  RETURN_IF_ERROR(vm_.startDirtyLog());
  if (options_.cold) {
    // Cold: the guest stops first; one pass over its memory, then the switchover.
    RETURN_IF_ERROR(pauseVm());
    ASSIGN_OR_RETURN(std::vector<ByteRange> populated, vm_.populated());
    return sendRanges(connection, populated);
  }
  update([](MigrationStats& stats) { stats.phase = MigrationPhase::kPrecopy; });
  const absl::Duration precopy_start = clock_.monotonicNow();
  pace_start_ = precopy_start;
  paced_bytes_ = 0;

  // Round 0: what the guest ever touched, zero pages left out.
  ASSIGN_OR_RETURN(std::vector<ByteRange> populated, vm_.populated());
  absl::Duration round_start = precopy_start;
  uint64_t round_bytes_start = processed_bytes_;
  RETURN_IF_ERROR(sendRanges(connection, populated));
  RETURN_IF_ERROR(endRound(connection, 0, 0));
  ConvergenceTracker tracker(options_.auto_converge);
  for (uint32_t round = 1;; ++round) {
    ASSIGN_OR_RETURN(uint64_t added, vm_.fetchDirtyLog(dirty));
    (void)added;
    const absl::Duration now = clock_.monotonicNow();
    const RoundFigures figures{
        .sent_bytes = processed_bytes_ - round_bytes_start,
        .dirty_bytes = dirty.count() * kPageBytes,
        .duration = now - round_start,
    };
    const ConvergenceDecision decision =
        tracker.afterRound(figures, {.downtime_limit = options_.downtime_limit,
                                     .max_rounds = options_.max_rounds,
                                     .timeout = options_.timeout,
                                     .elapsed = now - precopy_start,
                                     .round = round});
    update([&](MigrationStats& stats) {
      stats.round = round;
      stats.bytes_sent = connection.bytesSent();
      stats.remaining_bytes = figures.dirty_bytes;
      stats.bandwidth = tracker.bandwidth();
      stats.dirty_rate = tracker.dirtyRate();
      stats.predicted_downtime = decision.predicted_downtime;
      stats.throttle_percent = decision.throttle_percent;
    });
    log_.info("round {}: {} bytes of data in {}, {:.0f} MB/s; {} bytes dirty, pause would be {}",
              round - 1, figures.sent_bytes, absl::FormatDuration(figures.duration),
              tracker.bandwidth() / 1e6, figures.dirty_bytes,
              absl::FormatDuration(decision.predicted_downtime));
    if (decision.throttle_changed) {
      log_.info(
          "auto-converge: the guest dirties {:.0f} MB/s, the link carries {:.0f} MB/s: "
          "throttling the vCPUs by {}%",
          tracker.dirtyRate() / 1e6, tracker.bandwidth() / 1e6, decision.throttle_percent);
      vm_.setThrottle(decision.throttle_percent);
    }
    if (decision.action == ConvergenceAction::kSwitchover) break;
    if (decision.action == ConvergenceAction::kGiveUp) {
      if (options_.force_switchover) {
        log_.warn("{}; switching over anyway (predicted pause {})", decision.reason,
                  absl::FormatDuration(decision.predicted_downtime));
        break;
      }
      return absl::DeadlineExceededError(
          fmt::format("the migration does not converge: {} (use auto-converge, a higher "
                      "downtime limit or more bandwidth, or force the switchover)",
                      decision.reason));
    }
    round_start = now;
    round_bytes_start = processed_bytes_;
    RETURN_IF_ERROR(sendPages(connection, dirty, false));
    RETURN_IF_ERROR(endRound(connection, round, dirty.count()));
    dirty.clear();
  }
  return absl::OkStatus();
}

absl::Status MigrationSender::endRound(Connection& connection, uint32_t round, uint64_t pages) {
  flotilla::v1::MigrationRound info;
  info.set_round(round);
  info.set_pages(pages);
  RETURN_IF_ERROR(connection.send(FrameType::kRound, info));
  // Until the target has it all: the round's time, and so the measured rate, is the slower
  // side's (with compression, the link can outrun the target's decompression).
  ASSIGN_OR_RETURN(FrameHeader header, connection.expect(FrameType::kRoundDone));
  flotilla::v1::MigrationRound done;
  RETURN_IF_ERROR(connection.readMessage(header, done));
  if (done.round() != round) {
    return absl::DataLossError(fmt::format("{} finished round {} where round {} was due",
                                           connection.peer(), done.round(), round));
  }
  return absl::OkStatus();
}

absl::Status MigrationSender::pauseVm() {
  update([](MigrationStats& stats) { stats.phase = MigrationPhase::kSwitchover; });
  paused_at_ = clock_.monotonicNow();
  RETURN_IF_ERROR(vm_.pause());
  absl::MutexLock lock(&mu_);
  paused_ = true;
  if (cancelled_) return absl::CancelledError("the migration was cancelled");
  return absl::OkStatus();
}

absl::Status MigrationSender::switchover(Connection& connection) {
  bool paused = false;
  {
    absl::MutexLock lock(&mu_);
    paused = paused_;
  }
  if (!paused) RETURN_IF_ERROR(pauseVm());
  const absl::Duration paused_done = clock_.monotonicNow();
  // What the last round left dirty, and what the guest dirtied since.
  ASSIGN_OR_RETURN(uint64_t added, vm_.fetchDirtyLog(pending_));
  (void)added;
  const uint64_t last_pages = pending_.count();
  RETURN_IF_ERROR(sendPages(connection, pending_, false));
  pending_.clear();
  const absl::Duration pages_done = clock_.monotonicNow();
  ASSIGN_OR_RETURN(std::string state, vm_.saveDeviceState());
  const iovec piece{state.data(), state.size()};
  RETURN_IF_ERROR(connection.send(FrameType::kDeviceState, std::span<const iovec>(&piece, 1)));
  RETURN_IF_ERROR(connection.sendEmpty(FrameType::kComplete));
  const absl::Duration state_done = clock_.monotonicNow();
  ASSIGN_OR_RETURN(FrameHeader header, connection.expect(FrameType::kReady));
  RETURN_IF_ERROR(connection.verify());
  const absl::Duration ready_at = clock_.monotonicNow();
  {
    // From here on the guest is the target's: a failure can no longer resume it here.
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("the migration was cancelled");
    handed_over_ = true;
  }
  RETURN_IF_ERROR(connection.sendEmpty(FrameType::kGo));
  ASSIGN_OR_RETURN(header, connection.expect(FrameType::kResumed));
  RETURN_IF_ERROR(connection.verify());
  const absl::Duration downtime = clock_.monotonicNow() - paused_at_;
  (void)vm_.stopDirtyLog();
  update([&](MigrationStats& stats) {
    stats.phase = MigrationPhase::kCompleted;
    stats.downtime = downtime;
    stats.remaining_bytes = 0;
  });
  log_.info("migrated to {}: {} rounds, {} bytes sent, paused {}", connection.peer(), stats().round,
            connection.bytesSent(), absl::FormatDuration(downtime));
  log_.info(
      "switchover: pausing {}, last {} pages {}, device state ({} bytes) {}, target loading {}, "
      "go to resumed {}",
      absl::FormatDuration(paused_done - paused_at_), last_pages,
      absl::FormatDuration(pages_done - paused_done), state.size(),
      absl::FormatDuration(state_done - pages_done), absl::FormatDuration(ready_at - state_done),
      absl::FormatDuration(clock_.monotonicNow() - ready_at));
  return absl::OkStatus();
}

absl::Status MigrationSender::sendRanges(Connection& connection,
                                         const std::vector<ByteRange>& ranges) {
  vmm::DirtyBitmap pages(memory_.size() / kPageBytes);
  for (const ByteRange& range : ranges) {
    const uint64_t first = range.offset / kPageBytes;
    const uint64_t end = std::min<uint64_t>(
        (range.offset + range.length + kPageBytes - 1) / kPageBytes, pages.pages());
    if (end > first) pages.setRange(first, end - first);
  }
  return sendPages(connection, pages, true);
}

absl::Status MigrationSender::sendPages(Connection& connection, const vmm::DirtyBitmap& pages,
                                        bool skip_zero) {
  absl::Status status = absl::OkStatus();
  uint64_t zero = 0;
  uint64_t data = 0;
  pages.forEachRun([&](uint64_t first, uint64_t count) {
    for (uint64_t page = first; page < first + count && status.ok(); ++page) {
      const uint64_t offset = page * kPageBytes;
      // The guest may be writing this page right now: a page with data is copied first, so
      // that the checksum, the zero test and what goes on the wire all see the same bytes. A
      // page that changes after it was read is dirty again and goes in the next round. Most
      // pages of a first pass are zeroes: those are only read, never copied.
      const uint8_t* guest_page = memory_.data() + offset;
      uint8_t* copy = buffer_.data() + batch_data_pages_ * kPageBytes;
      bool is_zero = vmm::isZeroPage(guest_page);
      if (!is_zero) {
        std::memcpy(copy, guest_page, kPageBytes);
        is_zero = vmm::isZeroPage(copy);
      }
      if (is_zero) {
        if (skip_zero) continue;
        entries_.push_back(offset | kZeroPageFlag);
        ++zero;
      } else {
        entries_.push_back(offset);
        ++batch_data_pages_;
        ++data;
        processed_bytes_ += kPageBytes;
      }
      if (entries_.size() == kMaxPagesPerBatch) status = sendBatch(connection);
    }
  });
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(sendBatch(connection));
  update([&](MigrationStats& stats) {
    stats.zero_pages += zero;
    stats.pages_sent += data;
    stats.bytes_sent = connection.bytesSent();
  });
  return absl::OkStatus();
}

absl::Status MigrationSender::sendBatch(Connection& connection) {
  if (entries_.empty()) return absl::OkStatus();
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("the migration was cancelled");
  }
  const std::span<const uint8_t> data(buffer_.data(), batch_data_pages_ * kPageBytes);
  const bool compressed = codec_ != nullptr && !data.empty() && codec_->compress(data, compressed_);
  const uint32_t header[2] = {static_cast<uint32_t>(entries_.size()),
                              compressed ? static_cast<uint32_t>(compressed_.size()) : 0};
  std::vector<iovec> pieces;
  pieces.push_back({const_cast<uint32_t*>(header), sizeof(header)});
  pieces.push_back({entries_.data(), entries_.size() * sizeof(uint64_t)});
  if (compressed) {
    pieces.push_back({compressed_.data(), compressed_.size()});
  } else {
    pieces.push_back({const_cast<uint8_t*>(data.data()), data.size()});
  }
  const uint64_t bytes = sizeof(header) + entries_.size() * sizeof(uint64_t) +
                         (compressed ? compressed_.size() : data.size());
  absl::Status sent = connection.send(FrameType::kPages, pieces,
                                      compressed ? frameFlagOf(codec_->compression()) : 0);
  entries_.clear();
  batch_data_pages_ = 0;
  RETURN_IF_ERROR(sent);
  if (compressed) update([](MigrationStats& stats) { ++stats.compressed_batches; });
  pace(bytes);
  return absl::OkStatus();
}

void MigrationSender::pace(uint64_t bytes) {
  if (options_.bandwidth_limit == 0) return;
  paced_bytes_ += bytes;
  const absl::Duration due = absl::Seconds(static_cast<double>(paced_bytes_) /
                                           static_cast<double>(options_.bandwidth_limit));
  const absl::Duration elapsed = clock_.monotonicNow() - pace_start_;
  if (due > elapsed) clock_.sleepFor(due - elapsed);
}

}  // namespace flotilla::migration
