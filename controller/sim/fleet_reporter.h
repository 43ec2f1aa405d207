// FleetReporter: writes every simulated host's HostStatus to etcd under
// KEY_PREFIX/hosts-status/NAME, bound to a lease of the host's own, as the real agent's
// HostReporter does, and keeps those leases alive through one LeaseKeeper stream.
//
// Reports run on a few threads (SimulatorOptions::report_threads) from one schedule: each host
// reports every report_interval at its own phase within the interval (a hash of its name), so
// that 1000 hosts do not write at once. A host whose lease expired (etcd said so, or a put
// found it gone) takes a new one at its next report.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <queue>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/client.h"
#include "common/log.h"
#include "controller/sim/lease_keeper.h"
#include "controller/sim/sim_fleet.h"

namespace flotilla::sim {

class FleetReporter {
 public:
  struct Stats {
    uint64_t reports = 0;   // statuses written
    uint64_t failures = 0;  // writes or grants that failed
    uint64_t grants = 0;    // leases granted (one per host, more after expiries)
    LeaseKeeper::Stats leases;
  };

  // Grants every host a lease and writes its status once (all of them before it returns), then
  // reports periodically. Fails when etcd cannot be reached; nothing is left running then
  // (the leases granted expire).
  static absl::StatusOr<std::unique_ptr<FleetReporter>> start(SimFleet& fleet);
  ~FleetReporter();  // stop(false)
  FleetReporter(const FleetReporter&) = delete;
  FleetReporter& operator=(const FleetReporter&) = delete;

  // Stops reporting and renewing. With `revoke`, every lease is revoked, so that every host's
  // status key disappears at once (instead of after its TTL).
  absl::Status stop(bool revoke);

  // The host is down: no more reports or renewals, so its key goes when its lease expires (at
  // once with `revoke`).
  absl::Status hostDown(std::string_view host, bool revoke);
  // The host is up again: a new lease, and its status written before this returns.
  absl::Status hostUp(std::string_view host);
  // Writes the host's status now.
  absl::Status reportNow(std::string_view host);

  // The lease the host's status is bound to now (0: none).
  int64_t leaseOf(std::string_view host);
  std::string statusKey(std::string_view host) const;
  etcd::EtcdClient& etcd() { return *etcd_; }
  Stats stats() const;

 private:
  struct Slot {
    SimHost* host = nullptr;
    absl::Duration phase;           // its offset within the report interval
    std::atomic<bool> lost{false};  // etcd said its lease expired
    absl::Mutex mu;                 // one report (or down/up) at a time
    int64_t lease ABSL_GUARDED_BY(mu) = 0;
    bool down ABSL_GUARDED_BY(mu) = false;
  };
  struct Due {
    absl::Time at;
    size_t slot;
    bool operator>(const Due& other) const { return at > other.at; }
  };

  FleetReporter(SimFleet& fleet, std::unique_ptr<etcd::EtcdClient> etcd);
  absl::StatusOr<Slot*> slotOf(std::string_view host);
  absl::Status report(Slot& slot);
  absl::Status reportLocked(Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);
  void dropLeaseLocked(Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot.mu);
  void onLeaseLost(int64_t lease);
  void reportLoop();
  // Runs `work(slot)` for every slot on report_threads threads until one fails; its error.
  absl::Status forEachSlot(std::string_view what, const std::function<absl::Status(Slot&)>& work);

  SimFleet& fleet_;
  const SimulatorOptions& options_;
  std::unique_ptr<etcd::EtcdClient> etcd_;
  const Logger log_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::map<std::string, Slot*, std::less<>> by_name_;
  std::atomic<uint64_t> reports_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> grants_{0};
  LogRateLimiter failure_limiter_;

  absl::Mutex leases_mu_;
  std::map<int64_t, Slot*> by_lease_ ABSL_GUARDED_BY(leases_mu_);

  absl::Mutex schedule_mu_;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> schedule_
      ABSL_GUARDED_BY(schedule_mu_);
  bool stopping_ ABSL_GUARDED_BY(schedule_mu_) = false;
  std::vector<std::thread> threads_;
  std::unique_ptr<LeaseKeeper> keeper_;
};

}  // namespace flotilla::sim
