// Reconciler: the leader's passes (see reconciler.h).
#include "controller/reconciler.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "common/status.h"
#include "controller/rebalance_plan.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

int64_t nowMs() {
  return absl::ToUnixMillis(absl::Now());
}

// etcd accepts at most 128 operations per transaction; placements go in batches.
constexpr size_t kBatch = 60;

// Agents and the controller may run on different machines: a report counts as newer than a
// status change only by this margin, for clock differences.
constexpr int64_t kClockMarginMs = 1000;

// Whether `host`'s report was made after the VM's status last changed (so that a report from
// before a placement, start or migration does not undo it).
bool hostReportNewer(const HostView& host, const v1::VmStatus& status) {
  return host.status &&
         host.status->updated_unix_ms() > status.state_since_unix_ms() + kClockMarginMs;
}

// The VLAN of each network `spec`'s NICs use (those that exist: the agent refuses the others,
// naming them).
std::vector<v1::NetworkBinding> networkBindings(const ClusterView& view, const v1::VmSpec& spec) {
  std::vector<v1::NetworkBinding> bindings;
  for (const v1::NicSpec& nic : spec.nics()) {
    auto network = view.networks.find(nic.network());
    const bool bound = std::any_of(bindings.begin(), bindings.end(), [&](const auto& binding) {
      return binding.name() == nic.network();
    });
    if (network == view.networks.end() || bound) continue;
    v1::NetworkBinding& binding = bindings.emplace_back();
    binding.set_name(nic.network());
    binding.set_vlan(network->second.vlan());
  }
  return bindings;
}

const v1::HostVm* reportedVm(const HostView& host, const std::string& name) {
  if (!host.status) return nullptr;
  for (const v1::HostVm& vm : host.status->vms()) {
    if (vm.name() == name) return &vm;
  }
  return nullptr;
}

}  // namespace

SchedulerOptions schedulerOptions(const ControllerConfig& config) {
  SchedulerOptions options;
  options.strategy = config.scheduler.strategy == "pack" ? SchedulerOptions::Strategy::kPack
                                                         : SchedulerOptions::Strategy::kSpread;
  options.cpu_overcommit = config.scheduler.cpu_overcommit;
  options.memory_overcommit = config.scheduler.memory_overcommit;
  return options;
}

Reconciler::Reconciler(const ControllerConfig& config, etcd::EtcdClient& etcd, AgentClients& agents,
                       const etcd::LeaderKey& leader, WatchedView& view)
    : config_(config),
      etcd_(etcd),
      store_(etcd),
      agents_(agents),
      view_(view),
      leader_(etcd, leader),
      events_(etcd, config.name),
      log_(Logger("reconciler")),
      vm_tasks_("vm", config.agent_parallelism),
      migration_tasks_("migration", config.migrations.per_cluster) {}

Reconciler::~Reconciler() {
  vm_tasks_.stop();
  migration_tasks_.stop();
}

