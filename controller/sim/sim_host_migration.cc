// A simulated host's migration endpoints: PrepareIncoming on the target, StartMigration and
// GetMigration on the source, Finish and Abort with roles on both, as the real agent answers
// them (node-agent/vm_migration.cc, docs/agent.md "Migration endpoints"). The transfer itself
// is a MigrationRegistry entry that completes after the configured duration.
#include <set>

#include "common/status.h"
#include "controller/sim/sim_fleet.h"
#include "controller/sim/sim_host.h"
#include "fmt/format.h"

namespace flotilla::sim {

using flotilla::v1::AgentVm;
using flotilla::v1::MigrationEndRequest;
using flotilla::v1::VmState;
using Side = MigrationRegistry::Side;

namespace {

// The real agent's range of incoming-migration ports (VmManagerOptions).
constexpr uint32_t kFirstMigrationPort = 7200;
constexpr uint32_t kMigrationPorts = 100;

AgentVm notHere(std::string_view name, VmState state) {
  AgentVm gone;
  gone.set_name(std::string(name));
  gone.set_state(state);
  gone.set_message("not on this host");
  return gone;
}

}  // namespace

void SimHost::settleLocked() {
  for (auto& [name, vm] : vms_) {
    if (!vm.outgoing_token.empty() || !vm.incoming_token.empty()) settleVmLocked(vm);
  }
}

void SimHost::settleVmLocked(Vm& vm) {
  MigrationRegistry& registry = fleet_.migrations();
  if (!vm.outgoing_token.empty()) {
    std::optional<SimMigration> migration = registry.get(vm.outgoing_token);
    if (!migration) {
      vm.outgoing_token.clear();
    } else {
      vm.last_migration = registry.statusFor(*migration, Side::kSource);
      if (migration->state == SimMigration::State::kCompleted) {
        // The source VMM exits once the guest runs on the target.
        endVmmLocked(vm, VmState::VM_STATE_STOPPED,
                     "migrated away; FinishMigration removes it here", "exited with status 0");
        vm.want_running = false;
        vm.migrating_out = true;
      }
      if (migration->state == SimMigration::State::kCompleted ||
          migration->state == SimMigration::State::kFailed) {
        // A failed migration leaves the VM running here, Migrating until AbortMigration.
        registry.release(vm.outgoing_token, Side::kSource);
        vm.outgoing_token.clear();
      }
    }
  }
  if (!vm.incoming_token.empty()) {
    std::optional<SimMigration> migration = registry.get(vm.incoming_token);
    if (migration) {
      vm.last_migration = registry.statusFor(*migration, Side::kTarget);
      if (migration->state == SimMigration::State::kFailed && vmmRuns(vm)) {
        // The incoming VMM ends when its source goes away.
        endVmmLocked(vm, VmState::VM_STATE_FAILED,
                     fmt::format("the incoming migration failed: {}", migration->error),
                     "exited with status 1");
      }
    }
  }
}

void SimHost::dropMigrationsLocked(Vm& vm, std::string_view reason) {
  MigrationRegistry& registry = fleet_.migrations();
  if (!vm.outgoing_token.empty()) {
    registry.fail(vm.outgoing_token, reason);
    registry.release(vm.outgoing_token, Side::kSource);
    vm.outgoing_token.clear();
  }
  if (!vm.incoming_token.empty()) {
    registry.fail(vm.incoming_token, reason);
    registry.release(vm.incoming_token, Side::kTarget);
    vm.incoming_token.clear();
    vm.incoming_address.clear();
  }
}

absl::StatusOr<flotilla::v1::PrepareIncomingResponse> SimHost::prepareIncoming(
    const flotilla::v1::PrepareIncomingRequest& request) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  if (findLocked(request.name()) != nullptr) {
    return absl::AlreadyExistsError(fmt::format(
        "VM '{}' already exists on this host: a migration target must not hold it (abort the "
        "earlier migration, or delete the VM here)",
        request.name()));
  }
  Vm vm;
  ASSIGN_OR_RETURN(vm.vm, newVm(request.name(), request.uid(), request.spec(), request.networks(),
                                request.macs()));
  RETURN_IF_ERROR(checkMemoryLocked(request.name(), request.spec().memory_bytes()));
  // A port of the real agent's range that no other incoming VM here holds.
  std::set<std::string> taken;
  for (const auto& [name, other] : vms_) taken.insert(other.incoming_address);
  std::string address;
  for (uint32_t i = 0; i < kMigrationPorts && address.empty(); ++i) {
    const uint32_t port = kFirstMigrationPort + (next_migration_port_++ % kMigrationPorts);
    std::string candidate = fmt::format("{}:{}", fleet_.migrationAddress(), port);
    if (!taken.contains(candidate)) address = std::move(candidate);
  }
  if (address.empty()) {
    return absl::ResourceExhaustedError(fmt::format(
        "no free migration port in {}-{} on host '{}': too many migrations at once into this host",
        kFirstMigrationPort, kFirstMigrationPort + kMigrationPorts - 1, name_));
  }
  vm.incoming_address = address;
  vm.incoming_token = fleet_.migrations().addIncoming(request.name(), name_, address,
                                                      request.spec().memory_bytes());
  launchLocked(vm, /*incoming=*/true);
  flotilla::v1::PrepareIncomingResponse response;
  response.set_address(address);
  response.set_token(vm.incoming_token);
  vms_.emplace(request.name(), std::move(vm));
  return response;
}

