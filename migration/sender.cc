// MigrationSender (see sender.h).
#include "migration/sender.h"

#include <algorithm>
#include <cstring>

#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "migration/convergence.h"
#include "migration/disk_transfer.h"
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

MigrationSender::~MigrationSender() {
  stopStreams();
}

bool MigrationSender::cancel() {
  absl::MutexLock lock(&mu_);
  if (handed_over_) return false;
  cancelled_ = true;
  // Interrupted, not closed: the target is told in a cancel frame on the main connection.
  if (connection_ != nullptr) connection_->interrupt();
  for (Connection* data : data_connections_) data->interrupt();
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

uint64_t MigrationSender::bytesSent() const {
  uint64_t bytes = 0;
  for (const auto& stream : streams_) bytes += stream->connection->bytesSent();
  return bytes;
}

absl::Status MigrationSender::run(Connection& connection, const StreamConnector& connect_stream) {
  const absl::Duration start = clock_.monotonicNow();
  {
    absl::MutexLock lock(&mu_);
    connection_ = &connection;
    stats_.phase = MigrationPhase::kSetup;
    if (cancelled_) connection.interrupt();
  }
  memory_ = vm_.memory();
  auto main_stream = std::make_unique<PageStream>();
  main_stream->connection = &connection;
  streams_.push_back(std::move(main_stream));
  absl::Status status = precopy(connection, connect_stream);
  if (status.ok()) status = switchover(connection);
  update([&](MigrationStats& stats) {
    stats.total_time = clock_.monotonicNow() - start;
    stats.bytes_sent = bytesSent();
  });
  if (!status.ok()) fail(connection, status);
  stopStreams();
  absl::MutexLock lock(&mu_);
  connection_ = nullptr;
  data_connections_.clear();
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
  // this VM whole again. The data streams carry no message: they just end.
  if (!absl::IsAborted(status)) {
    connection.sendError(cancelled ? FrameType::kCancel : FrameType::kError,
                         std::string(status.message()));
  }
  for (size_t i = 1; i < streams_.size(); ++i) streams_[i]->connection->cancel();
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

absl::Status MigrationSender::hello(Connection& connection, const StreamConnector& connect_stream) {
  if (options_.streams < 1 || options_.streams > kMaxStreams) {
    return absl::InvalidArgumentError(
        fmt::format("a migration uses 1 to {} streams, not {}", kMaxStreams, options_.streams));
  }
  if (options_.streams > 1 && !connect_stream) {
    return absl::InternalError("several migration streams need a way to connect them");
  }
  if (options_.with_disks && !options_.cold) {
    return absl::InvalidArgumentError(
        "disks move only with a cold migration: the guest must not write them meanwhile");
  }
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_version_minor(kVersionMinor);
  uint64_t capabilities = capabilityOf(options_.compression);
  if (options_.streams > 1) {
    capabilities |= kCapabilityStreams;
    hello.set_streams(options_.streams);
  }
  if (options_.with_disks) capabilities |= kCapabilityDisks;
  hello.set_capabilities(capabilities);
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
      streams_[0]->codec = std::make_unique<Codec>(options_.compression);
    } else {
      log_.warn("{} does not take {} compression: page data goes uncompressed", connection.peer(),
                compressionName(options_.compression));
    }
  }
  if (options_.with_disks && (reply.capabilities() & kCapabilityDisks) == 0) {
    return absl::FailedPreconditionError(
        fmt::format("{} does not take disks (an older flotilla-vmm?): move them another way",
                    connection.peer()));
  }
  uint32_t count = 1;
  if (options_.streams > 1) {
    if ((reply.capabilities() & kCapabilityStreams) == 0 || reply.streams() <= 1) {
      log_.warn("{} does not take several streams: the migration uses one", connection.peer());
    } else if (reply.streams() > options_.streams) {
      return absl::DataLossError(fmt::format("{} accepted {} streams where {} were asked for",
                                             connection.peer(), reply.streams(), options_.streams));
    } else {
      count = reply.streams();
    }
  }
  for (uint32_t index = 1; index < count; ++index) {
    RETURN_IF_ERROR(openStream(connection, reply, index, count, connect_stream));
  }
  update([count](MigrationStats& stats) { stats.streams = count; });
  if (count > 1) {
    log_.info("{} streams to {}", count, connection.peer());
    for (size_t i = 1; i < streams_.size(); ++i) {
      PageStream* stream = streams_[i].get();
      stream->thread = std::thread([this, stream] { streamThread(*stream); });
    }
  }
  return absl::OkStatus();
}

