// iSCSI LUNs through libiscsi's asynchronous API (see iscsi.h and docs/storage.md).
//
// Why the backend reconnects by itself instead of letting libiscsi do it: libiscsi 1.19's
// automatic reconnect (on unless iscsi_set_noautoreconnect) swaps a fresh context into the
// old one behind the caller's back, retries with a backoff counted in whole seconds of
// time(NULL) that grows to 30 s, keeps at least 3 s between reconnects, retries forever by
// default and never reports how long the target has been away. That cannot honour a
// reconnect_timeout. So automatic reconnect is off: a dropped session cancels every command
// (SCSI_STATUS_CANCELLED), the backend destroys the context, puts the commands back in its
// own queue, logs in again on a new context with its own backoff (100 ms doubling to 2 s),
// and sends the commands again once the new session is up.
#include "storage/iscsi.h"

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/sigpipe.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "storage/iscsi_fencing.h"
#include "storage/iscsi_internal.h"

namespace flotilla::storage {

// One SCSI command: a request, or one piece of a request longer than a command may be.
struct IscsiBackend::Command {
  IscsiBackend* backend = nullptr;
  Op* op = nullptr;
  CommandKind kind = CommandKind::kRead;
  uint64_t lba = 0;
  uint32_t blocks = 0;
  std::vector<scsi_iovec> iov;  // reads and writes: this command's part of the buffers
  scsi_task* task = nullptr;    // while libiscsi has it
  int retries = 0;
};

// A request in progress: done when all its commands are.
struct IscsiBackend::Op {
  uint64_t tag = 0;
  std::function<void(BlockResult)> internal_done;  // the backend's own flush or capacity read
  BlockRequest request;                            // keeps the caller's iovecs
  std::vector<Command> commands;
  size_t remaining = 0;
  BlockResult result = BlockResult::kOk;
  std::list<Op>::iterator self;
};

absl::StatusOr<std::unique_ptr<BlockBackend>> openIscsi(const std::string& url,
                                                        const IscsiOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<IscsiBackend> backend, IscsiBackend::open(url, options));
  return std::unique_ptr<BlockBackend>(std::move(backend));
}

absl::StatusOr<std::unique_ptr<IscsiBackend>> IscsiBackend::open(const std::string& url,
                                                                 const IscsiOptions& options) {
  auto invalid = [&url](const std::string& why) {
    return absl::InvalidArgumentError(
        fmt::format("invalid iSCSI URL '{}': {}; expected iscsi://HOST[:PORT]/IQN/LUN, e.g. "
                    "iscsi://127.0.0.1:3260/iqn.2026-01.org.example:pool1/1",
                    url, why));
  };
  if (!absl::StartsWith(url, "iscsi://")) return invalid("it does not start with iscsi://");
  if (options.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        fmt::format("opening {}: connect_timeout must be positive", url));
  }
  if (options.reconnect_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        fmt::format("opening {}: reconnect_timeout must not be negative", url));
  }
  if (options.generation) {
    RETURN_IF_ERROR(
        annotate(fencingKey(*options.generation).status(), fmt::format("opening {}", url)));
  }
  // libiscsi parses URLs with a context (for its error message); this one is used for that
  // alone, on the caller's thread.
  iscsi_context* parser = iscsi_create_context(options.initiator_name.c_str());
  if (parser == nullptr) {
    return absl::InvalidArgumentError(
        fmt::format("opening {}: cannot create an iSCSI context for initiator name '{}'", url,
                    options.initiator_name));
  }
  iscsi_url* parsed = iscsi_parse_full_url(parser, url.c_str());
  if (parsed == nullptr) {
    std::string problem = urlProblem(iscsi_get_error(parser));
    iscsi_destroy_context(parser);
    return invalid(problem);
  }
  std::string portal = parsed->portal;
  std::string target = parsed->target;
  std::string user = parsed->user;
  std::string password = parsed->passwd;
  const int lun = parsed->lun;
  iscsi_destroy_url(parsed);
  iscsi_destroy_context(parser);
  if (lun < 0) return invalid("the LUN is negative");

  UniqueFd wakeup(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup.valid()) return errnoStatus(errno, fmt::format("opening {}: eventfd", url));
  std::unique_ptr<IscsiBackend> backend(new IscsiBackend(url, std::move(portal), std::move(target),
                                                         lun, std::move(user), std::move(password),
                                                         options, std::move(wakeup)));
  IscsiBackend* raw = backend.get();
  backend->thread_ = namedThread("blk-iscsi", [raw] { raw->run(); });
  // The service thread gives up on its own after connect_timeout; the margin only guards
  // against a thread that hangs.
  if (!backend->opened_.WaitForNotificationWithTimeout(options.connect_timeout +
                                                       absl::Seconds(30))) {
    return absl::DeadlineExceededError(
        fmt::format("opening {}: the login did not finish; giving up", url));
  }
  RETURN_IF_ERROR(backend->open_status_);
  return backend;
}

