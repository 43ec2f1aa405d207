// MigrationReceiver: the target side of a migration (docs/migration.md), an explicit state
// machine over the frames of the main connection:
//
//   kHello -> kLayout -> kMemory -> (kComplete) -> kLoading -> kReady -> (kGo) -> kResumed
//
// with kFailed from any state before kResumed: the target's VM is discarded and never runs.
// Pages are read straight into guest memory; every frame is checked (protocol.h) before its
// contents are used, and a frame that is not due in the current state is an error.
//
// With the streams capability, the data streams join right after hello (each with the token
// and the session id the main connection's reply carried; anything else that connects is
// refused and the migration goes on) and each has a thread that writes its page batches into
// memory. A round is confirmed (kRoundDone) only once every stream has delivered the round's
// end, and the state is loaded only once every stream has delivered its kComplete: the
// failure of any stream fails the migration. A cold migration with disks announces them
// before the layout and sends their data before any page (disk_transfer.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "migration/compression.h"
#include "migration/disk_transfer.h"
#include "migration/protocol.h"
#include "migration/test_hook.h"
#include "migration/vm_interface.h"

namespace flotilla::migration {

enum class ReceiverState { kHello, kLayout, kMemory, kLoading, kReady, kResumed, kFailed };

// "waiting for hello", ...: for messages.
const char* receiverStateName(ReceiverState state);
// "waiting", "layout", "memory", "loading", "ready", "resumed", "failed": the API's phase.
const char* receiverPhaseName(ReceiverState state);

struct ReceiveOptions {
  std::string token;  // the one-time token a sender must present
  // Called at the named points of the switchover (test_hook.h).
  StopPoint stop_point = stopIfAsked;
};

// Accepts the connections of the data streams (the target's listener, after the main
// connection came).
class StreamAcceptor {
 public:
  virtual ~StreamAcceptor() = default;
  // The next connection, waiting at most `timeout`: DeadlineExceeded when none came.
  virtual absl::StatusOr<std::unique_ptr<Connection>> accept(absl::Duration timeout) = 0;
  // No more connections are wanted: the listener may close.
  virtual void close() = 0;
};

struct ReceiverStats {
  ReceiverState state = ReceiverState::kHello;
  uint64_t pages = 0;       // with data
  uint64_t zero_pages = 0;  // markers
  uint32_t rounds = 0;      // the last round every stream delivered
  uint64_t bytes_received = 0;
  uint32_t streams = 1;     // negotiated at hello
  uint64_t disk_bytes = 0;  // disk data written (cold migration with disks)
  std::string error;
};

class MigrationReceiver {
 public:
  MigrationReceiver(TargetVm& vm, ReceiveOptions options);
  ~MigrationReceiver();
  MigrationReceiver(const MigrationReceiver&) = delete;
  MigrationReceiver& operator=(const MigrationReceiver&) = delete;

  // OK once the guest runs here; an error (the VM discarded) otherwise. `acceptor` takes the
  // data streams; without one this target takes a single stream.
  absl::Status run(Connection& connection, StreamAcceptor* acceptor = nullptr);
  // From any thread, also while run() runs.
  ReceiverStats stats() const;

 private:
  // What reading page batches needs, one per stream.
  struct BatchScratch {
    std::vector<uint64_t> entries;
    std::vector<iovec> data;
    std::unique_ptr<Codec> codec;
    std::vector<uint8_t> compressed;
    std::vector<uint8_t> decompressed;
  };
  // A data stream: its connection, and the thread that writes its pages into memory.
  struct DataStream {
    uint32_t index = 0;
    std::unique_ptr<Connection> connection;
    BatchScratch scratch;
    std::thread thread;
    int64_t last_round = -1;  // the last round whose end it delivered (guarded by mu_)
    bool complete = false;    // it delivered kComplete: no more pages (guarded by mu_)
  };

  absl::Status receive(Connection& connection, StreamAcceptor* acceptor);
  absl::Status hello(Connection& connection, StreamAcceptor* acceptor);
  absl::Status joinStreams(Connection& main, StreamAcceptor& acceptor);
  // Reads a joining connection's hello: its index, or why it may not join.
  absl::StatusOr<uint32_t> admitStream(Connection& candidate);
  absl::Status layout(Connection& connection);
  absl::Status disks(Connection& connection, const FrameHeader& header);
  absl::Status pages(Connection& connection, const FrameHeader& header, BatchScratch& scratch);
  absl::Status receiveStream(DataStream& stream);
  void streamThread(DataStream& stream);
  // Waits until the next frame can be read from `connection`, for as long as some stream
  // keeps receiving within each io_timeout (a stream may idle while the others carry a round).
  absl::Status awaitFrame(Connection& connection);
  // Waits until every data stream delivered the end of `round` (or, with `complete`, its
  // kComplete); a stream's failure is the error.
  absl::Status awaitStreams(bool complete, uint32_t round);
  // The error that ends the migration, when a data stream failed (after the main connection
  // was interrupted for it).
  absl::Status streamFailure(Connection& main, absl::Status status);
  void stopStreams();
  uint64_t bytesReceived() const;
  void setState(ReceiverState state);

  TargetVm& vm_;
  const ReceiveOptions options_;
  const Logger log_;
  std::span<uint8_t> memory_;
  std::string device_state_;
  bool have_device_state_ = false;
  uint64_t capabilities_ = 0;  // negotiated at hello
  BatchScratch main_scratch_;
  std::string session_;        // the data streams' admission, with the token
  uint32_t stream_count_ = 1;  // negotiated at hello, the main connection included
  std::vector<std::unique_ptr<DataStream>> streams_;
  Connection* main_ = nullptr;         // while run() runs
  std::unique_ptr<DiskWriter> disks_;  // a cold migration with disks

  mutable absl::Mutex mu_;
  ReceiverStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<const Connection*> connections_ ABSL_GUARDED_BY(mu_);  // for bytes_received
  absl::Status stream_error_ ABSL_GUARDED_BY(mu_);  // the first data stream failure
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;      // the data streams are being shut down
};

}  // namespace flotilla::migration
