// EtcdClient: Flotilla's client of etcd v3 over gRPC (KV, transactions, leases, watches;
// elections are in election.h). It talks to one member at a time and fails over to the next
// endpoint when that member is unreachable:
// - reads (get) are retried on another member on any transport failure;
// - writes (put, del, txn, lease grant/revoke) are retried only when the request surely never
//   reached a member (no connection could be made, or the member had no leader); otherwise
//   the error says the outcome is unknown, and the caller re-reads (reconcilers are
//   level-triggered, so they do this anyway).
// Watches and lease keep-alives are long-lived streams that reconnect on their own
// (watch.h, lease.h). All methods are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/txn.h"
#include "common/etcd/types.h"
#include "common/log.h"
#include "common/rpc/channel.h"
#include "etcd/etcdserver/api/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace flotilla::etcd {

class LeaseKeepAlive;
class Watch;
struct WatchOptions;

struct ClientOptions {
  // Members as "host:port" or "http://host:port" (https:// requires channel.tls).
  std::vector<std::string> endpoints;
  ChannelOptions channel;
  // Upper bound on one client call, all failover attempts included.
  absl::Duration request_timeout = absl::Seconds(10);
  // Upper bound on one attempt against one member, so that a hung member is left in time.
  absl::Duration attempt_timeout = absl::Seconds(3);
};

struct RangeOptions {
  bool prefix = false;   // every key that starts with `key`
  int64_t limit = 0;     // 0: no limit
  int64_t revision = 0;  // 0: the latest revision
  bool keys_only = false;
  bool count_only = false;
  bool serializable = false;  // served by the member alone, possibly stale
};

struct Lease {
  int64_t id = 0;
  absl::Duration ttl;
};

class EtcdClient {
 public:
  // Creates channels to every endpoint (connecting lazily). Fails on an empty or malformed
  // endpoint list, or unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> connect(const ClientOptions& options);

  absl::StatusOr<RangeResult> get(std::string_view key, const RangeOptions& options = {});
  // The revision of the put.
  absl::StatusOr<int64_t> put(std::string_view key, std::string_view value, int64_t lease = 0);
  // The number of keys deleted.
  absl::StatusOr<int64_t> del(std::string_view key, bool prefix = false);
  absl::StatusOr<TxnResult> txn(const Txn& txn);
  // Compacts the history up to `revision` (watches from older revisions then fail).
  absl::Status compact(int64_t revision);

  absl::StatusOr<Lease> grantLease(absl::Duration ttl);
  absl::Status revokeLease(int64_t lease);
  // The remaining time to live; NotFound when the lease has expired or never existed.
  absl::StatusOr<absl::Duration> leaseTimeToLive(int64_t lease);

  // Keeps `lease` alive from a background stream until the returned object is destroyed.
  std::unique_ptr<LeaseKeepAlive> keepAlive(const Lease& lease);

  // Watches a key or prefix from a revision; see watch.h.
  std::unique_ptr<Watch> watch(const WatchOptions& options);

  // The endpoint currently used for new calls (for logs and tests).
  std::string currentEndpoint() const;
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  const ClientOptions& options() const { return options_; }

 private:
  friend class Election;
  friend class LeaseKeepAlive;
  friend class Observation;
  friend class Watch;

  struct Member {
    size_t index;
    std::string endpoint;
    std::shared_ptr<grpc::Channel> channel;
  };
  // The member new calls go to.
  Member currentMember() const;
  // Connects to `member` unless connected, waiting at most `timeout` (and the channel's
  // connect timeout): false means nothing can have been sent to it.
  bool connectMember(const Member& member, absl::Duration timeout = absl::InfiniteDuration()) const;
  // Records that `member` failed: later calls go to the next endpoint (unless another
  // thread already moved on).
  void memberFailed(const Member& member);

  // Runs `attempt(member, context)` against successive members until it succeeds, fails
  // with an error that failover cannot fix, or the request timeout passes. `what` names the
  // request in errors ("etcd put /flotilla/v1/vms/web1").
  using Attempt = std::function<grpc::Status(const Member&, grpc::ClientContext&)>;
  absl::Status callWithFailover(std::string_view what, bool idempotent, const Attempt& attempt);

  EtcdClient(ClientOptions options, std::vector<std::string> endpoints,
             std::vector<std::shared_ptr<grpc::Channel>> channels);

  const ClientOptions options_;
  const std::vector<std::string> endpoints_;  // "host:port"
  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  const Logger log_;
  mutable absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

// The end of the key range holding every key that starts with `prefix` (etcd's range_end).
std::string prefixRangeEnd(std::string_view prefix);

}  // namespace flotilla::etcd
