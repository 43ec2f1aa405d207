// drain_bench's steps (see drain_steps.h).
#include "bench/cluster/drain_steps.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/rpc/channel.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {
namespace {

using Stub = v1::ClusterService::Stub;

constexpr uint64_t kVolumeBytes = uint64_t{16} << 20;
constexpr uint32_t kBlueVlan = 100;
constexpr absl::Duration kAgentCallTimeout = absl::Seconds(30);

int64_t nowUnixMs() {
  return absl::ToUnixMillis(absl::Now());
}

bool runningOn(const v1::Vm& vm, const std::string& host) {
  return vm.status().state() == v1::VM_STATE_RUNNING && vm.status().host() == host;
}

absl::Status cordon(ControllerCluster& cluster, const std::string& host, const std::string& why) {
  v1::CordonHostRequest request;
  request.set_name(host);
  request.set_reason(why);
  v1::Host ignored;
  return fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CordonHost(&context, request, &ignored);
  }),
                        "cordon host " + host);
}

absl::Status uncordon(ControllerCluster& cluster, const std::string& host) {
  v1::NameRequest request;
  request.set_name(host);
  v1::Host ignored;
  return fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.UncordonHost(&context, request, &ignored);
  }),
                        "uncordon host " + host);
}

// An AgentService call with a deadline; the error names the call and the host.
template <typename Call>
absl::Status callAgent(agent::testing::AgentHost& host, std::string_view what, Call&& call) {
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(kAgentCallTimeout));
  return fromGrpcStatus(call(host.api(), context), fmt::format("{} on {}", what, host.name()));
}

}  // namespace

std::vector<BenchVm> benchVms(const std::string& prefix, int count, int first_host_octet) {
  std::vector<BenchVm> vms;
  for (int i = 1; i <= count; ++i) {
    const std::string name = fmt::format("{}-{}", prefix, i);
    vms.push_back({.name = name,
                   .ip = fmt::format("10.78.0.{}", first_host_octet + i - 1),
                   .volume = name + "-disk"});
  }
  return vms;
}

std::vector<probe::ProbeTarget> probeTargets(const std::vector<BenchVm>& vms) {
  std::vector<probe::ProbeTarget> targets;
  for (const BenchVm& vm : vms) targets.push_back({.name = vm.name, .address = vm.ip});
  return targets;
}

absl::Status createNetworkAndStorage(ControllerCluster& cluster, const std::vector<BenchVm>& vms) {
  v1::NetworkRecord blue;
  blue.mutable_meta()->set_name("blue");
  blue.set_vlan(kBlueVlan);
  v1::NetworkRecord made_network;
  RETURN_IF_ERROR(fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreateNetwork(&context, blue, &made_network);
  }),
                                 "create network blue"));
  v1::PoolRecord san;
  san.mutable_meta()->set_name("san");
  san.set_type(v1::POOL_TYPE_ISCSI);
  san.set_manager_host(cluster.host(0).name());
  v1::PoolRecord made_pool;
  RETURN_IF_ERROR(fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreatePool(&context, san, &made_pool);
  }),
                                 "create pool san"));
  for (const BenchVm& vm : vms) {
    v1::CreateVolumeRequest request;
    request.set_pool("san");
    request.set_name(vm.volume);
    request.set_size_bytes(kVolumeBytes);
    v1::VolumeRecord made;
    grpc::Status status;
    // FAILED_PRECONDITION until the pool's host has reported to the controller.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    do {
      status = cluster.call([&](Stub& stub, grpc::ClientContext& context) {
        return stub.CreateVolume(&context, request, &made);
      });
      if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) break;
      absl::SleepFor(absl::Milliseconds(100));
    } while (absl::Now() < deadline);
    RETURN_IF_ERROR(fromGrpcStatus(status, "create volume san/" + vm.volume));
  }
  return absl::OkStatus();
}