IscsiBackend::IscsiBackend(std::string url, std::string portal, std::string target, int lun,
                           std::string user, std::string password, IscsiOptions options,
                           UniqueFd wakeup)
    : url_(std::move(url)),
      portal_(std::move(portal)),
      target_(std::move(target)),
      lun_(lun),
      user_(std::move(user)),
      password_(std::move(password)),
      options_(std::move(options)),
      log_(Logger("storage").with("disk", url_)),
      error_limiter_(systemClock(), 10, absl::Minutes(1)),
      wakeup_(std::move(wakeup)),
      // A read-only disk never writes: there is nothing to fence, and a read-only LUN may be
      // shared by several VMs, whose generations say nothing about each other.
      fencing_key_(options_.generation && !options_.read_only
                       ? fencingKey(*options_.generation).value_or(0)
                       : 0),
      backoff_(kFirstBackoff) {}

IscsiBackend::~IscsiBackend() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  (void)::write(wakeup_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void IscsiBackend::setCompletionSink(BlockCompletionSink* sink) {
  sink_.store(sink, std::memory_order_release);
}

BlockCapabilities IscsiBackend::capabilities() const {
  BlockCapabilities capabilities;
  capabilities.discard = !options_.read_only && discard_.load(std::memory_order_acquire);
  capabilities.write_zeroes = !options_.read_only && write_zeroes_.load(std::memory_order_acquire);
  capabilities.flush = !options_.read_only;
  return capabilities;
}

void IscsiBackend::submit(std::span<BlockRequest> requests) {
  if (requests.empty()) return;
  inflight_.add(requests.size());
  if (submitDirectly(requests)) return;
  {
    absl::MutexLock lock(&mu_);
    for (BlockRequest& request : requests) {
      incoming_.push_back(Incoming{std::move(request), CommandKind::kRead, nullptr});
    }
  }
  const uint64_t one = 1;
  (void)::write(wakeup_.get(), &one, sizeof(one));
}

// When the service thread is waiting in poll() and the session is up, the caller's thread
// turns the requests into commands and writes them to the socket itself: the service thread
// then wakes only for the replies, one thread hop less per request (most of a request's
// time at queue depth 1). Otherwise the requests go through the service thread.
bool IscsiBackend::submitDirectly(std::span<BlockRequest> requests) {
  if (!service_mu_.TryLock()) return false;
  if (link_ != Link::kConnected || shutting_down_ || !ready_.empty()) {
    service_mu_.Unlock();
    return false;
  }
  for (BlockRequest& request : requests) {
    accept(Incoming{std::move(request), CommandKind::kRead, nullptr});
  }
  issueReady();
  {
    // libiscsi writes to the socket with writev() on this (the caller's) thread: a target
    // that has gone must fail the write, not kill the process (the service thread blocks
    // SIGPIPE for its whole life; callers' threads are not ours to change for longer).
    SigpipeGuard no_sigpipe;
    flushOutgoing();
  }
  // The service thread must look again when there is something for it to do: completions to
  // deliver (requests refused at once), a session that broke, bytes the socket did not take.
  const bool wake =
      !batch_.empty() || link_ != Link::kConnected || (iscsi_which_events(context_) & POLLOUT) != 0;
  service_mu_.Unlock();
  if (wake) {
    const uint64_t one = 1;
    (void)::write(wakeup_.get(), &one, sizeof(one));
  }
  return true;
}

absl::Status IscsiBackend::runInternal(CommandKind kind) {
  absl::Notification done;
  BlockResult result = BlockResult::kIoError;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError(fmt::format("{} is closing", url_));
    incoming_.push_back(Incoming{BlockRequest{}, kind, [&](BlockResult r) {
                                   result = r;
                                   done.Notify();
                                 }});
  }
  const uint64_t one = 1;
  (void)::write(wakeup_.get(), &one, sizeof(one));
  done.WaitForNotification();
  if (result == BlockResult::kOk) return absl::OkStatus();
  if (fenced()) return absl::FailedPreconditionError(fence_message_);
  return absl::UnavailableError(fmt::format(
      "{} on iSCSI LUN {} failed: the target is unreachable or reported an error (see the log)",
      kind == CommandKind::kSync ? "SYNCHRONIZE CACHE" : "READ CAPACITY", url_));
}

