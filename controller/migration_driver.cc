// The reconciler's migrations: admission within the concurrency limits, then one driver per
// migration that moves it through its persisted phases (DESIGN.md "Live migration"):
//   PENDING → PREPARING (source agent: PrepareOutgoing; target agent: PrepareIncoming) →
//   TRANSFERRING (source agent: StartMigration, then GetMigration until it ends) →
//   SWITCHING → SUCCEEDED (Finish on both)
// or FAILED/CANCELLED (Abort on both; the VM runs on at the source). Each phase is written
// before the step it names, so that a new leader resumes every migration where it was: a
// step that is repeated is harmless (Prepare again after an Abort of the target; Start only
// when the source is idle; Finish and Abort are idempotent).
#include <thread>

#include "absl/time/clock.h"
#include "common/status.h"
#include "controller/reconciler.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

int64_t nowMs() {
  return absl::ToUnixMillis(absl::Now());
}

constexpr absl::Duration kPoll = absl::Milliseconds(100);
// How long the source may stay unanswering before the migration is given up.
constexpr absl::Duration kSourceSilence = absl::Seconds(30);

struct Counts {
  std::map<std::string, uint32_t> source, target;
  uint32_t total = 0;
};

}  // namespace

void Reconciler::reconcileMigrations(const ClusterView& view) {
  Counts counts;
  for (const auto& [name, migration] : view.migrations) {
    if (!migrationActive(migration.phase()) || migration.phase() == v1::MIGRATION_PHASE_PENDING) {
      continue;
    }
    counts.source[migration.source()]++;
    counts.target[migration.target()]++;
    counts.total++;
  }
  std::vector<const v1::MigrationRecord*> pending;
  for (const auto& [name, migration] : view.migrations) {
    if (!migrationActive(migration.phase()) || migration_tasks_.busy(name)) continue;
    if (migration.phase() != v1::MIGRATION_PHASE_PENDING) {
      migration_tasks_.submit(name,
                              [this, name](std::stop_token stop) { driveMigration(name, stop); });
      continue;
    }
    pending.push_back(&migration);
  }
  std::sort(pending.begin(), pending.end(),
            [](auto* a, auto* b) { return a->created_unix_ms() < b->created_unix_ms(); });
  std::optional<Scheduler> scheduler;
  for (const v1::MigrationRecord* migration : pending) {
    const std::string& name = migration->meta().name();
    v1::MigrationRecord next = *migration;
    next.mutable_meta()->clear_revision();
    auto vm = view.vms.find(migration->vm());
    std::string failure;
    if (migration->cancel_requested()) {
      next.set_phase(v1::MIGRATION_PHASE_CANCELLED);
      next.set_message("cancelled before it started");
    } else if (vm == view.vms.end() || vm->second.status.host() != migration->source() ||
               vm->second.status.state() != v1::VM_STATE_RUNNING) {
      failure = fmt::format("vm {} is not running on host {} any more", migration->vm(),
                            migration->source());
    } else if (counts.total >= config_.migrations.per_cluster ||
               counts.source[migration->source()] >= config_.migrations.per_source ||
               (!migration->target().empty() &&
                counts.target[migration->target()] >= config_.migrations.per_target)) {
      continue;  // waits for a slot
    } else {
      if (!scheduler) {
        scheduler.emplace(schedulerOptions(config_));
        scheduler->load(view);
      }
      PlacementRequest request{.vm = migration->vm(),
                               .record = &vm->second.record,
                               .exclude = {migration->source()},
                               .live_migration = migration->mode() == v1::MIGRATION_MODE_LIVE,
                               .source_host = migration->source()};
      if (migration->target().empty()) {
        PlacementResult placed = scheduler->place(request);
        if (!placed.host) {
          failure = fmt::format("no host can take vm {}: {}", migration->vm(),
                                fmt::join(placed.reasons, "; "));
        } else if (counts.target[*placed.host] >= config_.migrations.per_target) {
          continue;
        } else {
          next.set_target(*placed.host);
        }
      } else if (absl::Status fits = scheduler->check(request, migration->target()); !fits.ok()) {
        failure = fmt::format("host {} cannot take vm {}: {}", migration->target(), migration->vm(),
                              fits.message());
      }
    }
    etcd::Txn txn = leader_.txn();
    txn.ifModRevision(migrationKey(name), etcd::CompareOp::kLess, view.revision + 1);
    if (!failure.empty()) {
      next.set_phase(v1::MIGRATION_PHASE_FAILED);
      next.set_message(failure);
    }
    if (!migrationActive(next.phase())) {
      next.set_finished_unix_ms(nowMs());
      txn.thenPut(migrationKey(name), encodeValue(next));
      events_.add(txn, EventLog::make("migration", name, v1::Event::SEVERITY_WARNING,
                                      "MigrationFailed", next.message()));
      commit(txn, fmt::format("migration {}", name));
      continue;
    }
    next.set_phase(v1::MIGRATION_PHASE_PREPARING);
    next.set_started_unix_ms(nowMs());
    next.set_message(fmt::format("preparing host {}", next.target()));
    v1::VmStatus status = vm->second.status;
    status.set_state(v1::VM_STATE_MIGRATING);
    status.set_migration(name);
    status.set_message(fmt::format("migrating to host {}", next.target()));
    txn.ifModRevision(vmStatusKey(migration->vm()), etcd::CompareOp::kLess, view.revision + 1);
    txn.thenPut(migrationKey(name), encodeValue(next));
    txn.thenPut(vmStatusKey(migration->vm()), encodeValue(status));
    events_.add(
        txn,
        EventLog::make(
            "migration", name, v1::Event::SEVERITY_INFO, "MigrationStarted",
            fmt::format("vm {}: {} → {} ({})", migration->vm(), migration->source(), next.target(),
                        migration->mode() == v1::MIGRATION_MODE_COLD ? "cold" : "live")));
    if (!commit(txn, fmt::format("migration {}", name))) continue;
    (void)scheduler->assign(migration->vm(), vm->second.record, next.target());
    counts.source[next.source()]++;
    counts.target[next.target()]++;
    counts.total++;
    migration_tasks_.submit(name,
                            [this, name](std::stop_token stop) { driveMigration(name, stop); });
  }
}