absl::Status createVmsOnHost(ControllerCluster& cluster, int host, const std::vector<BenchVm>& vms,
                             absl::Duration timeout) {
  const std::string wanted = cluster.host(host).name();
  std::vector<std::string> cordoned;
  absl::Status placed;
  for (int other = 0; other < cluster.hostCount() && placed.ok(); ++other) {
    if (other == host) continue;
    const std::string name = cluster.host(other).name();
    placed = cordon(cluster, name, fmt::format("drain_bench: the VMs go to {}", wanted));
    if (placed.ok()) cordoned.push_back(name);
  }
  for (size_t i = 0; i < vms.size() && placed.ok(); ++i) {
    v1::CreateVmClusterRequest request =
        controller::testing::testVm(vms[i].name, vms[i].ip, vms[i].volume, /*ha=*/false);
    v1::Vm created;
    placed = fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.CreateVm(&context, request, &created);
    }),
                            "create vm " + vms[i].name);
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (size_t i = 0; i < vms.size() && placed.ok(); ++i) {
    auto vm = cluster.waitForVm(
        vms[i].name,
        [&](const v1::Vm& seen) {
          return seen.status().state() == v1::VM_STATE_RUNNING ||
                 seen.status().state() == v1::VM_STATE_FAILED;
        },
        std::max(deadline - absl::Now(), absl::Seconds(1)));
    if (!vm.ok()) {
      placed = vm.status();
    } else if (!runningOn(*vm, wanted)) {
      placed = absl::InternalError(fmt::format("vm {} should run on {}; it is {}", vms[i].name,
                                               wanted, vm->ShortDebugString()));
    }
  }
  for (const std::string& name : cordoned) {
    absl::Status uncordoned = uncordon(cluster, name);
    if (placed.ok()) placed = uncordoned;
  }
  return placed;
}

absl::Status deleteVms(ControllerCluster& cluster, const std::vector<BenchVm>& vms,
                       absl::Duration timeout) {
  for (const BenchVm& vm : vms) {
    v1::NameRequest request;
    request.set_name(vm.name);
    v1::DeleteResponse deleted;
    RETURN_IF_ERROR(fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.DeleteVm(&context, request, &deleted);
    }),
                                   "delete vm " + vm.name));
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (const BenchVm& vm : vms) {
    while (true) {
      v1::NameRequest request;
      request.set_name(vm.name);
      v1::Vm seen;
      grpc::Status status = cluster.call([&](Stub& stub, grpc::ClientContext& context) {
        return stub.GetVm(&context, request, &seen);
      });
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) break;
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            fmt::format("vm {} still exists {} after DeleteVm: {} {}\n{}", vm.name,
                        absl::FormatDuration(timeout), status.error_message(),
                        seen.ShortDebugString(), cluster.logs()));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  return absl::OkStatus();
}

absl::Status undrainHost(ControllerCluster& cluster, const std::string& host) {
  v1::NameRequest request;
  request.set_name(host);
  v1::Host ignored;
  return fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.UndrainHost(&context, request, &ignored);
  }),
                        "undrain host " + host);
}

absl::StatusOr<DrainOutcome> drainHost(ControllerCluster& cluster, const std::string& host,
                                       absl::Duration poll, absl::Duration timeout) {
  DrainOutcome outcome;
  v1::DrainHostRequest drain;
  drain.set_name(host);
  v1::DrainRecord record;
  outcome.called_at = systemClock().monotonicNow();
  RETURN_IF_ERROR(fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.DrainHost(&context, drain, &record);
  }),
                                 "drain host " + host));
  const absl::Time deadline = absl::Now() + timeout;
  while (record.phase() == v1::DRAIN_PHASE_RUNNING && absl::Now() < deadline) {
    absl::SleepFor(poll);
    v1::NameRequest request;
    request.set_name(host);
    v1::DrainRecord read;
    grpc::Status status = cluster.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.GetDrain(&context, request, &read);
    });
    if (!status.ok()) continue;  // the deadline bounds a controller that stays unreachable
    record = std::move(read);
  }
  outcome.succeeded_at = systemClock().monotonicNow();
  if (record.phase() != v1::DRAIN_PHASE_SUCCEEDED) {
    return absl::InternalError(fmt::format("the drain of {} did not succeed within {}: {}\n{}",
                                           host, absl::FormatDuration(timeout),
                                           record.ShortDebugString(), cluster.logs()));
  }
  outcome.record_ms = record.finished_unix_ms() - record.created_unix_ms();
  outcome.message = record.message();

  v1::ListMigrationsResponse migrations;
  RETURN_IF_ERROR(fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.ListMigrations(&context, v1::ListRequest(), &migrations);
  }),
                                 "list migrations"));
  for (const v1::MigrationRecord& migration : migrations.migrations()) {
    if (migration.drain() != host) continue;
    outcome.moves.push_back({.vm = migration.vm(),
                             .source = migration.source(),
                             .target = migration.target(),
                             .succeeded = migration.phase() == v1::MIGRATION_PHASE_SUCCEEDED,
                             .started_unix_ms = migration.started_unix_ms(),
                             .finished_unix_ms = migration.finished_unix_ms(),
                             .vmm_downtime_ms = migration.downtime_ms(),
                             .message = migration.message()});
  }
  return outcome;
}

