// IscsiBackend: a virtual disk that is a LUN of an iSCSI target, reached through libiscsi's
// asynchronous API on one service thread of the backend's own (SBC-3 READ(16), WRITE(16),
// SYNCHRONIZE CACHE(16), UNMAP, WRITE SAME(16)). The backend reconnects by itself when the
// target goes away and retries the requests in flight. Given a VM generation, every login
// takes the LUN's SCSI-3 persistent reservation for it, and a newer generation's takeover
// fences this backend off the LUN (see docs/storage.md, iscsi_fencing.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "storage/block_backend.h"
#include "storage/request_util.h"

struct iscsi_context;  // <iscsi/iscsi.h>, kept out of this header
struct scsi_task;

namespace flotilla::storage {

class IscsiBackend final : public BlockBackend {
 public:
  static absl::StatusOr<std::unique_ptr<IscsiBackend>> open(const std::string& url,
                                                            const IscsiOptions& options);
  // Fails every request still in flight with kIoError and drops the session.
  ~IscsiBackend() override;
  IscsiBackend(const IscsiBackend&) = delete;
  IscsiBackend& operator=(const IscsiBackend&) = delete;

  void setCompletionSink(BlockCompletionSink* sink) override;
  void submit(std::span<BlockRequest> requests) override;
  absl::Status drain() override;
  uint64_t sizeBytes() const override { return size_bytes_.load(std::memory_order_acquire); }
  uint32_t blockSize() const override { return block_size_; }
  bool readOnly() const override { return options_.read_only; }
  BlockCapabilities capabilities() const override;
  std::string describe() const override { return url_; }
  absl::StatusOr<uint64_t> resize(uint64_t bytes) override;

  // How many times the session was re-established after a loss (for tests and metrics).
  uint64_t reconnectCount() const { return reconnects_.load(std::memory_order_acquire); }
  // Whether a newer generation took the LUN over: every request fails from then on.
  bool fenced() const { return fenced_.load(std::memory_order_acquire); }

 private:
  // The stages of logging in to the LUN, in order. The ones from kVpdPages to kSupportedOps
  // run on the first login only (they decide the capabilities); the kFencing ones on every
  // login of a backend with a generation (iscsi_fencing.h).
  enum class Phase {
    kTcp,
    kLogin,
    kTestUnitReady,
    kCapacity,
    kVpdPages,
    kBlockLimits,
    kProvisioning,
    kSupportedOps,
    kFencingReadKeys,     // refuse when a newer generation registered
    kFencingRegister,     // REGISTER AND IGNORE EXISTING KEY with this generation's key
    kFencingCheckKeys,    // again, now registered: newer ones refuse, older ones are preempted
    kFencingPreempt,      // PREEMPT one older key (repeated)
    kFencingReservation,  // READ RESERVATION
    kFencingReserve,      // RESERVE, Write Exclusive - Registrants Only
  };
  enum class Link { kIdle, kConnecting, kConnected, kGaveUp };
  enum class CommandKind { kRead, kWrite, kSync, kUnmap, kWriteSame, kReadCapacity };
  struct Op;
  struct Command;
  // A request from another thread that the service thread has not seen yet.
  struct Incoming {
    BlockRequest request;
    CommandKind internal = CommandKind::kRead;
    std::function<void(BlockResult)> internal_done;  // set for the backend's own requests
  };

  IscsiBackend(std::string url, std::string portal, std::string target, int lun, std::string user,
               std::string password, IscsiOptions options, UniqueFd wakeup);