void Reconciler::driveMigration(const std::string& name, std::stop_token stop) {
  const Logger log = log_.with("migration", name);
  auto read = [&]() -> std::optional<Versioned<v1::MigrationRecord>> {
    auto migration = store_.get<v1::MigrationRecord>(migrationKey(name));
    if (!migration.ok() || !*migration) return std::nullopt;
    return **migration;
  };
  std::optional<Versioned<v1::MigrationRecord>> current = read();
  if (!current || !migrationActive(current->value.phase())) return;
  v1::MigrationRecord migration = current->value;
  auto hostAddress = [&](const std::string& host) -> std::string {
    auto status = store_.get<v1::HostStatus>(hostStatusKey(host));
    if (!status.ok() || !*status) return "";
    return (*status)->value.agent_address();
  };
  const std::string source_address = hostAddress(migration.source());
  const std::string target_address = hostAddress(migration.target());
  auto callSource = [&](std::string_view what, const AgentClients::Call& call) {
    return agents_.call(migration.source(), source_address, what, call);
  };
  auto callTarget = [&](std::string_view what, const AgentClients::Call& call) {
    return agents_.call(migration.target(), target_address, what, call);
  };
  v1::MigrationEndRequest source_end, target_end;
  source_end.set_name(migration.vm());
  source_end.set_role(v1::MigrationEndRequest::ROLE_SOURCE);
  target_end.set_name(migration.vm());
  target_end.set_role(v1::MigrationEndRequest::ROLE_TARGET);

  // Writes the migration (and, at its end, the VM's status) conditioned on the migration's
  // revision as last read or written here.
  auto persist = [&](const v1::MigrationRecord& next, const v1::VmStatus* vm_status,
                     const v1::Event* made) -> bool {
    etcd::Txn txn = leader_.txn();
    txn.ifModRevision(migrationKey(name), etcd::CompareOp::kEqual, current->mod_revision);
    txn.thenPut(migrationKey(name), encodeValue(next));
    if (vm_status != nullptr) {
      txn.ifVersion(vmKey(migration.vm()), etcd::CompareOp::kGreater, 0);
      txn.thenPut(vmStatusKey(migration.vm()), encodeValue(*vm_status));
    }
    if (made != nullptr) events_.add(txn, *made);
    if (!commit(txn, fmt::format("migration {}", name))) return false;
    current = read();
    if (current) migration = current->value;
    return current.has_value();
  };
  auto vmStatus = [&]() {
    auto status = store_.get<v1::VmStatus>(vmStatusKey(migration.vm()));
    return status.ok() && *status ? (*status)->value : v1::VmStatus();
  };

  v1::AgentVmRequest get;
  get.set_name(migration.vm());
  v1::MigrationStatus progress;
  // Whether the target has the VM running: its VMM resumed it (the migration completed,
  // whatever the source says; after a leader failover the source's status may be stale or
  // gone), or it was finished there already.
  auto targetHasIt = [&] {
    v1::MigrationStatus on_target;
    absl::Status polled_target =
        callTarget("GetMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.GetMigration(&ctx, get, &on_target);
        });
    if (polled_target.ok() && on_target.role() == "target" && on_target.phase() == "resumed") {
      return true;
    }
    v1::AgentVm vm_on_target;
    absl::Status got =
        callTarget("GetVm", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.GetVm(&ctx, get, &vm_on_target);
        });
    return got.ok() && vm_on_target.state() == v1::VM_STATE_RUNNING && !vm_on_target.incoming();
  };
  // Completed: the target runs the VM. Finish both sides.
  auto finish = [&] {
    v1::AgentVm finished;
    absl::Status target_done;
    for (int attempt = 0; attempt < 20 && !stop.stop_requested(); ++attempt) {
      target_done = callTarget("FinishMigration",
                               [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                                 return stub.FinishMigration(&ctx, target_end, &finished);
                               });
      if (target_done.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    v1::AgentVm ignored;
    absl::Status source_done =
        callSource("FinishMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.FinishMigration(&ctx, source_end, &ignored);
        });
    if (!source_done.ok()) log.warn("{}", source_done.message());
    v1::MigrationRecord next = migration;
    next.set_phase(v1::MIGRATION_PHASE_SUCCEEDED);
    next.set_finished_unix_ms(nowMs());
    next.set_bytes_sent(progress.bytes_sent());
    next.set_rounds(progress.round());
    next.set_downtime_ms(static_cast<double>(progress.downtime_us()) / 1000.0);
    next.set_remaining_bytes(0);
    next.set_message(fmt::format("moved in {} ms, downtime {:.1f} ms",
                                 next.finished_unix_ms() - next.started_unix_ms(),
                                 next.downtime_ms()));
    next.clear_target_token();
    v1::VmStatus status = vmStatus();
    status.set_host(migration.target());
    status.set_state(target_done.ok() ? v1::VM_STATE_RUNNING : v1::VM_STATE_FAILED);
    status.clear_migration();
    status.set_message(target_done.ok()
                           ? fmt::format("running on host {}", migration.target())
                           : fmt::format("migrated to host {}, which failed to take it: {}",
                                         migration.target(), target_done.message()));
    status.set_state_since_unix_ms(nowMs());
    v1::Event made =
        EventLog::make("migration", name, v1::Event::SEVERITY_INFO, "Migrated",
                       fmt::format("vm {}: {} → {}: {}", migration.vm(), migration.source(),
                                   migration.target(), next.message()));
    log.info("{}", made.message());
    persist(next, &status, &made);
  };

  auto end = [&](v1::MigrationPhase phase, const std::string& message) {
    // Never abort a target that already runs the VM: that would lose it. It moved.
    if (migration.phase() != v1::MIGRATION_PHASE_PREPARING && targetHasIt()) {
      log.warn("{}; but the target runs the VM: the migration completed", message);
      finish();
      return;
    }
    // Abort on both sides: the source cancels (or finds nothing to cancel) and keeps the VM;
    // the target removes what it prepared.
    v1::AgentVm ignored;
    absl::Status source_aborted =
        callSource("AbortMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.AbortMigration(&ctx, source_end, &ignored);
        });
    absl::Status target_aborted =
        callTarget("AbortMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.AbortMigration(&ctx, target_end, &ignored);
        });
    if (!source_aborted.ok()) log.warn("{}", source_aborted.message());
    if (!target_aborted.ok()) log.warn("{}", target_aborted.message());
    current = read();  // a cancel request may have changed it meanwhile
    if (!current) return;
    migration = current->value;
    v1::MigrationRecord next = migration;
    next.set_phase(phase);
    next.set_message(message);
    next.set_finished_unix_ms(nowMs());
    v1::VmStatus status = vmStatus();
    status.clear_migration();
    status.set_state(source_aborted.ok() || absl::IsFailedPrecondition(source_aborted)
                         ? v1::VM_STATE_RUNNING
                         : v1::VM_STATE_FAILED);
    status.set_message(fmt::format("migration {} {}: {}", name,
                                   phase == v1::MIGRATION_PHASE_CANCELLED ? "cancelled" : "failed",
                                   message));
    status.set_state_since_unix_ms(nowMs());
    v1::Event made = EventLog::make(
        "migration", name, v1::Event::SEVERITY_WARNING,
        phase == v1::MIGRATION_PHASE_CANCELLED ? "MigrationCancelled" : "MigrationFailed",
        fmt::format("vm {}: {}", migration.vm(), message));
    log.warn("{}", made.message());
    persist(next, &status, &made);
  };

  if (source_address.empty() || target_address.empty()) {
    end(v1::MIGRATION_PHASE_FAILED,
        fmt::format("host {} is not reporting",
                    source_address.empty() ? migration.source() : migration.target()));
    return;
  }

  if (migration.phase() == v1::MIGRATION_PHASE_PREPARING) {
    auto vm = store_.get<v1::VmRecord>(vmKey(migration.vm()));
    if (!vm.ok() || !*vm) {
      end(v1::MIGRATION_PHASE_FAILED, "the VM was deleted");
      return;
    }
    v1::AgentVm on_source;
    absl::Status got =
        callSource("GetVm", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.GetVm(&ctx, get, &on_source);
        });
    if (!got.ok()) {
      end(v1::MIGRATION_PHASE_FAILED, std::string(got.message()));
      return;
    }
    // The target VMM opens the VM's iSCSI LUNs with the generation the source runs, so that
    // both may write until the switch-over (docs/storage.md "Fencing by generation"); a wrong
    // one would fence the source or be refused, so an unreadable status fails the migration.
    auto vm_status = store_.get<v1::VmStatus>(vmStatusKey(migration.vm()));
    if (!vm_status.ok() || !*vm_status) {
      end(v1::MIGRATION_PHASE_FAILED, vm_status.ok() ? std::string("the VM has no status")
                                                     : fmt::format("reading the VM's status: {}",
                                                                   vm_status.status().message()));
      return;
    }
    v1::PrepareIncomingRequest prepare;
    prepare.set_name(migration.vm());
    *prepare.mutable_spec() = (*vm)->value.spec();
    prepare.set_uid((*vm)->value.meta().uid());
    prepare.set_generation((*vm_status)->value.generation());
    for (const v1::AgentNic& nic : on_source.nics()) {
      prepare.add_macs(nic.mac());
      v1::NetworkBinding* binding = prepare.add_networks();
      binding->set_name(nic.network());
      binding->set_vlan(nic.vlan());
    }
    // The source first readies the VM's volumes for a second opener (DRBD: two primaries
    // allowed until the migration ends; nothing for other pools). An agent older than this
    // call has no DRBD pools, so UNIMPLEMENTED is nothing to do (a rolling upgrade).
    v1::PrepareOutgoingResponse outgoing;
    absl::Status readied =
        callSource("PrepareOutgoing", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.PrepareOutgoing(&ctx, get, &outgoing);
        });
    if (!readied.ok() && !absl::IsUnimplemented(readied)) {
      end(v1::MIGRATION_PHASE_FAILED, std::string(readied.message()));
      return;
    }
    v1::PrepareIncomingResponse prepared;
    auto callPrepare = [&] {
      return callTarget("PrepareIncoming",
                        [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                          return stub.PrepareIncoming(&ctx, prepare, &prepared);
                        });
    };
    absl::Status status = callPrepare();
    if (absl::IsAlreadyExists(status)) {
      // Prepared before a leader failover: start that side over.
      v1::AgentVm ignored;
      (void)callTarget("AbortMigration",
                       [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                         return stub.AbortMigration(&ctx, target_end, &ignored);
                       });
      status = callPrepare();
    }
    if (!status.ok()) {
      end(v1::MIGRATION_PHASE_FAILED, std::string(status.message()));
      return;
    }
    v1::MigrationRecord next = migration;
    next.set_phase(v1::MIGRATION_PHASE_TRANSFERRING);
    next.set_target_address(prepared.address());
    next.set_target_token(prepared.token());
    next.set_message(fmt::format("sending to {}", prepared.address()));
    if (!persist(next, nullptr, nullptr)) return;
  }

  if (stop.stop_requested()) return;
  absl::Status polled =
      callSource("GetMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
        return stub.GetMigration(&ctx, get, &progress);
      });
  bool completed = false;
  if (absl::IsNotFound(polled)) {
    if (!targetHasIt()) {
      end(v1::MIGRATION_PHASE_FAILED,
          "the VM is on neither host any more: it was lost during the migration");
      return;
    }
    completed = true;
  }
  // The source VMM sends nothing yet: no phase, or the status of the migration that brought
  // the VM here (role "target").
  const bool source_idle =
      progress.phase().empty() || progress.phase() == "idle" || progress.role() != "source";
  if (!completed && source_idle && targetHasIt()) completed = true;  // started before
  if (!completed && polled.ok() && source_idle &&
      migration.phase() == v1::MIGRATION_PHASE_TRANSFERRING) {
    v1::StartMigrationRequest start;
    start.set_name(migration.vm());
    start.set_address(migration.target_address());
    start.set_token(migration.target_token());
    v1::MigrateSendRequest* options = start.mutable_options();
    options->set_downtime_limit_ms(migration.downtime_limit_ms() != 0
                                       ? migration.downtime_limit_ms()
                                       : config_.migrations.downtime_limit_ms);
    options->set_cold(migration.mode() == v1::MIGRATION_MODE_COLD);
    options->set_auto_converge(true);
    v1::StartMigrationResponse started;
    absl::Status status =
        callSource("StartMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.StartMigration(&ctx, start, &started);
        });
    if (!status.ok()) {
      end(v1::MIGRATION_PHASE_FAILED, std::string(status.message()));
      return;
    }
  }

  absl::Time last_answer = absl::Now();
  const absl::Time sending_since = absl::Now();
  absl::Time last_write = absl::Now();
  while (!completed && !stop.stop_requested()) {
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(kPoll));
    polled =
        callSource("GetMigration", [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
          return stub.GetMigration(&ctx, get, &progress);
        });
    if (absl::IsNotFound(polled) && targetHasIt()) break;
    if (!polled.ok()) {
      if (absl::Now() - last_answer > kSourceSilence) {
        end(v1::MIGRATION_PHASE_FAILED,
            fmt::format("the source stopped answering: {}", polled.message()));
        return;
      }
      continue;
    }
    last_answer = absl::Now();
    if (progress.role() != "source") {
      // Not sending (yet), or the source's VMM is gone and its agent's status is stale.
      if (targetHasIt()) break;
      if (absl::Now() - sending_since > kSourceSilence) {
        end(v1::MIGRATION_PHASE_FAILED, "the source VMM never started sending");
        return;
      }
      continue;
    }
    const std::string& phase = progress.phase();
    if (phase == "completed") break;
    if (phase == "failed" || phase == "cancelled") {
      end(v1::MIGRATION_PHASE_FAILED,
          progress.error().empty() ? "the VMM reported " + phase : progress.error());
      return;
    }
    if (phase == "unknown") {
      // `go` left but no confirmation came back: the target decides.
      if (targetHasIt()) break;
      end(v1::MIGRATION_PHASE_FAILED,
          "the switchover's outcome is unknown and the target does not run the VM: the source "
          "stays paused (resume or delete the VM by hand)");
      return;
    }
    const bool switching = phase == "switchover";
    if (absl::Now() - last_write > absl::Seconds(1) ||
        (switching && migration.phase() != v1::MIGRATION_PHASE_SWITCHING)) {
      last_write = absl::Now();
      current = read();
      if (!current) return;
      migration = current->value;
      if (migration.cancel_requested() && !switching) {
        end(v1::MIGRATION_PHASE_CANCELLED, "cancelled by request");
        return;
      }
      v1::MigrationRecord next = migration;
      next.set_bytes_sent(progress.bytes_sent());
      next.set_rounds(progress.round());
      next.set_remaining_bytes(progress.remaining_bytes());
      next.set_dirty_rate_bytes(progress.dirty_rate_bytes());
      next.set_bandwidth_bytes(progress.bandwidth_bytes());
      if (switching) next.set_phase(v1::MIGRATION_PHASE_SWITCHING);
      next.set_message(fmt::format("{}: round {}, {} MiB sent, {} MiB remaining", phase,
                                   progress.round(), progress.bytes_sent() >> 20,
                                   progress.remaining_bytes() >> 20));
      if (!persist(next, nullptr, nullptr)) return;
    }
  }
  if (stop.stop_requested()) return;

  finish();
}

}  // namespace flotilla::controller
