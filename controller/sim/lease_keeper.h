// LeaseKeeper: keeps many etcd leases alive over a few LeaseKeepAlive streams (etcd's Lease
// gRPC service), so that the simulator's 1000 hosts cost `streams` streams (default 8) and two
// threads each, instead of the 1000 threads and streams of 1000 etcd::LeaseKeepAlive objects.
//
// Why several streams, and why to the leader: etcd serves one stream's requests one after the
// other, and a follower forwards each renewal to its leader over HTTP. On a loaded machine one
// stream through a follower renewed 1000 leases more slowly than their 5 s TTL, and they
// expired although every renewal was answered. So leases are spread over the streams (each
// lease on the least loaded one), and every stream goes to the member that says it is the
// leader (checked every second through Maintenance.Status), where a renewal is an in-memory
// update; streams move when the leader changes.
//
// Every `interval` a stream writes one keep-alive request per lease of its own and waits for
// the answers; a member whose answers stop for `answer_timeout` before the round is answered
// (hung, or without a leader) is left for the next one, as etcd::LeaseKeepAlive leaves it. A
// lease etcd answers with TTL 0 has expired: it is dropped and reported through `on_lost` (its
// owner takes a new one, as the real agent does).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/stream_worker.h"
#include "common/log.h"
#include "common/rpc/channel.h"
#include "grpcpp/channel.h"

namespace etcdserverpb {
class LeaseKeepAliveResponse;
}

namespace flotilla::sim {

struct LeaseKeeperOptions {
  std::vector<std::string> endpoints;  // etcd members, "host:port"
  ChannelOptions channel;
  int streams = 8;
  absl::Duration interval = absl::Seconds(3);        // each lease is renewed this often
  absl::Duration answer_timeout = absl::Seconds(2);  // without any answer in a round
  std::function<void(int64_t lease)> on_lost;        // called from a stream's reader thread
};

class LeaseKeeper {
 public:
  struct Stats {
    uint64_t renewals = 0;    // answers with a positive TTL
    uint64_t rounds = 0;      // rounds of requests written, all streams
    uint64_t reconnects = 0;  // streams re-opened (after a failure, or to follow the leader)
    uint64_t lost = 0;        // leases etcd said had expired
    size_t member = 0;        // the member streams go to (the leader, when known)
  };

  static absl::StatusOr<std::unique_ptr<LeaseKeeper>> start(LeaseKeeperOptions options);
  // Stops renewing; revokes nothing (the leases expire after their TTL).
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Renews `lease` from its stream's next round on / no longer.
  void add(int64_t lease);
  void remove(int64_t lease);
  size_t size() const;
  Stats stats() const;

 private:
  struct Stream {
    size_t index = 0;
    std::set<int64_t> leases;  // guarded by LeaseKeeper::mu_
    uint64_t answers = 0;      // guarded by LeaseKeeper::mu_
    bool reader_done = false;  // guarded by LeaseKeeper::mu_
    etcd::StreamWorker worker;
  };

  // Why a stream ended: the keeper stops, the member failed, or the leader is elsewhere now.
  enum class StreamEnd { kStopped, kFailed, kMoved };

  LeaseKeeper(LeaseKeeperOptions options, std::vector<std::shared_ptr<grpc::Channel>> channels);
  void run(Stream& stream);
  // One stream on one member until it ends; it follows the leader elsewhere only after
  // `stay_until` (a stream that fell back from a failed leader stays on its fallback a while).
  // Sets `renewed` once a round of renewals was answered.
  StreamEnd streamOnce(Stream& stream, size_t member, absl::Time stay_until, bool& renewed);
  void onResponse(Stream& stream, const etcdserverpb::LeaseKeepAliveResponse& response);
  // Asks the members which one leads; updates preferred_.
  void watchLeader();

  const LeaseKeeperOptions options_;
  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  const Logger log_;
  LogRateLimiter warnings_;  // the same trouble hits every stream at once
  LogRateLimiter expiries_;  // and many leases at once
  std::atomic<size_t> preferred_{0};
  mutable absl::Mutex mu_;
  std::map<int64_t, Stream*> stream_of_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Stream>> streams_;
  etcd::StreamWorker leader_watch_;  // stopped first (the destructor), then the streams
};

}  // namespace flotilla::sim
