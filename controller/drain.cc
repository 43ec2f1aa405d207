// The reconciler's drains (DESIGN.md "Drain"): every VM placed on a drained host gets a
// migration (the migration pass picks its target within the limits); a failed move is
// retried up to migrations.attempts times, live first and cold only where the VM's policy
// and the drain allow it; stopped VMs just lose their placement. The drain ends Succeeded
// when the host is empty, or Failed with one reason per VM that cannot leave, instead of
// waiting forever. Progress lives in the DrainRecord, so a new leader carries on.
#include "absl/time/clock.h"
#include "controller/reconciler.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

int64_t nowMs() {
  return absl::ToUnixMillis(absl::Now());
}

// Why `vm` cannot move at all, or "" when it can.
std::string immovable(const ClusterView& view, const VmView& vm, bool allow_cold) {
  for (const v1::DiskSpec& disk : vm.record.spec().disks()) {
    auto pool = view.pools.find(disk.pool());
    if (pool == view.pools.end() || !pool->second.shared()) {
      return fmt::format("its disk {}/{} is on pool {}, which is not shared storage", disk.pool(),
                         disk.volume(), disk.pool());
    }
  }
  if (vm.record.spec().migration_policy() == v1::MIGRATION_POLICY_COLD && !allow_cold) {
    return "its migration policy is COLD and this drain does not allow cold moves (drain with "
           "--allow-cold)";
  }
  return "";
}

}  // namespace

