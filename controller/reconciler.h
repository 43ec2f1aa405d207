// Reconciler: what the elected leader runs (docs/controller.md "Reconcilers"). It is level
// triggered: each pass works on the whole cluster at one revision (ClusterView, kept current
// from an etcd watch by WatchedView) and moves every object one step towards what was asked,
// then waits for the next change in etcd (or the resync interval). Agent calls run on task pools,
// one task per VM or migration at a time, so that a slow agent never holds up the pass. Every write
// is conditioned on this replica's election key (LeaderWrite): once deposed, nothing it writes
// lands.
//
// Passes, in order: hosts (Ready → Unreachable → Fenced from the agents' lease-bound
// reports), HA (the VMs of a fenced host), VM lifecycle (schedule, create, start, stop,
// restart, delete, the agents' observed state, orphans), drains, migrations (limits and
// drivers), automatic rebalance, event trimming.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/client.h"
#include "common/etcd/election.h"
#include "common/log.h"
#include "controller/agent_clients.h"
#include "controller/config.h"
#include "controller/events.h"
#include "controller/model/cluster_view.h"
#include "controller/scheduler/rebalancer.h"
#include "controller/scheduler/scheduler.h"
#include "controller/store/store.h"
#include "controller/store/watched_view.h"
#include "controller/task_pool.h"

namespace flotilla::controller {

SchedulerOptions schedulerOptions(const ControllerConfig& config);

class Reconciler {
 public:
  // `view`: the replica's watched view (warm when it was kept while campaigning); used by
  // run() alone until it returns.
  Reconciler(const ControllerConfig& config, etcd::EtcdClient& etcd, AgentClients& agents,
             const etcd::LeaderKey& leader, WatchedView& view);
  ~Reconciler();

  // Runs passes until `stop` is requested or a write shows that leadership was lost.
  void run(std::stop_token stop);

  // For logs and tests: passes done so far.
  uint64_t passes() const { return passes_.load(); }
  // A conditioned write found that another replica leads.
  bool lost() const { return lost_.load(); }

 private:
  // One pass over `view`.
  void pass(const ClusterView& view);
  void reconcileHosts(const ClusterView& view);
  void reconcileHa(const ClusterView& view);
  void reconcileVms(const ClusterView& view);
  void scheduleVms(const ClusterView& view);
  void reconcileDrains(const ClusterView& view);
  void reconcileMigrations(const ClusterView& view);
  void maybeRebalance(const ClusterView& view);

  // VM tasks (vm_tasks.cc): each ends by writing the VM's new status.
  // `networks`: the VLAN of each network its NICs use, as the pass read them.
  void createOnHost(const VmView& vm, const HostView& host,
                    const std::vector<v1::NetworkBinding>& networks);
  void stopOnHost(const VmView& vm, const HostView& host, bool then_start);
  void deleteVm(const VmView& vm, const HostView* host);
  void removeOrphan(const std::string& vm, const HostView& host);
  void unplaceStopped(const VmView& vm, const HostView* host);

  // Migration driver (migration_driver.cc): drives one migration from its persisted phase to
  // its end; a new leader calls it again for every migration in flight.
  void driveMigration(const std::string& name, std::stop_token stop);

  // Writes `status` for `vm` if the VM still exists; conditioned on leadership only (the
  // task that writes it is the only actor on this VM).
  bool writeVmStatus(const std::string& vm, const v1::VmStatus& status,
                     const v1::Event* event = nullptr);
  bool commit(const etcd::Txn& txn, std::string_view what);
  void event(std::string_view kind, std::string_view object, v1::Event::Severity severity,
             std::string_view reason, std::string message);
  const HostView* readyHost(const ClusterView& view, const std::string& name) const;
  // A VM removed from a host (deleted, or an orphan) stays in that host's reports until its
  // next one: noteRemoved() records when, and removedSince() tells that `host`'s report
  // predates it, so the removal is not repeated on every pass until then.
  void noteRemoved(const std::string& host, const std::string& vm);
  bool removedSince(const HostView& host, const std::string& vm);

  const ControllerConfig& config_;
  etcd::EtcdClient& etcd_;
  Store store_;
  AgentClients& agents_;
  WatchedView& view_;
  LeaderWrite leader_;
  EventLog events_;
  const Logger log_;
  std::atomic<bool> lost_{false};
  std::atomic<uint64_t> passes_{0};
  absl::Time last_rebalance_ = absl::Now();
  absl::Time last_trim_ = absl::InfinitePast();
  TaskPool vm_tasks_;
  TaskPool migration_tasks_;
  absl::Mutex removed_mu_;
  std::map<std::string, int64_t> removed_ ABSL_GUARDED_BY(removed_mu_);  // host/vm → unix ms
};

}  // namespace flotilla::controller
