// MigrationSender: the source side of a live (pre-copy) migration (docs/migration.md).
//
// Memory is sent while the guest runs: first every page the guest ever touched (zero pages
// skipped: the target's memory starts zeroed), then, round after round, the pages dirtied
// meanwhile (zero pages as markers), until the predicted pause (what is left at the measured
// bandwidth, plus the device state) fits the downtime limit. Then the switchover: pause
// vCPUs and devices, send the last pages and the device state, wait for the target to load
// it (kReady), tell it to run (kGo) and wait for kResumed.
//
// With several streams (SendOptions::streams, when the target takes them) the page batches of
// every pass are spread over that many TCP connections by page address, each sent by its own
// thread (stream 0, the main connection, by the thread that calls run()); control frames stay
// on the main connection, and every round ends on every stream before the target confirms it
// (docs/migration.md, "Several streams").
//
// Outcomes of run():
//   OK                       the guest runs on the target; this VM is paused and must end.
//   error, sourceRunning()   the migration failed or was cancelled before kGo: this VM runs
//                            (it was resumed), the target discards what it got.
//   error, !sourceRunning()  the connection broke after kGo: whether the target runs the guest
//                            is unknown here; this VM stays paused (never two running copies)
//                            until whoever manages it has asked the target.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/log.h"
#include "migration/protocol.h"
#include "migration/test_hook.h"
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
  // TCP streams that carry page data, the main connection included: 1 to kMaxStreams. More
  // than one needs a StreamConnector (run()); a target that does not take them gets one.
  uint32_t streams = 1;
  // Cold migration only: the VM's raw-file disks go too, before memory (disk_transfer.h).
  bool with_disks = false;
  // Called at the named points of the switchover (test_hook.h).
  StopPoint stop_point = stopIfAsked;
};

// Opens data stream `index` (1, 2, ...): a new connection to the target of the main one.
using StreamConnector = std::function<absl::StatusOr<std::unique_ptr<Connection>>(uint32_t index)>;

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
  uint32_t streams = 1;     // negotiated at hello
  uint64_t disk_bytes = 0;  // disk data sent (cold migration with disks)
  std::string error;
};

class MigrationSender {
 public:
  MigrationSender(SourceVm& vm, SendOptions options, Clock& clock = systemClock());
  ~MigrationSender();
  MigrationSender(const MigrationSender&) = delete;
  MigrationSender& operator=(const MigrationSender&) = delete;

  // `connection` is the main connection; `connect_stream` opens the data streams when
  // options.streams > 1.
  absl::Status run(Connection& connection, const StreamConnector& connect_stream = {});
  // From any thread: stops a migration before kGo (the source resumes) and returns true;
  // after kGo it has no effect and returns false.
  bool cancel();
  MigrationStats stats() const;
  bool sourceRunning() const;

 private:
  // One connection carrying page batches, and the batch it is building. Stream 0 is the main
  // connection, driven by the thread in run(); the others have a thread each.
  struct PageStream {
    uint32_t index = 0;
    Connection* connection = nullptr;
    std::unique_ptr<Connection> owned;  // data streams
    std::vector<uint64_t> entries;
    std::vector<uint8_t> buffer;   // copies of the batch's data pages
    std::unique_ptr<Codec> codec;  // when compressing
    std::vector<uint8_t> compressed;
    uint64_t batch_data_pages = 0;
    // Figures of the last job.
    uint64_t data_pages = 0;
    uint64_t zero_pages = 0;
    uint64_t compressed_batches = 0;
    std::thread thread;  // data streams
  };
  // What a data stream sends after its share of a pass: nothing, the end of a round, or the
  // end of its pages (the switchover's last pass).
  enum class StreamEnd { kNone, kRound, kComplete };
  // A pass over `pages` that every stream sends its share of.
  struct PageJob {
    const vmm::DirtyBitmap* pages = nullptr;
    bool skip_zero = false;
    StreamEnd end = StreamEnd::kNone;
    uint32_t round = 0;
  };

  absl::Status hello(Connection& connection, const StreamConnector& connect_stream);
  absl::Status openStream(Connection& main, const flotilla::v1::MigrationHelloReply& reply,
                          uint32_t index, uint32_t count, const StreamConnector& connect_stream);
  absl::Status precopy(Connection& connection, const StreamConnector& connect_stream);
  absl::Status announceDisks(Connection& connection);
  absl::Status sendDisks(Connection& connection);
  absl::Status switchover(Connection& connection);
  absl::Status handOver(Connection& connection);
  absl::Status pauseVm();
  absl::Status endRound(Connection& connection, uint32_t round, uint64_t pages);
  // Sends every page of `pages` (set bits) over all streams, each stream its share, and
  // `end` on the data streams; `skip_zero` leaves zero pages out. Returns when every stream
  // has sent its share.
  absl::Status sendPages(const vmm::DirtyBitmap& pages, bool skip_zero,
                         StreamEnd end = StreamEnd::kNone, uint32_t round = 0);
  absl::Status sendRanges(const std::vector<ByteRange>& ranges, StreamEnd end, uint32_t round);
  // One stream's share of a job: the pages in its 64-page chunks (bitmap words), then the end.
  absl::Status sendShare(PageStream& stream, const PageJob& job);
  absl::Status sendBatch(PageStream& stream);
  void streamThread(PageStream& stream);
  // A stream failed: the others stop at their next batch; the first error is the job's.
  void abortJob(const absl::Status& status);
  void stopStreams();
  uint64_t bytesSent() const;
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
  std::vector<std::unique_ptr<PageStream>> streams_;  // [0]: the main connection
  // Cold migration with disks: the disks and their description (sizes).
  std::vector<LocalDisk> local_disks_;
  flotilla::v1::MigrationDisks disks_;
  // Bytes of non-zero pages handled (copied, compressed, sent): what the convergence policy
  // measures its rate on. Wire bytes would understate it when compressing; zero pages cost
  // almost nothing and would overstate it.
  uint64_t processed_bytes_ = 0;

  // The job the data streams' threads run.
  absl::Mutex jobs_mu_;
  PageJob job_ ABSL_GUARDED_BY(jobs_mu_);
  uint64_t job_generation_ ABSL_GUARDED_BY(jobs_mu_) = 0;
  size_t jobs_running_ ABSL_GUARDED_BY(jobs_mu_) = 0;
  absl::Status job_error_ ABSL_GUARDED_BY(jobs_mu_);
  bool stopping_ ABSL_GUARDED_BY(jobs_mu_) = false;
  std::atomic<bool> aborting_{false};  // a stream failed: the others stop

  // Pacing (bandwidth_limit), shared by the streams.
  absl::Mutex pace_mu_;
  absl::Duration pace_start_ ABSL_GUARDED_BY(pace_mu_);
  uint64_t paced_bytes_ ABSL_GUARDED_BY(pace_mu_) = 0;

  mutable absl::Mutex mu_;
  MigrationStats stats_ ABSL_GUARDED_BY(mu_);
  Connection* connection_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::vector<Connection*> data_connections_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool handed_over_ ABSL_GUARDED_BY(mu_) = false;  // kGo sent
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace flotilla::migration