absl::Status SimHost::startMigration(const flotilla::v1::StartMigrationRequest& request) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  ASSIGN_OR_RETURN(Vm * vm, lookupLocked(request.name()));
  if (!vmmRuns(*vm) || vm->vm.incoming()) {
    return absl::FailedPreconditionError(
        fmt::format("VM '{}' is not running here (state {}): nothing to migrate", request.name(),
                    flotilla::v1::VmState_Name(vm->vm.state())));
  }
  if (!vm->outgoing_token.empty()) {
    return absl::AlreadyExistsError(fmt::format(
        "VM '{}': the VMM refused the migration: a migration of this VM is already in progress "
        "(GetMigration follows it, AbortMigration stops it)",
        request.name()));
  }
  const bool inject = fleet_.takeInjectedFailure(request.name());
  absl::Status started =
      fleet_.migrations().start(request.token(), request.address(), request.name(), name_, inject);
  if (!started.ok()) {
    if (inject) fleet_.failNextMigration(request.name());  // for the next attempt
    return annotate(started, fmt::format("VM '{}': the VMM refused the migration", request.name()));
  }
  vm->outgoing_token = request.token();
  vm->migrating_out = false;
  vm->vm.set_state(VmState::VM_STATE_MIGRATING);
  vm->vm.set_message("migrating to " + request.address());
  settleVmLocked(*vm);
  return absl::OkStatus();
}

absl::StatusOr<flotilla::v1::MigrationStatus> SimHost::migrationStatus(std::string_view name) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  ASSIGN_OR_RETURN(Vm * vm, lookupLocked(name));
  if (vm->last_migration.phase().empty()) {
    flotilla::v1::MigrationStatus idle;
    idle.set_phase("idle");
    return idle;
  }
  return vm->last_migration;
}

absl::StatusOr<AgentVm> SimHost::finishMigration(std::string_view name,
                                                 MigrationEndRequest::Role role) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  Vm* vm = findLocked(name);
  if (vm == nullptr) return notHere(name, VmState::VM_STATE_STOPPED);  // finished before
  if (role == MigrationEndRequest::ROLE_TARGET) {
    if (!vm->vm.incoming()) return snapshotLocked(*vm);
    if (!vmmRuns(*vm)) {
      return absl::FailedPreconditionError(
          fmt::format("VM '{}': the target VMM is not running ({}): abort the migration", name,
                      vm->vm.message()));
    }
    // Stricter than the real agent, which would turn a VM that is still arriving into a
    // "running" one: a controller that finishes before the source completed has a bug.
    std::optional<SimMigration> migration = fleet_.migrations().get(vm->incoming_token);
    if (migration && migration->state != SimMigration::State::kCompleted) {
      return absl::FailedPreconditionError(fmt::format(
          "VM '{}': the migration into host '{}' has not completed (target phase '{}'): finish "
          "it once GetMigration on the source says completed, or abort it",
          name, name_, vm->last_migration.phase()));
    }
    fleet_.migrations().release(vm->incoming_token, Side::kTarget);
    vm->incoming_token.clear();
    vm->incoming_address.clear();
    vm->vm.set_incoming(false);
    vm->want_running = true;
    vm->vm.set_state(VmState::VM_STATE_RUNNING);
    vm->vm.set_message("");
    return snapshotLocked(*vm);
  }
  if (role != MigrationEndRequest::ROLE_SOURCE) {
    return absl::InvalidArgumentError("FinishMigration: role must be ROLE_SOURCE or ROLE_TARGET");
  }
  if (vmmRuns(*vm)) {
    return absl::FailedPreconditionError(fmt::format(
        "VM '{}': the source VMM still runs (migration phase '{}'): finish the migration only "
        "after it completed",
        name, vm->last_migration.phase().empty() ? "idle" : vm->last_migration.phase()));
  }
  if (!vm->migrating_out && vm->vm.state() != VmState::VM_STATE_STOPPED) {
    return absl::FailedPreconditionError(
        fmt::format("VM '{}' did not migrate away from this host", name));
  }
  AgentVm gone = snapshotLocked(*vm);
  gone.set_state(VmState::VM_STATE_STOPPED);
  gone.set_message("migrated away");
  vms_.erase(vms_.find(name));
  return gone;
}

absl::StatusOr<AgentVm> SimHost::abortMigration(std::string_view name,
                                                MigrationEndRequest::Role role) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  Vm* vm = findLocked(name);
  if (vm == nullptr) return notHere(name, VmState::VM_STATE_UNSPECIFIED);
  if (role == MigrationEndRequest::ROLE_TARGET) {
    if (!vm->vm.incoming()) {
      return absl::FailedPreconditionError(fmt::format(
          "VM '{}' here is not the target of a migration (it was finished): stop or delete it "
          "instead",
          name));
    }
    dropMigrationsLocked(*vm, fmt::format("the migration into host '{}' was aborted", name_));
    AgentVm gone = snapshotLocked(*vm);
    gone.set_state(VmState::VM_STATE_STOPPED);
    gone.set_message("migration aborted");
    gone.set_vmm_pid(0);
    vms_.erase(vms_.find(name));
    return gone;
  }
  if (role != MigrationEndRequest::ROLE_SOURCE) {
    return absl::InvalidArgumentError("AbortMigration: role must be ROLE_SOURCE or ROLE_TARGET");
  }
  if (!vmmRuns(*vm)) {
    return absl::FailedPreconditionError(fmt::format(
        "VM '{}': the source VMM is gone ({}); if it migrated, finish the migration instead", name,
        vm->vm.message()));
  }
  dropMigrationsLocked(*vm, fmt::format("cancelled on the source host '{}'", name_));
  vm->vm.set_state(VmState::VM_STATE_RUNNING);
  vm->vm.set_message("migration aborted");
  return snapshotLocked(*vm);
}

}  // namespace flotilla::sim