absl::Status IscsiBackend::drain() {
  inflight_.waitIdle();
  if (options_.read_only) return absl::OkStatus();
  return runInternal(CommandKind::kSync);
}

absl::StatusOr<uint64_t> IscsiBackend::resize(uint64_t bytes) {
  if (bytes == 0 || bytes % block_size_ != 0) {
    return absl::InvalidArgumentError(
        fmt::format("cannot resize {} to {} bytes: the size must be a non-zero multiple of {}",
                    url_, bytes, block_size_));
  }
  RETURN_IF_ERROR(runInternal(CommandKind::kReadCapacity));
  const uint64_t now = sizeBytes();
  if (now != bytes) {
    return absl::FailedPreconditionError(fmt::format(
        "iSCSI LUN {} is {} bytes, not {}: an iSCSI LUN is resized on the target, then the "
        "disk is resized to match",
        url_, now, bytes));
  }
  return now;
}

// --- Service thread -------------------------------------------------------------------------

void IscsiBackend::run() {
  // libiscsi writes to the socket with writev(), which raises SIGPIPE when the target has
  // gone. This thread is ours alone: it keeps SIGPIPE blocked for its whole life, so such a
  // write fails with EPIPE (the thread-directed signal stays pending, harmlessly) instead of
  // killing the process.
  sigset_t sigpipe;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, nullptr);
  Clock& clock = systemClock();
  absl::MutexLock service(&service_mu_);
  startAttempt();
  while (true) {
    if (attempt_failure_) attemptFailed();

    pollfd fds[2] = {{wakeup_.get(), POLLIN, 0}, {-1, 0, 0}};
    nfds_t count = 1;
    const absl::Duration now = clock.monotonicNow();
    absl::Duration wait = absl::InfiniteDuration();
    auto until = [&](absl::Duration at) {
      wait = std::min(wait, std::max(at - now, absl::ZeroDuration()));
    };
    if (context_ != nullptr) {
      const int events = iscsi_which_events(context_);
      if (events == 0) {
        until(now + absl::Milliseconds(100));  // libiscsi's advice when it wants nothing
      } else {
        fds[1] = {iscsi_get_fd(context_), static_cast<short>(events), 0};
        count = 2;
      }
    }
    if (link_ == Link::kConnecting) until(attempt_deadline_);
    if (link_ == Link::kIdle) until(next_attempt_at_);
    if (link_ == Link::kConnected) until(next_nop_at_);
    if (outage_start_ && !outage_expired_) until(*outage_start_ + options_.reconnect_timeout);
    iscsi_context* const polled = context_;
    service_mu_.Unlock();  // submitDirectly() may issue commands meanwhile
    const int polled_rc = ::poll(fds, count, pollTimeoutMs(wait));
    const int poll_error = errno;
    service_mu_.Lock();
    if (polled_rc < 0 && poll_error != EINTR) {
      log_.limited(error_limiter_, LogLevel::kError, "poll: {}", std::strerror(poll_error));
    }
    // A session that broke under submitDirectly() meanwhile is gone: not its events.
    if (context_ != polled) count = 1;

    if ((fds[0].revents & POLLIN) != 0) {
      uint64_t value = 0;
      (void)::read(wakeup_.get(), &value, sizeof(value));
    }
    std::vector<Incoming> incoming;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      incoming.swap(incoming_);
      stop = stopping_;
    }
    if (stop) {
      shutting_down_ = true;
      for (Incoming& in : incoming) accept(std::move(in));  // each fails at once
      shutdown();
      return;
    }
    for (Incoming& in : incoming) accept(std::move(in));

    if (count == 2 && fds[1].revents != 0 && context_ != nullptr) {
      const int revents = fds[1].revents;
      const bool broken = (revents & (POLLERR | POLLHUP)) != 0;
      if (link_ == Link::kConnecting && phase_ == Phase::kTcp && broken) {
        failAttempt(phaseError(Phase::kTcp, transportError(context_)));
      } else {
        const int rc = iscsi_service(context_, revents);
        if (link_ == Link::kConnecting && (rc < 0 || broken) && !attempt_failure_) {
          // The connection broke during the login (not a refusal: that comes as the login's
          // own failure, through its callback).
          failAttempt(absl::UnavailableError(
              fmt::format("iSCSI portal {} ({}) dropped the connection while {}: {}", portal_, url_,
                          phaseVerb(), transportError(context_))));
        } else if (link_ == Link::kConnected && (rc < 0 || broken || suspect_)) {
          connectionLost(rc < 0 || broken ? transportError(context_)
                                          : std::string("a command failed in transport"));
        }
      }
    }
    if (attempt_failure_) attemptFailed();

    const absl::Duration later = clock.monotonicNow();
    if (link_ == Link::kConnecting && later >= attempt_deadline_) {
      failAttempt(absl::DeadlineExceededError(
          fmt::format("no answer from iSCSI portal {} within {} while {} ({})", portal_,
                      absl::FormatDuration(options_.connect_timeout), phaseVerb(), url_)));
      attemptFailed();
    }
    if (link_ == Link::kIdle && later >= next_attempt_at_) {
      startAttempt();
      if (attempt_failure_) attemptFailed();
    }
    if (outage_start_ && !outage_expired_ && later - *outage_start_ >= options_.reconnect_timeout) {
      expireOutage();
    }
    if (link_ == Link::kConnected && later >= next_nop_at_) {
      if (iscsi_get_nops_in_flight(context_) > kMaxNopsInFlight) {
        connectionLost(fmt::format("no answer to {} NOP-Outs", kMaxNopsInFlight + 1));
      } else {
        (void)iscsi_nop_out_async(context_, nullptr, nullptr, 0, nullptr);
        next_nop_at_ = later + kNopInterval;
      }
    }
    if (link_ == Link::kConnected) {
      issueReady();
      flushOutgoing();
    }
    deliver();
  }
}