void Reconciler::run(std::stop_token stop) {
  using Wait = WatchedView::Wait;
  while (!stop.stop_requested() && !lost_.load()) {
    const absl::Time pass_start = absl::Now();
    if (absl::Status current = view_.refresh(pass_start); !current.ok()) {
      log_.warn("cannot read the cluster state: {}", current.message());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    // Tasks that end from here on may have written what this view does not show yet.
    vm_tasks_.beginPass(pass_start);
    migration_tasks_.beginPass(pass_start);
    pass(view_.view());
    passes_.fetch_add(1);
    // Wait for a change (or the resync interval), then let a burst of changes settle. A pass
    // over a large cluster is followed by a pause as long as it took (up to a second), so that
    // passes take at most half of this replica's time and of etcd's for the writes they make.
    const absl::Time pass_end = absl::Now();
    if (view_.next(config_.resync_interval) != Wait::kChanged) continue;
    const absl::Time settle = absl::Now() + absl::Milliseconds(20);
    while (absl::Now() < settle && view_.next(absl::Milliseconds(5)) == Wait::kChanged) {
    }
    const absl::Time paced = pass_end + std::min(pass_end - pass_start, absl::Seconds(1));
    while (!stop.stop_requested() && absl::Now() < paced &&
           view_.next(paced - absl::Now()) != Wait::kFailed) {
    }
  }
  vm_tasks_.stop();
  migration_tasks_.stop();
  log_.info("reconciling stopped ({})", lost_.load() ? "leadership lost" : "stopping");
}

void Reconciler::pass(const ClusterView& view) {
  reconcileHosts(view);
  reconcileHa(view);
  reconcileVms(view);
  scheduleVms(view);
  reconcileDrains(view);
  reconcileMigrations(view);
  maybeRebalance(view);
  if (absl::Now() - last_trim_ > absl::Seconds(30)) {
    last_trim_ = absl::Now();
    if (auto trimmed = events_.trim(config_.max_events); !trimmed.ok()) {
      log_.warn("cannot trim events: {}", trimmed.message());
    }
  }
}

bool Reconciler::commit(const etcd::Txn& txn, std::string_view what) {
  absl::Status status = leader_.commit(txn, what);
  if (status.ok()) return true;
  if (absl::IsFailedPrecondition(status)) {
    // Either the object changed (the next pass sees it) or this replica no longer leads.
    etcd::Election election(etcd_, std::string(kKeyPrefix) + "election");
    auto leader = election.leader();
    if (leader.ok() && leader->key != leader_.leader().key) {
      log_.warn("leadership lost (now {}): stopping", leader->value);
      lost_.store(true);
    }
  } else {
    log_.warn("{}", status.message());
  }
  return false;
}

void Reconciler::event(std::string_view kind, std::string_view object, v1::Event::Severity severity,
                       std::string_view reason, std::string message) {
  v1::Event made = EventLog::make(kind, object, severity, reason, message);
  if (severity == v1::Event::SEVERITY_INFO) {
    log_.info("{} {}: {}", kind, object, made.message());
  } else {
    log_.warn("{} {}: {}", kind, object, made.message());
  }
  events_.record(made);
}

bool Reconciler::writeVmStatus(const std::string& vm, const v1::VmStatus& status,
                               const v1::Event* event) {
  etcd::Txn txn = leader_.txn();
  txn.ifVersion(vmKey(vm), etcd::CompareOp::kGreater, 0);
  txn.thenPut(vmStatusKey(vm), encodeValue(status));
  if (event != nullptr) events_.add(txn, *event);
  return commit(txn, fmt::format("status of vm {}", vm));
}

const HostView* Reconciler::readyHost(const ClusterView& view, const std::string& name) const {
  auto host = view.hosts.find(name);
  if (host == view.hosts.end() || !host->second.ready()) return nullptr;
  return &host->second;
}

// ---- hosts ----

void Reconciler::reconcileHosts(const ClusterView& view) {
  const int64_t now = nowMs();
  for (const auto& [name, host] : view.hosts) {
    v1::HostRecord record = host.record;
    record.mutable_meta()->clear_revision();
    std::string reason, message;
    if (record.meta().name().empty()) {
      record.mutable_meta()->set_name(name);
      record.mutable_meta()->set_uid(fmt::format("{}-{:x}", name, now));
      record.mutable_meta()->mutable_created_at()->set_seconds(now / 1000);
      record.set_state(v1::HOST_STATE_READY);
      reason = "HostJoined";
      message = fmt::format("host {} joined ({})", name,
                            host.status ? host.status->agent_address() : "no address");
    } else if (host.status && record.state() != v1::HOST_STATE_READY) {
      record.set_state(v1::HOST_STATE_READY);
      reason = "HostReady";
      message = fmt::format("host {} reports again", name);
    } else if (!host.status && record.state() == v1::HOST_STATE_READY) {
      record.set_state(v1::HOST_STATE_UNREACHABLE);
      reason = "HostUnreachable";
      message = fmt::format(
          "host {}: its agent's lease expired; its HA VMs restart elsewhere in {} unless it "
          "comes back",
          name, absl::FormatDuration(config_.host_fence_timeout));
    } else if (!host.status && record.state() == v1::HOST_STATE_UNREACHABLE &&
               now - record.state_since_unix_ms() >=
                   absl::ToInt64Milliseconds(config_.host_fence_timeout)) {
      record.set_state(v1::HOST_STATE_FENCED);
      reason = "HostFenced";
      message = fmt::format(
          "host {} is fenced: its agent stopped its HA VMs before its lease expired, and {} "
          "passed since",
          name, absl::FormatDuration(config_.host_fence_timeout));
    } else {
      continue;
    }
    record.set_state_since_unix_ms(now);
    etcd::Txn txn = leader_.txn();
    txn.ifModRevision(hostKey(name), etcd::CompareOp::kLess, view.revision + 1);
    txn.thenPut(hostKey(name), encodeValue(record));
    v1::Event made =
        EventLog::make("host", name,
                       record.state() == v1::HOST_STATE_READY ? v1::Event::SEVERITY_INFO
                                                              : v1::Event::SEVERITY_WARNING,
                       reason, message);
    events_.add(txn, made);
    if (commit(txn, fmt::format("host {}", name))) log_.info("{}", message);
  }
}

// ---- HA ----

void Reconciler::reconcileHa(const ClusterView& view) {
  for (const auto& [name, vm] : view.vms) {
    if (vm.status.host().empty() || vm_tasks_.busy(name)) continue;
    auto host = view.hosts.find(vm.status.host());
    const bool fenced =
        host == view.hosts.end() || host->second.record.state() == v1::HOST_STATE_FENCED;
    if (!fenced) continue;
    const std::string& lost = vm.status.host();
    etcd::Txn txn = leader_.txn();
    txn.ifModRevision(vmStatusKey(name), etcd::CompareOp::kLess, view.revision + 1);
    v1::VmStatus status = vm.status;
    // A migration from or to the lost host cannot finish: it failed; the VM is where its
    // status says (the source until the migration succeeded).
    if (const v1::MigrationRecord* migration = view.activeMigration(name)) {
      if (migration_tasks_.busy(migration->meta().name())) continue;
      v1::MigrationRecord failed = *migration;
      failed.mutable_meta()->clear_revision();
      failed.set_phase(v1::MIGRATION_PHASE_FAILED);
      failed.set_message(fmt::format("host {} was lost", lost));
      failed.set_finished_unix_ms(nowMs());
      txn.thenPut(migrationKey(migration->meta().name()), encodeValue(failed));
      status.clear_migration();
    }
    std::string reason, message;
    if (vm.record.spec().ha() && vm.record.want_running() && !vm.record.deleting()) {
      status.set_host("");
      status.set_state(v1::VM_STATE_PENDING);
      status.set_generation(nextGeneration(status.generation(), absl::ToUnixSeconds(absl::Now())));
      status.set_restarts(status.restarts() + 1);
      reason = "HaRestart";
      message = fmt::format("host {} is lost: restarting HA vm {} elsewhere (generation {})", lost,
                            name, status.generation());
    } else if (vm.record.deleting()) {
      // Nothing to remove on a lost host: the VM goes (its volumes are detached).
      txn.thenDelete(vmKey(name));
      txn.thenDelete(vmStatusKey(name));
      for (const v1::DiskSpec& disk : vm.record.spec().disks()) {
        v1::VolumeRecord volume;
        auto stored = store_.get<v1::VolumeRecord>(volumeKey(disk.pool(), disk.volume()));
        if (!stored.ok() || !*stored) continue;
        volume = (*stored)->value;
        volume.clear_attached_to();
        txn.thenPut(volumeKey(disk.pool(), disk.volume()), encodeValue(volume));
      }
      events_.add(txn, EventLog::make("vm", name, v1::Event::SEVERITY_INFO, "Deleted",
                                      fmt::format("deleted (its host {} is lost)", lost)));
      commit(txn, fmt::format("delete vm {}", name));
      continue;
    } else {
      if (vm.status.state() == v1::VM_STATE_FAILED || vm.status.state() == v1::VM_STATE_STOPPED) {
        continue;
      }
      status.set_state(v1::VM_STATE_FAILED);
      reason = "HostLost";
      message = fmt::format(
          "host {} is lost; vm {} is not HA, so it stays assigned there (start it again once "
          "the host is back, or delete it)",
          lost, name);
    }
    status.set_message(message);
    status.set_state_since_unix_ms(nowMs());
    txn.thenPut(vmStatusKey(name), encodeValue(status));
    events_.add(txn, EventLog::make("vm", name, v1::Event::SEVERITY_WARNING, reason, message));
    if (commit(txn, fmt::format("HA of vm {}", name))) log_.warn("{}", message);
  }
}

// ---- VM lifecycle ----

void Reconciler::reconcileVms(const ClusterView& view) {
  // The VMs each host should have (placed there, or a migration's target).
  std::map<std::string, std::set<std::string>> expected;
  for (const auto& [name, vm] : view.vms) {
    if (!vm.status.host().empty()) expected[vm.status.host()].insert(name);
  }
  for (const auto& [name, migration] : view.migrations) {
    if (!migrationActive(migration.phase())) continue;
    expected[migration.source()].insert(migration.vm());
    if (!migration.target().empty()) expected[migration.target()].insert(migration.vm());
  }

  for (const auto& [name, vm] : view.vms) {
    if (vm_tasks_.busy(name) || view.activeMigration(name) != nullptr) continue;
    const v1::VmStatus& status = vm.status;
    const HostView* host = status.host().empty() ? nullptr : readyHost(view, status.host());
    if (vm.record.deleting()) {
      if (status.host().empty() || host != nullptr) {
        vm_tasks_.submit(
            name, [this, vm, host_copy = host ? std::optional<HostView>(*host) : std::nullopt](
                      std::stop_token) { deleteVm(vm, host_copy ? &*host_copy : nullptr); });
      }
      continue;
    }
    if (host == nullptr) continue;  // unplaced (scheduleVms) or on a host that is not ready
    const v1::HostVm* reported = reportedVm(*host, name);
    switch (status.state()) {
      case v1::VM_STATE_CREATING:
        if (vm.record.want_running()) {
          vm_tasks_.submit(
              name, [this, vm, h = *host, networks = networkBindings(view, vm.record.spec())](
                        std::stop_token) { createOnHost(vm, h, networks); });
        }
        break;
      case v1::VM_STATE_RUNNING:
        if (!vm.record.want_running()) {
          vm_tasks_.submit(name,
                           [this, vm, h = *host](std::stop_token) { stopOnHost(vm, h, false); });
        } else if (vm.record.restarts_requested() != status.restarts_done()) {
          vm_tasks_.submit(name,
                           [this, vm, h = *host](std::stop_token) { stopOnHost(vm, h, true); });
        } else if (hostReportNewer(*host, status) &&
                   (reported == nullptr || reported->state() == v1::VM_STATE_FAILED ||
                    reported->state() == v1::VM_STATE_STOPPED)) {
          // The agent says it ended (or lost it). HA VMs start again; others are reported.
          v1::VmStatus observed = status;
          const bool restart = vm.record.spec().ha();
          observed.set_state(restart
                                 ? v1::VM_STATE_CREATING
                                 : (reported == nullptr ? v1::VM_STATE_FAILED : reported->state()));
          observed.set_message(reported == nullptr
                                   ? fmt::format("host {} no longer has it", host->name)
                                   : fmt::format("its VMM on host {} ended ({})", host->name,
                                                 v1::VmState_Name(reported->state())));
          if (restart) observed.set_restarts(observed.restarts() + 1);
          observed.set_state_since_unix_ms(nowMs());
          v1::Event made = EventLog::make(
              "vm", name, v1::Event::SEVERITY_WARNING, restart ? "Restarting" : "Ended",
              observed.message() + (restart ? ": restarting it (HA)" : ""));
          writeVmStatus(name, observed, &made);
        }
        break;
      case v1::VM_STATE_STOPPED:
      case v1::VM_STATE_FAILED:
        if (reported != nullptr && reported->state() == v1::VM_STATE_RUNNING &&
            hostReportNewer(*host, status)) {
          // It runs after all (a host that came back): it is running where it is assigned.
          v1::VmStatus observed = status;
          observed.set_state(v1::VM_STATE_RUNNING);
          observed.set_message(fmt::format("running on host {}", host->name));
          observed.set_state_since_unix_ms(nowMs());
          writeVmStatus(name, observed);
        }
        break;
      default:
        break;
    }
  }

  // Orphans: VMs an agent has that this cluster does not place there (a host that was
  // fenced and came back, a VM deleted while its host was away, a migration whose end a
  // failed leader did not record). A VM must neither be lost nor run twice, so:
  // - its placed host runs it too: this copy is the extra one, and goes;
  // - nobody else runs it (and it runs here): it is adopted, here;
  // - the VM no longer exists: it goes.
  for (const auto& [host_name, host] : view.hosts) {
    if (!host.ready()) continue;
    for (const v1::HostVm& reported : host.status->vms()) {
      if (expected[host_name].contains(reported.name()) || vm_tasks_.busy(reported.name()) ||
          removedSince(host, reported.name())) {
        continue;
      }
      auto vm = view.vms.find(reported.name());
      // Only reports made after the VM's last status change count (a migration just moved
      // it: the source's report may still list it, the target's not yet).
      if (vm != view.vms.end() && !hostReportNewer(host, vm->second.status)) continue;
      if (vm != view.vms.end() && reported.state() == v1::VM_STATE_RUNNING) {
        const HostView* placed =
            vm->second.status.host().empty() ? nullptr : readyHost(view, vm->second.status.host());
        if (placed != nullptr && !hostReportNewer(*placed, vm->second.status)) continue;
        const v1::HostVm* there = placed ? reportedVm(*placed, reported.name()) : nullptr;
        if (there == nullptr || there->state() != v1::VM_STATE_RUNNING) {
          if (vm->second.status.state() == v1::VM_STATE_CREATING) continue;  // being started
          v1::VmStatus adopted = vm->second.status;
          adopted.set_host(host_name);
          adopted.set_state(v1::VM_STATE_RUNNING);
          adopted.set_message(fmt::format("found running on host {}", host_name));
          adopted.set_state_since_unix_ms(nowMs());
          v1::Event made = EventLog::make("vm", reported.name(), v1::Event::SEVERITY_WARNING,
                                          "Adopted", adopted.message());
          writeVmStatus(reported.name(), adopted, &made);
          continue;
        }
      }
      const std::string key = "orphan/" + host_name + "/" + reported.name();
      vm_tasks_.submit(key, [this, name = reported.name(), h = host](std::stop_token) {
        removeOrphan(name, h);
      });
    }
  }
}

void Reconciler::noteRemoved(const std::string& host, const std::string& vm) {
  const int64_t now = nowMs();
  absl::MutexLock lock(&removed_mu_);
  // Forget removals whose host never reported again (it went away).
  std::erase_if(removed_, [&](const auto& entry) { return now - entry.second > 60'000; });
  removed_[host + "/" + vm] = now;
}

bool Reconciler::removedSince(const HostView& host, const std::string& vm) {
  absl::MutexLock lock(&removed_mu_);
  auto removed = removed_.find(host.name + "/" + vm);
  if (removed == removed_.end()) return false;
  if (host.status && host.status->updated_unix_ms() <= removed->second + kClockMarginMs) {
    return true;
  }
  removed_.erase(removed);  // a newer report still lists it: remove it again
  return false;
}

void Reconciler::scheduleVms(const ClusterView& view) {
  std::vector<const VmView*> pending;
  for (const auto& [name, vm] : view.vms) {
    if (vm.status.host().empty() && vm.record.want_running() && !vm.record.deleting() &&
        !vm_tasks_.busy(name) &&
        (vm.status.state() == v1::VM_STATE_PENDING || vm.status.state() == v1::VM_STATE_CREATING)) {
      pending.push_back(&vm);
    }
  }
  if (pending.empty()) return;
  Scheduler scheduler(schedulerOptions(config_));
  scheduler.load(view);
  etcd::Txn txn = leader_.txn();
  size_t in_txn = 0;
  auto flush = [&] {
    if (in_txn == 0) return;
    commit(txn, fmt::format("placement of {} vm(s)", in_txn));
    txn = leader_.txn();
    in_txn = 0;
  };
  for (const VmView* vm : pending) {
    PlacementRequest request{.vm = vm->name, .record = &vm->record};
    PlacementResult result = scheduler.place(request);
    v1::VmStatus status = vm->status;
    if (result.host) {
      (void)scheduler.assign(vm->name, vm->record, *result.host);
      status.set_host(*result.host);
      status.set_state(v1::VM_STATE_CREATING);
      status.set_message(fmt::format("placed on host {}", *result.host));
      status.clear_unschedulable_reasons();
      status.set_state_since_unix_ms(nowMs());
      events_.add(txn, EventLog::make("vm", vm->name, v1::Event::SEVERITY_INFO, "Scheduled",
                                      status.message()));
    } else {
      std::vector<std::string> old(status.unschedulable_reasons().begin(),
                                   status.unschedulable_reasons().end());
      if (old == result.reasons) continue;
      status.clear_unschedulable_reasons();
      for (const std::string& reason : result.reasons) status.add_unschedulable_reasons(reason);
      status.set_message(result.reasons.empty() ? "no host fits" : result.reasons.back());
      events_.add(txn, EventLog::make("vm", vm->name, v1::Event::SEVERITY_WARNING, "Unschedulable",
                                      status.message()));
    }
    txn.ifModRevision(vmStatusKey(vm->name), etcd::CompareOp::kLess, view.revision + 1);
    txn.thenPut(vmStatusKey(vm->name), encodeValue(status));
    if (++in_txn == kBatch) flush();
  }
  flush();
}

void Reconciler::maybeRebalance(const ClusterView& view) {
  if (!config_.rebalance.automatic || absl::Now() - last_rebalance_ < config_.rebalance.interval) {
    return;
  }
  last_rebalance_ = absl::Now();
  for (const auto& [name, migration] : view.migrations) {
    if (migrationActive(migration.phase()) && !migration.rebalance().empty()) return;
  }
  if (!view.drains.empty()) {
    for (const auto& [name, drain] : view.drains) {
      if (drain.phase() == v1::DRAIN_PHASE_RUNNING) return;  // drains first
    }
  }
  const v1::RebalancePlan plan = planRebalanceMoves(config_, view, {});
  for (const v1::RebalanceMove& move : plan.moves()) {
    v1::MigrationRecord migration;
    const std::string name = fmt::format("{}-m{}", move.vm().substr(0, 40), nowMs());
    migration.mutable_meta()->set_name(name);
    migration.set_vm(move.vm());
    migration.set_source(move.source());
    migration.set_target(move.target());
    migration.set_mode(v1::MIGRATION_MODE_LIVE);
    migration.set_phase(v1::MIGRATION_PHASE_PENDING);
    migration.set_rebalance("rebalance");
    migration.set_created_unix_ms(nowMs());
    etcd::Txn txn = leader_.txn();
    txn.ifVersion(migrationKey(name), etcd::CompareOp::kEqual, 0);
    txn.thenPut(migrationKey(name), encodeValue(migration));
    events_.add(txn,
                EventLog::make("rebalance", move.vm(), v1::Event::SEVERITY_INFO, "Rebalance",
                               fmt::format("moving vm {} from {} to {} (gain {:.3f})", move.vm(),
                                           move.source(), move.target(), move.gain())));
    commit(txn, fmt::format("rebalance move of vm {}", move.vm()));
  }
}

}  // namespace flotilla::controller
