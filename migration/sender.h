// MigrationSender: the source side of a live (pre-copy) migration (docs/migration.md).
//
// Memory is sent while the guest runs: first every page the guest ever touched (zero pages
// skipped: the target's memory starts zeroed), then, round after round, the pages dirtied
// meanwhile (zero pages as markers), until the predicted pause (what is left at the measured
// bandwidth, plus the device state) fits the downtime limit. Then the switchover: pause
// vCPUs and devices, send the last pages and the device state, wait for the target to load
// it (kReady), tell it to run (kGo) and wait for kResumed.
//
// Outcomes of run():
//   OK                       the guest runs on the target; this VM is paused and must end.
//   error, sourceRunning()   the migration failed or was cancelled before kGo: this VM runs
//                            (it was resumed), the target discards what it got.
//   error, !sourceRunning()  the connection broke after kGo: whether the target runs the guest
//                            is unknown here; this VM stays paused (never two running copies)
//                            until whoever manages it has asked the target.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "migration/protocol.h"
#include "migration/vm_interface.h"

namespace flotilla::migration {

struct SendOptions {
  std::string token;  // the target's one-time token
  absl::Duration downtime_limit = absl::Milliseconds(300);
  uint64_t bandwidth_limit = 0;  // bytes per second; 0: no limit
  int max_rounds = 30;
  absl::Duration timeout = absl::Minutes(10);  // for the pre-copy phase
  // When the rounds do not converge (max_rounds or timeout reached): switch over anyway, with
  // a longer pause, instead of cancelling.
  bool force_switchover = false;
  // Throttle the vCPUs in steps while the guest dirties memory faster than the link carries.
  bool auto_converge = false;
  absl::Duration io_timeout = absl::Seconds(30);  // for any one read or write
  // Cold migration: pause the guest first and send its memory once (no pre-copy rounds), for
  // VMs that cannot or need not move live; the pause lasts the whole transfer.
  bool cold = false;
  // Compresses page data when the target accepts it (it goes uncompressed otherwise).
  Compression compression = Compression::kNone;
};

enum class MigrationPhase {
  kIdle,
  kSetup,       // hello, layout
  kPrecopy,     // rounds while the guest runs
  kSwitchover,  // paused: last pages, device state, handshake
  kCompleted,
  kFailed,   // the source runs again
  kUnknown,  // after kGo, no kResumed: the source stays paused
};

const char* phaseName(MigrationPhase phase);

struct MigrationStats {
  MigrationPhase phase = MigrationPhase::kIdle;
  uint32_t round = 0;
  uint64_t bytes_sent = 0;          // on the wire
  uint64_t compressed_batches = 0;  // batches whose data went compressed
  uint64_t pages_sent = 0;          // with data
  uint64_t zero_pages = 0;          // sent as markers
  uint64_t remaining_bytes = 0;     // dirty, to send next
  double dirty_rate = 0;            // bytes per second dirtied during the last round
  double bandwidth = 0;             // bytes per second measured over the last round
  absl::Duration predicted_downtime;
  absl::Duration downtime;  // from the pause to kResumed (source's view)
  absl::Duration total_time;
  int throttle_percent = 0;
  std::string error;
};

class MigrationSender {
 public:
  MigrationSender(SourceVm& vm, SendOptions options, Clock& clock = systemClock());

  absl::Status run(Connection& connection);
  // From any thread: stops a migration before kGo (the source resumes) and returns true;
  // after kGo it has no effect and returns false.
  bool cancel();
  MigrationStats stats() const;
  bool sourceRunning() const;

 private:
  absl::Status precopy(Connection& connection);
  absl::Status switchover(Connection& connection);
  absl::Status pauseVm();
  absl::Status endRound(Connection& connection, uint32_t round, uint64_t pages);
  // Sends every page of `pages` (set bits); `skip_zero` leaves zero pages out.
  absl::Status sendPages(Connection& connection, const vmm::DirtyBitmap& pages, bool skip_zero);
  absl::Status sendRanges(Connection& connection, const std::vector<ByteRange>& ranges);
  absl::Status sendBatch(Connection& connection);
  void pace(uint64_t bytes);
  void fail(Connection& connection, const absl::Status& status);
  template <typename Fn>
  void update(Fn&& fn) {
    absl::MutexLock lock(&mu_);
    fn(stats_);
  }

  SourceVm& vm_;
  const SendOptions options_;
  Clock& clock_;
  const Logger log_;
  std::span<const uint8_t> memory_;
  vmm::DirtyBitmap pending_;  // dirty pages not sent yet
  absl::Duration paused_at_;  // when the guest was paused (the downtime's start)
  // The batch being built.
  std::vector<uint64_t> entries_;
  std::vector<uint8_t> buffer_;   // copies of the batch's data pages
  std::unique_ptr<Codec> codec_;  // when compressing
  // Bytes of non-zero pages handled (copied, compressed, sent): what the convergence policy
  // measures its rate on. Wire bytes would understate it when compressing; zero pages cost
  // almost nothing and would overstate it.
  uint64_t processed_bytes_ = 0;
  std::vector<uint8_t> compressed_;
  uint64_t batch_data_pages_ = 0;
  // Pacing (bandwidth_limit).
  absl::Duration pace_start_;
  uint64_t paced_bytes_ = 0;

  mutable absl::Mutex mu_;
  MigrationStats stats_ ABSL_GUARDED_BY(mu_);
  Connection* connection_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool handed_over_ ABSL_GUARDED_BY(mu_) = false;  // kGo sent
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace flotilla::migration