absl::Status MigrationSender::openStream(Connection& main,
                                         const flotilla::v1::MigrationHelloReply& reply,
                                         uint32_t index, uint32_t count,
                                         const StreamConnector& connect_stream) {
  auto connected = connect_stream(index);
  if (!connected.ok()) {
    return annotate(connected.status(), fmt::format("opening data stream {} of {} to {}", index,
                                                    count - 1, main.peer()));
  }
  auto stream = std::make_unique<PageStream>();
  stream->index = index;
  stream->owned = std::move(*connected);
  stream->connection = stream->owned.get();
  if (streams_[0]->codec != nullptr) {
    stream->codec = std::make_unique<Codec>(streams_[0]->codec->compression());
  }
  {
    absl::MutexLock lock(&mu_);
    data_connections_.push_back(stream->connection);
    if (cancelled_) stream->connection->interrupt();
  }
  Connection& connection = *stream->connection;
  streams_.push_back(std::move(stream));
  // Its own hello: the token and the session the target gave on the main connection, so
  // that no other connection can join this migration.
  flotilla::v1::MigrationHello hello;
  hello.set_version_major(kVersionMajor);
  hello.set_version_minor(kVersionMinor);
  hello.set_capabilities(reply.capabilities());
  hello.set_token(options_.token);
  hello.set_streams(count);
  hello.set_session(reply.session());
  hello.set_stream_index(index);
  RETURN_IF_ERROR(connection.send(FrameType::kHello, hello));
  ASSIGN_OR_RETURN(FrameHeader header, connection.expect(FrameType::kHelloReply));
  flotilla::v1::MigrationHelloReply joined;
  RETURN_IF_ERROR(connection.readMessage(header, joined));
  if (joined.version_major() != kVersionMajor) {
    return absl::DataLossError(fmt::format("{} answered stream {} with protocol {}.{}",
                                           connection.peer(), index, joined.version_major(),
                                           joined.version_minor()));
  }
  return absl::OkStatus();
}

absl::Status MigrationSender::precopy(Connection& connection,
                                      const StreamConnector& connect_stream) {
  const flotilla::v1::MigrationMemoryLayout layout = vm_.layout();
  if (layout.memory_bytes() != memory_.size() || layout.memory_bytes() % kPageBytes != 0) {
    return absl::InternalError("the VM's memory does not match its layout");
  }
  RETURN_IF_ERROR(hello(connection, connect_stream));
  if (options_.with_disks) RETURN_IF_ERROR(announceDisks(connection));
  RETURN_IF_ERROR(connection.send(FrameType::kLayout, layout));
  RETURN_IF_ERROR(connection.expect(FrameType::kLayoutAccepted).status());
  RETURN_IF_ERROR(connection.verify());

  pending_ = vmm::DirtyBitmap(layout.memory_bytes() / kPageBytes);
  vmm::DirtyBitmap& dirty = pending_;
  {
    absl::MutexLock lock(&pace_mu_);
    pace_start_ = clock_.monotonicNow();
    paced_bytes_ = 0;
  }
  RETURN_IF_ERROR(vm_.startDirtyLog());
  if (options_.cold) {
    // Cold: the guest stops first; one pass over its memory, then the switchover. A page the
    // switchover sends again goes on the same stream (pages are spread by address), after.
    RETURN_IF_ERROR(pauseVm());
    if (options_.with_disks) RETURN_IF_ERROR(sendDisks(connection));
    ASSIGN_OR_RETURN(std::vector<ByteRange> populated, vm_.populated());
    return sendRanges(populated, StreamEnd::kNone, 0);
  }
  update([](MigrationStats& stats) { stats.phase = MigrationPhase::kPrecopy; });
  const absl::Duration precopy_start = clock_.monotonicNow();

  // Round 0: what the guest ever touched, zero pages left out.
  ASSIGN_OR_RETURN(std::vector<ByteRange> populated, vm_.populated());
  absl::Duration round_start = precopy_start;
  uint64_t round_bytes_start = processed_bytes_;
  RETURN_IF_ERROR(sendRanges(populated, StreamEnd::kRound, 0));
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
      stats.bytes_sent = bytesSent();
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
    RETURN_IF_ERROR(sendPages(dirty, false, StreamEnd::kRound, round));
    RETURN_IF_ERROR(endRound(connection, round, dirty.count()));
    dirty.clear();
  }
  return absl::OkStatus();
}