  // Service thread.
  void run();
  void startAttempt();
  void advanceLogin(int status, scsi_task* task);
  void failAttempt(absl::Status status);
  void attemptFailed();
  void sendStep(scsi_task* next);  // the login stage's next command (nullptr: it failed)
  void loginDone();
  void connected();
  // Fencing (iscsi_login.cc): the kFencing phases, each answer decided in fencingStep().
  void startFencing();
  void fencingStep(int status, scsi_task* task);
  void restartFencing(const std::string& why);
  void sendFencingOut(int action, uint64_t service_action_key);
  void sendReadKeys(Phase phase);
  void preemptNext();
  // A newer generation holds the LUN: every request fails from now on, nothing reconnects.
  void markFenced(const std::string& why);
  void failWaiting();
  const char* phaseVerb() const;
  void connectionLost(const std::string& why);
  void teardownContext();
  void expireOutage();
  void accept(Incoming incoming);
  bool submitDirectly(std::span<BlockRequest> requests);
  void issueReady();
  bool issue(Command& command);
  void flushOutgoing();
  void commandDone(Command& command, int status, scsi_task* task);
  void finishCommand(Command& command, BlockResult result);
  void deliver();
  void shutdown();
  absl::Status phaseError(Phase phase, const std::string& detail) const;
  absl::Status runInternal(CommandKind kind);

  static void onConnect(iscsi_context* context, int status, void* data, void* self);
  static void onLoginStep(iscsi_context* context, int status, void* data, void* self);
  static void onCommand(iscsi_context* context, int status, void* data, void* command);

  const std::string url_;
  const std::string portal_;
  const std::string target_;
  const int lun_;
  const std::string user_;
  const std::string password_;
  const IscsiOptions options_;
  const Logger log_;
  mutable LogRateLimiter error_limiter_;
  UniqueFd wakeup_;  // eventfd: new requests and shutdown

  // Set by the first login (before open() returns), read from any thread afterwards.
  uint32_t block_size_ = 512;
  std::atomic<uint64_t> size_bytes_{0};
  std::atomic<bool> discard_{false};
  std::atomic<bool> write_zeroes_{false};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<bool> fenced_{false};
  std::string fence_message_;  // written before fenced_ is set, then never again
  std::atomic<BlockCompletionSink*> sink_{nullptr};
  InflightCounter inflight_;
  absl::Notification opened_;
  absl::Status open_status_;  // written before opened_ is notified

  absl::Mutex mu_;
  std::vector<Incoming> incoming_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Everything below is the service thread's, used under service_mu_, which the thread holds
  // except while it waits in poll(); submit() takes it then to issue requests itself.
  absl::Mutex service_mu_;
  iscsi_context* context_ = nullptr;
  Link link_ = Link::kIdle;
  Phase phase_ = Phase::kTcp;
  scsi_task* phase_task_ = nullptr;  // the login stage's own command, while it runs
  int unit_attentions_ = 0;
  bool first_login_ = true;
  bool has_block_limits_page_ = false;
  bool has_provisioning_page_ = false;
  uint32_t max_transfer_blocks_ = 0;             // 0: no limit reported
  uint32_t max_unmap_blocks_ = 0;                // 0: no limit reported
  uint64_t max_write_same_blocks_ = 0;           // 0: no limit reported
  std::optional<absl::Status> attempt_failure_;  // set by a callback, handled after service
  uint64_t fencing_key_ = 0;                     // 0: no generation (or read-only): no fencing
  int fencing_rounds_ = 0;                       // of the kFencing phases, in this attempt
  std::vector<uint64_t> to_preempt_;             // older keys still to preempt, in this round
  bool suspect_ = false;                         // a command saw the transport fail: reconnect
  bool tearing_down_ = false;                    // inside iscsi_destroy_context
  bool shutting_down_ = false;
  absl::Duration attempt_deadline_;
  absl::Duration next_attempt_at_;
  absl::Duration backoff_;
  absl::Duration next_nop_at_;
  std::optional<absl::Duration> outage_start_;  // when the session was lost
  bool outage_expired_ = false;                 // lost for longer than reconnect_timeout: fail fast
  std::list<Op> ops_;
  std::deque<Command*> ready_;            // waiting to be sent
  absl::flat_hash_set<Command*> issued_;  // sent, with a libiscsi task
  std::vector<uint8_t> zero_block_;       // WRITE SAME's data
  std::vector<BlockCompletion> batch_;

  std::jthread thread_;  // last: started once everything above exists
};

}  // namespace flotilla::storage