absl::StatusOr<std::map<std::string, uint64_t>> vmGenerations(ControllerCluster& cluster,
                                                              const std::vector<BenchVm>& vms) {
  std::map<std::string, uint64_t> generations;
  for (const BenchVm& vm : vms) {
    v1::NameRequest request;
    request.set_name(vm.name);
    v1::Vm seen;
    RETURN_IF_ERROR(fromGrpcStatus(cluster.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.GetVm(&context, request, &seen);
    }),
                                   "get vm " + vm.name));
    generations[vm.name] = seen.status().generation();
  }
  return generations;
}

absl::StatusOr<Move> migrateDirectly(agent::testing::AgentHost& source,
                                     agent::testing::AgentHost& target, const std::string& vm,
                                     uint64_t generation, uint32_t downtime_limit_ms,
                                     absl::Duration poll, absl::Duration timeout) {
  Move move;
  move.vm = vm;
  move.source = source.name();
  move.target = target.name();
  v1::AgentVmRequest get;
  get.set_name(vm);
  v1::AgentVm on_source;
  move.started_unix_ms = nowUnixMs();
  RETURN_IF_ERROR(callAgent(source, "GetVm " + vm, [&](auto& stub, auto& context) {
    return stub.GetVm(&context, get, &on_source);
  }));
  v1::PrepareIncomingRequest prepare;
  prepare.set_name(vm);
  *prepare.mutable_spec() = on_source.spec();
  prepare.set_uid(on_source.uid());
  prepare.set_generation(generation);
  for (const v1::AgentNic& nic : on_source.nics()) {
    prepare.add_macs(nic.mac());
    v1::NetworkBinding* binding = prepare.add_networks();
    binding->set_name(nic.network());
    binding->set_vlan(nic.vlan());
  }
  v1::PrepareIncomingResponse prepared;
  RETURN_IF_ERROR(callAgent(target, "PrepareIncoming " + vm, [&](auto& stub, auto& context) {
    return stub.PrepareIncoming(&context, prepare, &prepared);
  }));

  v1::MigrationEndRequest source_end;
  source_end.set_name(vm);
  source_end.set_role(v1::MigrationEndRequest::ROLE_SOURCE);
  v1::MigrationEndRequest target_end;
  target_end.set_name(vm);
  target_end.set_role(v1::MigrationEndRequest::ROLE_TARGET);
  // Before the target resumed the VM: the source keeps it, the target drops what it prepared.
  auto abortBoth = [&](const absl::Status& why) {
    v1::AgentVm ignored;
    absl::Status source_aborted = callAgent(source, "AbortMigration " + vm, [&](auto& s, auto& c) {
      return s.AbortMigration(&c, source_end, &ignored);
    });
    absl::Status target_aborted = callAgent(target, "AbortMigration " + vm, [&](auto& s, auto& c) {
      return s.AbortMigration(&c, target_end, &ignored);
    });
    std::string aborts = "aborted on both sides";
    if (!source_aborted.ok() || !target_aborted.ok()) {
      aborts = fmt::format("aborting: {}; {}", source_aborted.message(), target_aborted.message());
    }
    return annotate(why, fmt::format("migrating {} from {} to {} ({})", vm, source.name(),
                                     target.name(), aborts));
  };

  v1::StartMigrationRequest start;
  start.set_name(vm);
  start.set_address(prepared.address());
  start.set_token(prepared.token());
  start.mutable_options()->set_downtime_limit_ms(downtime_limit_ms);
  start.mutable_options()->set_auto_converge(true);
  v1::StartMigrationResponse started;
  if (absl::Status status = callAgent(source, "StartMigration " + vm,
                                      [&](auto& stub, auto& context) {
                                        return stub.StartMigration(&context, start, &started);
                                      });
      !status.ok()) {
    return abortBoth(status);
  }
  const absl::Time deadline = absl::Now() + timeout;
  v1::MigrationStatus progress;
  while (true) {
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(poll));
    absl::Status polled = callAgent(source, "GetMigration " + vm, [&](auto& stub, auto& context) {
      return stub.GetMigration(&context, get, &progress);
    });
    if (!polled.ok()) return abortBoth(polled);
    // The source agent's own status: its VMM's, or, once that VMM exited, the last one the
    // agent read, marked completed when the VMM exited successfully. That is role "" and no
    // figures when the VMM finished before any GetMigration reached it (only StartMigration's
    // "setup" was recorded).
    const bool sending = progress.role() == "source" || progress.role().empty();
    if (sending && progress.phase() == "completed") break;
    if (sending && progress.phase() == "unknown") {
      // The switchover's outcome is unknown: aborting the target could lose the VM.
      return absl::InternalError(fmt::format(
          "migrating {} from {} to {}: the switchover's outcome is unknown ({}); nothing aborted",
          vm, source.name(), target.name(), progress.ShortDebugString()));
    }
    if (sending && (progress.phase() == "failed" || progress.phase() == "cancelled")) {
      return abortBoth(absl::InternalError(
          fmt::format("the source VMM reported {}: {}", progress.phase(), progress.error())));
    }
    if (absl::Now() > deadline) {
      return abortBoth(absl::DeadlineExceededError(fmt::format("not completed within {}: {}",
                                                               absl::FormatDuration(timeout),
                                                               progress.ShortDebugString())));
    }
  }
  move.completed_unix_ms = nowUnixMs();
  move.vmm_downtime_ms = static_cast<double>(progress.downtime_us()) / 1000.0;

  // Completed: the target runs the VM. Finish both sides (never an abort from here on).
  v1::AgentVm on_target;
  RETURN_IF_ERROR(callAgent(target, "FinishMigration " + vm, [&](auto& stub, auto& context) {
    return stub.FinishMigration(&context, target_end, &on_target);
  }));
  move.target_finished_unix_ms = nowUnixMs();
  v1::AgentVm ignored;
  RETURN_IF_ERROR(callAgent(source, "FinishMigration " + vm, [&](auto& stub, auto& context) {
    return stub.FinishMigration(&context, source_end, &ignored);
  }));
  move.finished_unix_ms = nowUnixMs();
  if (on_target.state() != v1::VM_STATE_RUNNING) {
    return absl::InternalError(
        fmt::format("{} finished the migration of {} but does not run it: {}", target.name(), vm,
                    on_target.ShortDebugString()));
  }
  move.succeeded = true;
  move.message = fmt::format("moved in {} ms, downtime {:.1f} ms",
                             move.finished_unix_ms - move.started_unix_ms, move.vmm_downtime_ms);
  return move;
}

int maxConcurrent(const std::vector<Move>& moves) {
  std::vector<std::pair<int64_t, int>> edges;  // (time, +1 start / -1 end)
  for (const Move& move : moves) {
    if (move.started_unix_ms == 0) continue;  // failed before it started
    edges.emplace_back(move.started_unix_ms, +1);
    edges.emplace_back(std::max(move.finished_unix_ms, move.started_unix_ms), -1);
  }
  // At one instant ends come first: a move that starts when another ends does not overlap it.
  std::sort(edges.begin(), edges.end());
  int running = 0;
  int most = 0;
  for (const auto& [at, change] : edges) {
    running += change;
    most = std::max(most, running);
  }
  return most;
}

}  // namespace flotilla::bench