absl::Status MigrationSender::announceDisks(Connection& connection) {
  ASSIGN_OR_RETURN(local_disks_, vm_.localDisks());
  ASSIGN_OR_RETURN(disks_, describeDisks(local_disks_));
  // Before the layout: the target makes its files of the disks' sizes before it opens them.
  return connection.send(FrameType::kDisks, disks_);
}

absl::Status MigrationSender::sendDisks(Connection& connection) {
  // The guest is paused and its block I/O drained and flushed: the files hold what it wrote.
  flotilla::v1::MigrationDisks done;
  for (size_t i = 0; i < local_disks_.size(); ++i) {
    const LocalDisk& disk = local_disks_[i];
    const absl::Duration start = clock_.monotonicNow();
    uint64_t sent = 0;
    RETURN_IF_ERROR(readDisk(
        disk, disks_.disks(static_cast<int>(i)).size_bytes(),
        [&](uint64_t offset, std::span<const uint8_t> data) -> absl::Status {
          {
            absl::MutexLock lock(&mu_);
            if (cancelled_) return absl::CancelledError("the migration was cancelled");
          }
          const DiskDataHeader header{.disk = disk.index, .reserved = 0, .offset = offset};
          const iovec pieces[] = {{const_cast<DiskDataHeader*>(&header), sizeof(header)},
                                  {const_cast<uint8_t*>(data.data()), data.size()}};
          RETURN_IF_ERROR(connection.send(FrameType::kDiskData, pieces));
          pace(sizeof(header) + data.size());
          update([&](MigrationStats& stats) {
            stats.disk_bytes += data.size();
            stats.bytes_sent = bytesSent();
          });
          return absl::OkStatus();
        },
        sent));
    flotilla::v1::MigrationDisk* finished = done.add_disks();
    finished->set_index(disk.index);
    finished->set_size_bytes(disks_.disks(static_cast<int>(i)).size_bytes());
    finished->set_data_bytes(sent);
    log_.info("disk {} ({}): {} bytes of data of {} sent in {}", disk.index, disk.path, sent,
              finished->size_bytes(), absl::FormatDuration(clock_.monotonicNow() - start));
  }
  return connection.send(FrameType::kDisksDone, done);
}

absl::Status MigrationSender::endRound(Connection& connection, uint32_t round, uint64_t pages) {
  flotilla::v1::MigrationRound info;
  info.set_round(round);
  info.set_pages(pages);
  RETURN_IF_ERROR(connection.send(FrameType::kRound, info));
  // Until the target has it all, from every stream: the round's time, and so the measured
  // rate, is the slower side's (with compression, the link can outrun the target's
  // decompression), and no page of the next round can overtake one of this round on another
  // stream.
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
  // What the last round left dirty, and what the guest dirtied since; then each data stream
  // ends, so that the target has every page before it loads the state.
  ASSIGN_OR_RETURN(uint64_t added, vm_.fetchDirtyLog(pending_));
  (void)added;
  const uint64_t last_pages = pending_.count();
  RETURN_IF_ERROR(sendPages(pending_, false, StreamEnd::kComplete));
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
  if (options_.stop_point) options_.stop_point("source-ready");
  RETURN_IF_ERROR(handOver(connection));
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
            bytesSent(), absl::FormatDuration(downtime));
  log_.info(
      "switchover: pausing {}, last {} pages {}, device state ({} bytes) {}, target loading {}, "
      "go to resumed {}",
      absl::FormatDuration(paused_done - paused_at_), last_pages,
      absl::FormatDuration(pages_done - paused_done), state.size(),
      absl::FormatDuration(state_done - pages_done), absl::FormatDuration(ready_at - state_done),
      absl::FormatDuration(clock_.monotonicNow() - ready_at));
  return absl::OkStatus();
}