void IscsiBackend::connectionLost(const std::string& why) {
  if (fenced()) {
    // Nothing to reconnect for: this backend must not use the LUN again.
    log_.info("the session with {} ended ({}); fenced, not reconnecting", portal_, why);
    teardownContext();
    suspect_ = false;
    link_ = Link::kGaveUp;
    failWaiting();
    return;
  }
  const absl::Duration now = systemClock().monotonicNow();
  log_.warn("lost the session with {}: {}; reconnecting (requests wait up to {})", portal_, why,
            absl::FormatDuration(options_.reconnect_timeout));
  if (!outage_start_) outage_start_ = now;
  teardownContext();
  suspect_ = false;
  link_ = Link::kIdle;
  next_attempt_at_ = now;  // at once; the backoff applies to failed attempts
  backoff_ = kFirstBackoff;
}

void IscsiBackend::teardownContext() {
  // Destroying the context calls back every command it holds with SCSI_STATUS_CANCELLED when
  // the session was logged in; commandDone() queues them again (or fails them on shutdown).
  tearing_down_ = true;
  iscsi_destroy_context(context_);
  context_ = nullptr;
  tearing_down_ = false;
  if (phase_task_ != nullptr) {
    scsi_free_scsi_task(phase_task_);
    phase_task_ = nullptr;
  }
  // Commands libiscsi dropped without calling back (it does so when the login had not
  // finished): their tasks are ours to free (libiscsi frees only its PDUs).
  std::vector<Command*> orphans(issued_.begin(), issued_.end());
  issued_.clear();
  for (Command* command : orphans) {
    scsi_free_scsi_task(command->task);
    command->task = nullptr;
  }
  for (Command* command : orphans) {
    if (shutting_down_ || ++command->retries > kMaxRetries) {
      finishCommand(*command, BlockResult::kIoError);
    } else {
      ready_.push_back(command);
    }
  }
}

void IscsiBackend::expireOutage() {
  outage_expired_ = true;
  std::vector<Command*> waiting(ready_.begin(), ready_.end());
  ready_.clear();
  log_.error(
      "{} has been unreachable for {}: failing {} commands with I/O errors; new requests fail at "
      "once until the session is back (reconnecting goes on)",
      portal_, absl::FormatDuration(options_.reconnect_timeout), waiting.size());
  for (Command* command : waiting) finishCommand(*command, BlockResult::kIoError);
}

