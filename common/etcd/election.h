// Election: leader election through etcd's v3election service. A candidate campaigns with a
// lease it keeps alive (lease.h); it leads until it resigns or its lease is lost. Every
// campaign of the same lease uses the same key, so a campaign interrupted by a failed member
// resumes on another member without creating a second candidate.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/etcd/stream_worker.h"
#include "common/etcd/types.h"
#include "common/log.h"

namespace flotilla::etcd {

class EtcdClient;

// Proof of leadership: the leader's key and its creation revision. A leader conditions its
// writes on it (Txn::ifCreateRevision(key, kEqual, revision)) so that a deposed leader's
// writes fail.
struct LeaderKey {
  std::string name;
  std::string key;
  int64_t revision = 0;
  int64_t lease = 0;
};

// A stream of leadership changes: the current leader first, then every new leader or value.
class Observation {
 public:
  Observation(EtcdClient& client, std::string name);
  ~Observation();
  Observation(const Observation&) = delete;
  Observation& operator=(const Observation&) = delete;

  // The next proclamation (the leader's key and value). DeadlineExceeded when none came
  // within `timeout` (the observation goes on).
  absl::StatusOr<KeyValue> next(absl::Duration timeout);

  uint64_t reconnects() const { return reconnects_.load(); }

 private:
  void run();
  // One stream on one member, until it breaks (false) or the observation ends (true); resets
  // `backoff` once the member answered.
  bool streamOnce(Backoff& backoff);

  EtcdClient& client_;
  const std::string name_;
  const Logger log_;
  KeyValue last_;  // the last delivered proclamation, not repeated after a reconnection
  std::atomic<uint64_t> reconnects_{0};
  EventQueue<KeyValue> queue_;
  StreamWorker worker_;  // last: stopped and joined first
};

class Election {
 public:
  Election(EtcdClient& client, std::string name);

  // Blocks until this candidate leads, then returns its LeaderKey; `value` is proclaimed.
  // Cancelled when `stop` is requested first (the candidacy is withdrawn); NotFound when
  // the lease does not exist.
  absl::StatusOr<LeaderKey> campaign(int64_t lease, std::string_view value,
                                     std::stop_token stop = {});
  // Replaces the leader's value; FailedPrecondition when `leader` no longer leads.
  absl::Status proclaim(const LeaderKey& leader, std::string_view value);
  // The current leader's key and value; NotFound when nobody leads.
  absl::StatusOr<KeyValue> leader();
  // Gives up leadership (or a pending candidacy); the next candidate then leads.
  absl::Status resign(const LeaderKey& leader);

  std::unique_ptr<Observation> observe();

 private:
  EtcdClient& client_;
  const std::string name_;
  const Logger log_;
};

}  // namespace flotilla::etcd