absl::Status MigrationSender::handOver(Connection& connection) {
  // The target sends nothing between kReady and kGo but an error, and closes its end only
  // when it failed or died: either way it will never run the guest, and this VM resumes.
  if (connection.inputPending()) {
    auto next = connection.next();
    if (!next.ok()) return annotate(next.status(), "after ready, before go");
    const FrameHeader& header = *next;
    return absl::DataLossError(fmt::format("{} sent a {} frame where it was waiting for go",
                                           connection.peer(),
                                           frameTypeName(static_cast<FrameType>(header.type))));
  }
  {
    // From here on the guest is the target's: a failure can no longer resume it here.
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("the migration was cancelled");
    handed_over_ = true;
  }
  const uint64_t before = connection.bytesSent();
  absl::Status sent = connection.sendEmpty(FrameType::kGo);
  if (!sent.ok() && connection.bytesSent() == before) {
    // Not one byte of kGo left this host: the target cannot run the guest.
    absl::MutexLock lock(&mu_);
    handed_over_ = false;
  }
  return sent;
}

absl::Status MigrationSender::sendRanges(const std::vector<ByteRange>& ranges, StreamEnd end,
                                         uint32_t round) {
  vmm::DirtyBitmap pages(memory_.size() / kPageBytes);
  for (const ByteRange& range : ranges) {
    const uint64_t first = range.offset / kPageBytes;
    const uint64_t end_page = std::min<uint64_t>(
        (range.offset + range.length + kPageBytes - 1) / kPageBytes, pages.pages());
    if (end_page > first) pages.setRange(first, end_page - first);
  }
  return sendPages(pages, true, end, round);
}

absl::Status MigrationSender::sendPages(const vmm::DirtyBitmap& pages, bool skip_zero,
                                        StreamEnd end, uint32_t round) {
  const PageJob job{.pages = &pages, .skip_zero = skip_zero, .end = end, .round = round};
  {
    absl::MutexLock lock(&jobs_mu_);
    job_ = job;
    ++job_generation_;
    jobs_running_ = streams_.size() - 1;
    job_error_ = absl::OkStatus();
  }
  // The main connection's share here, the data streams' on their threads meanwhile.
  if (absl::Status mine = sendShare(*streams_[0], job); !mine.ok()) abortJob(mine);
  absl::Status status;
  {
    absl::MutexLock lock(&jobs_mu_);
    auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs_mu_) { return jobs_running_ == 0; };
    jobs_mu_.Await(absl::Condition(&all_done));
    status = job_error_;
  }
  aborting_.store(false);
  uint64_t zero = 0;
  uint64_t data = 0;
  uint64_t compressed = 0;
  for (const auto& stream : streams_) {
    zero += stream->zero_pages;
    data += stream->data_pages;
    compressed += stream->compressed_batches;
  }
  processed_bytes_ += data * kPageBytes;
  update([&](MigrationStats& stats) {
    stats.zero_pages += zero;
    stats.pages_sent += data;
    stats.compressed_batches += compressed;
    stats.bytes_sent = bytesSent();
  });
  return status;
}

void MigrationSender::abortJob(const absl::Status& status) {
  {
    absl::MutexLock lock(&jobs_mu_);
    if (job_error_.ok()) job_error_ = status;
  }
  if (aborting_.exchange(true)) return;
  // Data streams blocked on a full socket give up within 100 ms; the main connection is left
  // alone, as it must still carry the error to the target.
  for (size_t i = 1; i < streams_.size(); ++i) streams_[i]->connection->interrupt();
}