void Reconciler::reconcileDrains(const ClusterView& view) {
  for (const auto& [host, drain] : view.drains) {
    if (drain.phase() != v1::DRAIN_PHASE_RUNNING) continue;
    v1::DrainRecord next = drain;
    next.mutable_meta()->clear_revision();
    etcd::Txn txn = leader_.txn();
    txn.ifModRevision(drainKey(host), etcd::CompareOp::kLess, view.revision + 1);
    if (drain.cancel_requested()) {
      next.set_phase(v1::DRAIN_PHASE_CANCELLED);
      next.set_message("cancelled (migrations already running finish on their own)");
      next.set_finished_unix_ms(nowMs());
      txn.thenPut(drainKey(host), encodeValue(next));
      events_.add(txn, EventLog::make("drain", host, v1::Event::SEVERITY_INFO, "DrainCancelled",
                                      next.message()));
      commit(txn, fmt::format("drain {}", host));
      continue;
    }
    std::map<std::string, v1::DrainVm> entries;
    for (const v1::DrainVm& entry : drain.vms()) entries[entry.vm()] = entry;
    std::set<std::string> on_host;
    for (const auto& [name, vm] : view.vms) {
      if (vm.status.host() != host) continue;
      on_host.insert(name);
      v1::DrainVm& entry = entries[name];
      entry.set_vm(name);
      if (entry.state() == v1::DrainVm::STATE_UNSPECIFIED)
        entry.set_state(v1::DrainVm::STATE_WAITING);
      if (const v1::MigrationRecord* active = view.activeMigration(name)) {
        entry.set_state(v1::DrainVm::STATE_MIGRATING);
        entry.set_migration(active->meta().name());
        entry.set_target(active->target());
        entry.set_message(active->message());
        continue;
      }
      if (!entry.migration().empty()) {
        auto ended = view.migrations.find(entry.migration());
        if (ended != view.migrations.end() &&
            ended->second.phase() != v1::MIGRATION_PHASE_SUCCEEDED) {
          entry.set_attempts(entry.attempts() + 1);
          entry.set_message(ended->second.message());
        }
        entry.clear_migration();
        entry.set_state(v1::DrainVm::STATE_WAITING);
      }
      if (entry.state() == v1::DrainVm::STATE_FAILED) continue;
      if (vm_tasks_.busy(name)) continue;
      const v1::VmState state = vm.status.state();
      if (state == v1::VM_STATE_STOPPED || state == v1::VM_STATE_FAILED ||
          (state == v1::VM_STATE_PENDING && !vm.record.want_running())) {
        entry.set_state(v1::DrainVm::STATE_MIGRATING);
        entry.set_message("not running: its definition leaves the host");
        const HostView* source = readyHost(view, host);
        vm_tasks_.submit(name,
                         [this, vm, s = source ? std::optional<HostView>(*source) : std::nullopt](
                             std::stop_token) { unplaceStopped(vm, s ? &*s : nullptr); });
        continue;
      }
      if (state != v1::VM_STATE_RUNNING) continue;  // starting: moved once it runs
      if (std::string why = immovable(view, vm, drain.allow_cold()); !why.empty()) {
        entry.set_state(v1::DrainVm::STATE_FAILED);
        entry.set_message(fmt::format("vm {} cannot leave: {}", name, why));
        continue;
      }
      if (entry.attempts() >= config_.migrations.attempts) {
        entry.set_state(v1::DrainVm::STATE_FAILED);
        entry.set_message(
            fmt::format("gave up after {} attempts: {}", entry.attempts(), entry.message()));
        continue;
      }
      const v1::MigrationPolicy policy = vm.record.spec().migration_policy();
      const bool cold =
          policy == v1::MIGRATION_POLICY_COLD || (policy == v1::MIGRATION_POLICY_LIVE_OR_COLD &&
                                                  drain.allow_cold() && entry.attempts() > 0);
      v1::MigrationRecord migration;
      const std::string migration_name = fmt::format("{}-m{}", name.substr(0, 40), nowMs());
      migration.mutable_meta()->set_name(migration_name);
      migration.set_vm(name);
      migration.set_source(host);
      migration.set_mode(cold ? v1::MIGRATION_MODE_COLD : v1::MIGRATION_MODE_LIVE);
      migration.set_phase(v1::MIGRATION_PHASE_PENDING);
      migration.set_drain(host);
      migration.set_created_unix_ms(nowMs());
      txn.ifVersion(migrationKey(migration_name), etcd::CompareOp::kEqual, 0);
      txn.thenPut(migrationKey(migration_name), encodeValue(migration));
      entry.set_state(v1::DrainVm::STATE_MIGRATING);
      entry.set_migration(migration_name);
      entry.clear_target();
    }
    size_t done = 0, failed = 0, busy = 0;
    std::vector<std::string> reasons;
    next.clear_vms();
    for (auto& [name, entry] : entries) {
      if (!on_host.contains(name) && entry.state() != v1::DrainVm::STATE_FAILED) {
        entry.set_state(v1::DrainVm::STATE_DONE);
        entry.clear_migration();
        entry.set_message(view.vms.contains(name)
                              ? fmt::format("now on {}", view.vms.at(name).status.host().empty()
                                                             ? std::string("no host (stopped)")
                                                             : view.vms.at(name).status.host())
                              : std::string("deleted"));
      }
      if (entry.state() == v1::DrainVm::STATE_FAILED && !on_host.contains(name)) {
        entry.set_state(v1::DrainVm::STATE_DONE);
      }
      switch (entry.state()) {
        case v1::DrainVm::STATE_DONE:
          ++done;
          break;
        case v1::DrainVm::STATE_FAILED:
          ++failed;
          reasons.push_back(entry.message());
          break;
        default:
          ++busy;
          break;
      }
      *next.add_vms() = entry;
    }
    v1::Event made;
    bool ended = false;
    if (busy == 0 && failed == 0) {
      next.set_phase(v1::DRAIN_PHASE_SUCCEEDED);
      next.set_message(fmt::format("host {} is empty: {} VM(s) moved", host, done));
      made =
          EventLog::make("drain", host, v1::Event::SEVERITY_INFO, "DrainSucceeded", next.message());
      ended = true;
    } else if (busy == 0) {
      next.set_phase(v1::DRAIN_PHASE_FAILED);
      next.set_message(
          fmt::format("{} VM(s) cannot leave host {}: {}", failed, host, fmt::join(reasons, "; ")));
      made =
          EventLog::make("drain", host, v1::Event::SEVERITY_ERROR, "DrainFailed", next.message());
      ended = true;
    } else {
      next.set_message(fmt::format("{} done, {} moving, {} failed", done, busy, failed));
    }
    if (ended) {
      next.set_finished_unix_ms(nowMs());
      events_.add(txn, made);
    }
    if (next.SerializeAsString() == [&] {
          v1::DrainRecord old = drain;
          old.mutable_meta()->clear_revision();
          return old.SerializeAsString();
        }()) {
      continue;
    }
    txn.thenPut(drainKey(host), encodeValue(next));
    if (commit(txn, fmt::format("drain {}", host)) && ended) log_.info("{}", made.message());
  }
}

}  // namespace flotilla::controller