void IscsiBackend::accept(Incoming incoming) {
  ops_.emplace_back();
  Op& op = ops_.back();
  op.self = std::prev(ops_.end());
  op.tag = incoming.request.tag;
  op.internal_done = std::move(incoming.internal_done);
  op.request = std::move(incoming.request);
  const BlockRequest& request = op.request;

  auto finishNow = [&](BlockResult result) {
    if (op.internal_done) {
      op.internal_done(result);
    } else {
      batch_.push_back(BlockCompletion{op.tag, result});
    }
    ops_.erase(op.self);
  };
  if (shutting_down_ || outage_expired_ || fenced()) {
    finishNow(BlockResult::kIoError);
    return;
  }

  CommandKind kind = incoming.internal;
  if (!op.internal_done) {
    std::string problem = checkRequest(request, sizeBytes(), block_size_, options_.read_only);
    if (!problem.empty()) {
      log_.limited(error_limiter_, LogLevel::kWarn, "refused request: {}", problem);
      finishNow(BlockResult::kIoError);
      return;
    }
    const BlockCapabilities can = capabilities();
    if ((request.op == BlockOp::kDiscard && !can.discard) ||
        (request.op == BlockOp::kWriteZeroes && !can.write_zeroes)) {
      finishNow(BlockResult::kUnsupported);
      return;
    }
    if (request.op == BlockOp::kFlush && options_.read_only) {
      finishNow(BlockResult::kOk);  // nothing was written
      return;
    }
    if (request.op != BlockOp::kFlush && requestBytes(request) == 0) {
      finishNow(BlockResult::kOk);
      return;
    }
    switch (request.op) {
      case BlockOp::kRead:
        kind = CommandKind::kRead;
        break;
      case BlockOp::kWrite:
        kind = CommandKind::kWrite;
        break;
      case BlockOp::kFlush:
        kind = CommandKind::kSync;
        break;
      case BlockOp::kDiscard:
        kind = CommandKind::kUnmap;
        break;
      case BlockOp::kWriteZeroes:
        kind = CommandKind::kWriteSame;
        break;
    }
  }

  // Cut the request into commands no longer than the target (and kMaxCommandBytes) allows.
  const uint64_t bytes =
      kind == CommandKind::kSync || kind == CommandKind::kReadCapacity ? 0 : requestBytes(request);
  uint64_t max_blocks = kMaxCommandBytes / block_size_;
  if ((kind == CommandKind::kRead || kind == CommandKind::kWrite) && max_transfer_blocks_ > 0) {
    max_blocks = std::min<uint64_t>(max_blocks, max_transfer_blocks_);
  } else if (kind == CommandKind::kWriteSame && max_write_same_blocks_ > 0) {
    max_blocks = std::min<uint64_t>(max_blocks, max_write_same_blocks_);
  } else if (kind == CommandKind::kUnmap) {
    max_blocks = max_unmap_blocks_ > 0 ? max_unmap_blocks_ : UINT32_MAX;
  }
  max_blocks = std::max<uint64_t>(max_blocks, 1);
  const uint64_t total_blocks = bytes / block_size_;
  const size_t pieces =
      total_blocks == 0 ? 1 : static_cast<size_t>((total_blocks + max_blocks - 1) / max_blocks);
  op.commands.resize(pieces);
  op.remaining = pieces;
  for (size_t i = 0; i < pieces; ++i) {
    Command& command = op.commands[i];
    command.backend = this;
    command.op = &op;
    command.kind = kind;
    const uint64_t first = i * max_blocks;
    const uint64_t blocks = std::min(max_blocks, total_blocks - std::min(first, total_blocks));
    command.lba = request.offset / block_size_ + first;
    command.blocks = static_cast<uint32_t>(blocks);
    if (kind == CommandKind::kRead || kind == CommandKind::kWrite) {
      for (const iovec& v : sliceIovecs(request.iov, first * block_size_, blocks * block_size_)) {
        command.iov.push_back(scsi_iovec{v.iov_base, v.iov_len});
      }
    }
    ready_.push_back(&command);
  }
}

void IscsiBackend::issueReady() {
  while (!ready_.empty() && !suspect_) {
    Command* command = ready_.front();
    if (!issue(*command)) {
      log_.limited(error_limiter_, LogLevel::kWarn, "cannot queue a {} command: {}",
                   command->kind == CommandKind::kRead ? "read" : "SCSI", contextError(context_));
      suspect_ = true;
      break;
    }
    ready_.pop_front();
  }
  if (suspect_) connectionLost("libiscsi refused to queue a command");
}

