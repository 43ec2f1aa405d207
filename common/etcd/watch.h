// Watch: a resumable watch on a key or prefix. Events arrive in revision order, each exactly
// once, also across broken streams: when the member serving the watch fails (or loses its
// leader), the watch reconnects to another member from the revision after the last one it
// delivered. A watch whose next revision was compacted away ends with OutOfRange: the caller
// re-reads the state and watches again from the revision of that read.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/etcd/stream_worker.h"
#include "common/etcd/types.h"
#include "common/log.h"

namespace flotilla::etcd {

class EtcdClient;

struct WatchOptions {
  std::string key;
  bool prefix = false;
  int64_t start_revision = 0;  // 0: changes after the watch is established
  bool prev_kv = false;        // include the previous value in each event
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;       // for a delete: the key, with mod_revision the deletion's revision
  KeyValue prev_kv;  // with WatchOptions::prev_kv; empty when there was none
};

struct WatchBatch {
  std::vector<WatchEvent> events;  // in revision order, never empty
};

class Watch {
 public:
  Watch(EtcdClient& client, WatchOptions options);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  // The next batch of events. DeadlineExceeded when none came within `timeout` (the watch
  // goes on); OutOfRange when the history it needs was compacted; Cancelled after cancel().
  absl::StatusOr<WatchBatch> next(absl::Duration timeout);

  // Ends the watch; next() then returns what was already received, then Cancelled.
  void cancel();

  // How many times the stream was re-established after a failure.
  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  void run();
  // One stream on one member, until it breaks (false) or the watch ends (true); resets
  // `backoff` once the member took the watch.
  bool streamOnce(Backoff& backoff);

  EtcdClient& client_;
  const WatchOptions options_;
  const Logger log_;
  // Only the stream thread touches next_revision_ once it started.
  int64_t next_revision_;
  std::atomic<uint64_t> reconnects_{0};
  EventQueue<WatchBatch> queue_;
  StreamWorker worker_;  // last: stopped and joined before the members above are destroyed
};

}  // namespace flotilla::etcd
