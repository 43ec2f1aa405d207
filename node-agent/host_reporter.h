// HostReporter: the agent's presence in etcd and its self-fencing.
//
// The host's status (inventory, load, VMs) is written to /flotilla/v1/hosts-status/HOST,
// bound to a lease that the agent keeps alive; when the agent or its host dies, the lease
// expires and the key goes with it, which is how the controller learns that the host is
// Unreachable. A lease that expired (etcd was unreachable for longer than its TTL) is
// replaced by a new one as soon as etcd answers again.
//
// Self-fencing: when the lease was not renewed for `fence_after` (< the lease's TTL), the
// agent kills its HA VMs, before etcd can expire the lease and the controller restart them
// elsewhere (docs/agent.md has the timeline). The check runs on its own thread, every 100 ms,
// so that a hung etcd call cannot delay it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/etcd/client.h"
#include "common/etcd/lease.h"
#include "common/log.h"
#include "flotilla/v1/agent.pb.h"
#include "node-agent/vm_manager.h"

namespace flotilla::agent {

struct HostReporterOptions {
  std::string host;
  // Where the time of the last confirmed renewal is kept across agent restarts (boot id and
  // CLOCK_MONOTONIC): a restarted agent that cannot reach etcd fences counting from the
  // previous process's last renewal, not from its own start. Empty: not kept.
  std::string renewal_file;
  std::string key_prefix = "/flotilla/v1/";
  absl::Duration lease_ttl = absl::Seconds(10);
  absl::Duration fence_after = absl::Seconds(7);
  absl::Duration report_interval = absl::Seconds(3);
};

class HostReporter {
 public:
  // Fills everything but the VMs, the lease and the time (the agent's inventory and load).
  using StatusSource = std::function<flotilla::v1::HostStatus()>;

  HostReporter(etcd::EtcdClient& etcd, VmManager& vms, StatusSource source,
               HostReporterOptions options);
  ~HostReporter();  // stop()
  HostReporter(const HostReporter&) = delete;
  HostReporter& operator=(const HostReporter&) = delete;

  void start();
  // Stops reporting; the lease is left to expire (an agent restart keeps the host Ready if it
  // comes back within the TTL... under a new lease).
  void stop();

  // The last status written (or built, when etcd is unreachable).
  flotilla::v1::HostStatus current();
  // How many times the agent fenced itself.
  int fences() const { return fences_.load(); }
  std::string statusKey() const;

 private:
  void reportLoop();
  void fenceLoop();
  absl::Status reportOnce();
  // Time since the lease was last renewed (or granted); before the first lease of this
  // process, since the previous process's last renewal (renewal_file) or this one's start.
  absl::Duration sinceRenewal();
  void saveRenewal();

  etcd::EtcdClient& etcd_;
  VmManager& vms_;
  const StatusSource source_;
  const HostReporterOptions options_;
  const Logger log_;
  absl::Mutex mu_;
  std::unique_ptr<etcd::LeaseKeepAlive> keepalive_ ABSL_GUARDED_BY(mu_);
  flotilla::v1::HostStatus current_ ABSL_GUARDED_BY(mu_);
  bool fenced_ ABSL_GUARDED_BY(mu_) = false;  // since the last renewal
  absl::Duration initial_renewal_;  // what counts as the last renewal before the first lease
  absl::Duration saved_renewal_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> fences_{0};
  absl::Notification stopping_;
  std::thread report_thread_;
  std::thread fence_thread_;
};

}  // namespace flotilla::agent