// Writes the commands libiscsi queued right away, instead of after another trip through
// poll() (the socket is almost always writable): one system call and one wake-up fewer per
// batch, which is most of the service thread's work at high queue depths.
void IscsiBackend::flushOutgoing() {
  if (link_ != Link::kConnected || (iscsi_which_events(context_) & POLLOUT) == 0) return;
  if (iscsi_service(context_, POLLOUT) < 0 || suspect_) {
    connectionLost(suspect_ ? std::string("a command failed in transport")
                            : transportError(context_));
  }
}

bool IscsiBackend::issue(Command& command) {
  const int block_size = static_cast<int>(block_size_);
  const uint32_t bytes = command.blocks * block_size_;
  scsi_task* task = nullptr;
  switch (command.kind) {
    case CommandKind::kRead:
      task = iscsi_read16_iov_task(context_, lun_, command.lba, bytes, block_size, 0, 0, 0, 0, 0,
                                   &IscsiBackend::onCommand, &command, command.iov.data(),
                                   static_cast<int>(command.iov.size()));
      break;
    case CommandKind::kWrite:
      task = iscsi_write16_iov_task(context_, lun_, command.lba, nullptr, bytes, block_size, 0, 0,
                                    0, 0, 0, &IscsiBackend::onCommand, &command, command.iov.data(),
                                    static_cast<int>(command.iov.size()));
      break;
    case CommandKind::kSync:
      task = iscsi_synchronizecache16_task(context_, lun_, 0, 0, 0, 0, &IscsiBackend::onCommand,
                                           &command);
      break;
    case CommandKind::kUnmap: {
      unmap_list range{command.lba, command.blocks};  // copied into the command's data
      task = iscsi_unmap_task(context_, lun_, 0, 0, &range, 1, &IscsiBackend::onCommand, &command);
      break;
    }
    case CommandKind::kWriteSame:
      // One zero block written over the range; UNMAP=0 so that the blocks stay allocated and
      // read back as zeroes whatever the LUN's provisioning.
      task = iscsi_writesame16_task(context_, lun_, command.lba, zero_block_.data(), block_size_,
                                    command.blocks, 0, 0, 0, 0, &IscsiBackend::onCommand, &command);
      break;
    case CommandKind::kReadCapacity:
      task = iscsi_readcapacity16_task(context_, lun_, &IscsiBackend::onCommand, &command);
      break;
  }
  if (task == nullptr) return false;
  command.task = task;
  issued_.insert(&command);
  return true;
}

void IscsiBackend::onCommand(iscsi_context* /*context*/, int status, void* /*data*/,
                             void* command) {
  auto* c = static_cast<Command*>(command);
  c->backend->commandDone(*c, status, c->task);
}