void MigrationSender::streamThread(PageStream& stream) {
  setCurrentThreadName(fmt::format("migration-s{}", stream.index));
  uint64_t seen = 0;
  while (true) {
    PageJob job;
    {
      absl::MutexLock lock(&jobs_mu_);
      auto next = [this, &seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(jobs_mu_) {
        return stopping_ || job_generation_ != seen;
      };
      jobs_mu_.Await(absl::Condition(&next));
      if (stopping_) return;
      seen = job_generation_;
      job = job_;
    }
    if (absl::Status sent = sendShare(stream, job); !sent.ok()) {
      abortJob(annotate(sent, fmt::format("data stream {}", stream.index)));
    }
    absl::MutexLock lock(&jobs_mu_);
    --jobs_running_;
  }
}

void MigrationSender::stopStreams() {
  {
    absl::MutexLock lock(&jobs_mu_);
    stopping_ = true;
  }
  for (const auto& stream : streams_) {
    if (stream->thread.joinable()) stream->thread.join();
  }
}

absl::Status MigrationSender::sendShare(PageStream& stream, const PageJob& job) {
  stream.data_pages = 0;
  stream.zero_pages = 0;
  stream.compressed_batches = 0;
  if (stream.buffer.empty()) stream.buffer.resize(kMaxPagesPerBatch * kPageBytes);
  // Stream i takes the 64-page chunks (bitmap words) i, i + n, i + 2n, ...: a page always
  // travels on the same stream, so two copies of it can never arrive out of order.
  const std::span<const uint64_t> words = job.pages->words();
  const size_t count = streams_.size();
  for (size_t word = stream.index; word < words.size(); word += count) {
    uint64_t bits = words[word];
    while (bits != 0) {
      const uint64_t page = word * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
      bits &= bits - 1;
      const uint64_t offset = page * kPageBytes;
      // The guest may be writing this page right now: a page with data is copied first, so
      // that the checksum, the zero test and what goes on the wire all see the same bytes. A
      // page that changes after it was read is dirty again and goes in the next round. Most
      // pages of a first pass are zeroes: those are only read, never copied.
      const uint8_t* guest_page = memory_.data() + offset;
      uint8_t* copy = stream.buffer.data() + stream.batch_data_pages * kPageBytes;
      bool is_zero = vmm::isZeroPage(guest_page);
      if (!is_zero) {
        std::memcpy(copy, guest_page, kPageBytes);
        is_zero = vmm::isZeroPage(copy);
      }
      if (is_zero) {
        if (job.skip_zero) continue;
        stream.entries.push_back(offset | kZeroPageFlag);
        ++stream.zero_pages;
      } else {
        stream.entries.push_back(offset);
        ++stream.batch_data_pages;
        ++stream.data_pages;
      }
      if (stream.entries.size() == kMaxPagesPerBatch) RETURN_IF_ERROR(sendBatch(stream));
    }
  }
  RETURN_IF_ERROR(sendBatch(stream));
  if (stream.index == 0) return absl::OkStatus();  // its ends are the control frames
  switch (job.end) {
    case StreamEnd::kNone:
      return absl::OkStatus();
    case StreamEnd::kRound: {
      flotilla::v1::MigrationRound info;
      info.set_round(job.round);
      info.set_pages(stream.data_pages + stream.zero_pages);
      return stream.connection->send(FrameType::kRound, info);
    }
    case StreamEnd::kComplete:
      return stream.connection->sendEmpty(FrameType::kComplete);
  }
  return absl::OkStatus();
}

absl::Status MigrationSender::sendBatch(PageStream& stream) {
  if (stream.entries.empty()) return absl::OkStatus();
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("the migration was cancelled");
  }
  if (aborting_.load()) {
    return absl::UnavailableError("another stream of the migration failed");
  }
  const std::span<const uint8_t> data(stream.buffer.data(), stream.batch_data_pages * kPageBytes);
  const bool compressed =
      stream.codec != nullptr && !data.empty() && stream.codec->compress(data, stream.compressed);
  const uint32_t header[2] = {static_cast<uint32_t>(stream.entries.size()),
                              compressed ? static_cast<uint32_t>(stream.compressed.size()) : 0};
  std::vector<iovec> pieces;
  pieces.push_back({const_cast<uint32_t*>(header), sizeof(header)});
  pieces.push_back({stream.entries.data(), stream.entries.size() * sizeof(uint64_t)});
  if (compressed) {
    pieces.push_back({stream.compressed.data(), stream.compressed.size()});
  } else {
    pieces.push_back({const_cast<uint8_t*>(data.data()), data.size()});
  }
  const uint64_t bytes = sizeof(header) + stream.entries.size() * sizeof(uint64_t) +
                         (compressed ? stream.compressed.size() : data.size());
  absl::Status sent = stream.connection->send(
      FrameType::kPages, pieces, compressed ? frameFlagOf(stream.codec->compression()) : 0);
  stream.entries.clear();
  stream.batch_data_pages = 0;
  RETURN_IF_ERROR(sent);
  if (compressed) ++stream.compressed_batches;
  pace(bytes);
  return absl::OkStatus();
}

void MigrationSender::pace(uint64_t bytes) {
  if (options_.bandwidth_limit == 0) return;
  absl::Duration wait;
  {
    // One budget for all streams.
    absl::MutexLock lock(&pace_mu_);
    paced_bytes_ += bytes;
    const absl::Duration due = absl::Seconds(static_cast<double>(paced_bytes_) /
                                             static_cast<double>(options_.bandwidth_limit));
    wait = due - (clock_.monotonicNow() - pace_start_);
  }
  if (wait > absl::ZeroDuration()) clock_.sleepFor(wait);
}

}  // namespace flotilla::migration
