// LeaseKeepAlive: keeps an etcd lease alive from a background thread, renewing it every third
// of its TTL on whichever member answers. Each renewal is one request on a short stream with
// a deadline, so that a hung member is left within one renewal interval (a long-lived stream
// would only notice after gRPC's keepalive timeout, which can exceed a short TTL).
// lastRenewal() is what self-fencing compares against its fencing timeout.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/client.h"
#include "common/etcd/stream_worker.h"
#include "common/log.h"

namespace flotilla::etcd {

class LeaseKeepAlive {
 public:
  LeaseKeepAlive(EtcdClient& client, Lease lease);
  // Stops renewing; does not revoke the lease (it expires after its TTL).
  ~LeaseKeepAlive();
  LeaseKeepAlive(const LeaseKeepAlive&) = delete;
  LeaseKeepAlive& operator=(const LeaseKeepAlive&) = delete;

  int64_t id() const { return lease_.id; }

  // Monotonic time (systemClock()) when the last renewal that etcd confirmed was sent (etcd
  // renewed the lease at that moment or later); the creation time of this object before the
  // first one.
  absl::Duration lastRenewal() const;
  uint64_t renewals() const;

  // etcd answered that the lease no longer exists: every key bound to it is gone and
  // renewing stopped.
  bool lost() const;
  // Waits up to `timeout` for the lease to be lost; returns lost().
  bool waitLost(absl::Duration timeout);

 private:
  void run();
  // One renewal against the current member: OK, NotFound (lease gone) or another error.
  absl::Status renewOnce(absl::Duration timeout);

  EtcdClient& client_;
  const Lease lease_;
  const Logger log_;
  mutable absl::Mutex mu_;
  absl::Duration last_renewal_ ABSL_GUARDED_BY(mu_);
  uint64_t renewals_ ABSL_GUARDED_BY(mu_) = 0;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  StreamWorker worker_;  // last: stopped and joined first
};

}  // namespace flotilla::etcd