void IscsiBackend::commandDone(Command& command, int status, scsi_task* task) {
  issued_.erase(&command);
  command.task = nullptr;
  TaskPtr owned(task);
  const bool transport = status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
                         status == SCSI_STATUS_TIMEOUT;
  if (tearing_down_ || transport) {
    // The session is going away: the command is sent again on the next one.
    if (!tearing_down_) suspect_ = true;
    if (shutting_down_ || ++command.retries > kMaxRetries) {
      finishCommand(command, BlockResult::kIoError);
    } else {
      ready_.push_back(&command);
    }
    return;
  }
  if (status == SCSI_STATUS_GOOD) {
    if (command.kind == CommandKind::kReadCapacity && owned != nullptr) {
      auto* capacity = static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(owned.get()));
      if (capacity == nullptr) {
        finishCommand(command, BlockResult::kIoError);
        return;
      }
      size_bytes_.store((capacity->returned_lba + 1) * capacity->block_length,
                        std::memory_order_release);
    }
    finishCommand(command, BlockResult::kOk);
    return;
  }
  // RESERVATION CONFLICT is final, never retried: another initiator holds the LUN. With a
  // generation, so is the UNIT ATTENTION saying this session's registration was removed (the
  // first command after a newer generation's PREEMPT gets it): it is the takeover itself,
  // seen before any conflict (and also by a command that would not conflict, a read).
  const bool registration_removed = fencing_key_ != 0 && status == SCSI_STATUS_CHECK_CONDITION &&
                                    owned != nullptr &&
                                    owned->sense.key == SCSI_SENSE_UNIT_ATTENTION &&
                                    (owned->sense.ascq == kAscqRegistrationsPreempted ||
                                     owned->sense.ascq == kAscqReservationsPreempted);
  if (status == SCSI_STATUS_RESERVATION_CONFLICT || registration_removed) {
    const std::string seen = registration_removed
                                 ? fmt::format("UNIT ATTENTION {}", senseText(owned.get()))
                                 : std::string("RESERVATION CONFLICT");
    if (fencing_key_ != 0) {
      markFenced(fmt::format("a command at LBA {} got {}", command.lba, seen));
    } else {
      log_.limited(error_limiter_, LogLevel::kError,
                   "SCSI command at LBA {} ({} blocks) failed with {}: another initiator holds a "
                   "persistent reservation of the LUN; not retried",
                   command.lba, command.blocks, seen);
    }
    finishCommand(command, BlockResult::kIoError);
    return;
  }
  const bool retryable = status == SCSI_STATUS_BUSY || status == SCSI_STATUS_TASK_SET_FULL ||
                         (status == SCSI_STATUS_CHECK_CONDITION && owned != nullptr &&
                          owned->sense.key == SCSI_SENSE_UNIT_ATTENTION);
  if (retryable && ++command.retries <= kMaxRetries) {
    ready_.push_back(&command);
    return;
  }
  if (status == SCSI_STATUS_CHECK_CONDITION && owned != nullptr &&
      owned->sense.key == SCSI_SENSE_ILLEGAL_REQUEST &&
      (command.kind == CommandKind::kUnmap || command.kind == CommandKind::kWriteSame) &&
      (owned->sense.ascq == SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE ||
       owned->sense.ascq == SCSI_SENSE_ASCQ_INVALID_FIELD_IN_CDB)) {
    // The LUN said it could and then refused: stop offering it.
    (command.kind == CommandKind::kUnmap ? discard_ : write_zeroes_).store(false);
    log_.limited(error_limiter_, LogLevel::kWarn, "the target refuses {}: {}",
                 command.kind == CommandKind::kUnmap ? "UNMAP" : "WRITE SAME(16)",
                 senseText(owned.get()));
    finishCommand(command, BlockResult::kUnsupported);
    return;
  }
  log_.limited(error_limiter_, LogLevel::kError, "SCSI command at LBA {} ({} blocks) failed: {}",
               command.lba, command.blocks,
               status == SCSI_STATUS_CHECK_CONDITION && owned != nullptr
                   ? senseText(owned.get())
                   : fmt::format("status {:#x}", status));
  finishCommand(command, BlockResult::kIoError);
}

void IscsiBackend::markFenced(const std::string& why) {
  if (fenced()) return;
  fence_message_ = fmt::format(
      "fenced: LUN {} was taken over by a newer generation (this VMM's is {}); it must not "
      "write there again",
      url_, *options_.generation);
  fenced_.store(true, std::memory_order_release);
  outage_start_.reset();
  log_.error("{} ({}); every request fails from now on", fence_message_, why);
  failWaiting();
}

void IscsiBackend::failWaiting() {
  std::vector<Command*> waiting(ready_.begin(), ready_.end());
  ready_.clear();
  for (Command* command : waiting) finishCommand(*command, BlockResult::kIoError);
}

void IscsiBackend::finishCommand(Command& command, BlockResult result) {
  Op& op = *command.op;  // `command` is gone once the op is
  if (result != BlockResult::kOk && op.result == BlockResult::kOk) op.result = result;
  if (--op.remaining > 0) return;
  if (op.internal_done) {
    op.internal_done(op.result);
  } else {
    batch_.push_back(BlockCompletion{op.tag, op.result});
  }
  ops_.erase(op.self);
}

void IscsiBackend::deliver() {
  if (batch_.empty()) return;
  BlockCompletionSink* sink = sink_.load(std::memory_order_acquire);
  if (sink == nullptr) {
    log_.error("completions without a completion sink: setCompletionSink() was not called");
    std::abort();
  }
  sink->completed(batch_);
  inflight_.done(batch_.size());
  batch_.clear();
}

void IscsiBackend::shutdown() {
  failWaiting();
  if (context_ != nullptr) teardownContext();
  deliver();
  if (!opened_.HasBeenNotified()) {
    open_status_ = absl::CancelledError(fmt::format("{}: closed while logging in", url_));
    opened_.Notify();
  }
}

}  // namespace flotilla::storage
