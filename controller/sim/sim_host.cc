// A simulated host: VM lifecycle, memory accounting, the host report and fault injection (see
// sim_host.h); the migration endpoints are in sim_host_migration.cc.
#include "controller/sim/sim_host.h"

#include <algorithm>
#include <set>

#include "common/status.h"
#include "controller/sim/sim_fleet.h"
#include "fmt/format.h"
#include "fmt/ranges.h"
#include "google/protobuf/util/message_differencer.h"
#include "node-agent/names.h"

namespace flotilla::sim {

using flotilla::v1::AgentVm;
using flotilla::v1::VmState;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

bool contains(const std::vector<std::string>& list, std::string_view item) {
  for (const std::string& entry : list) {
    if (entry == item) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& list) {
  return list.empty() ? "none" : fmt::format("{}", fmt::join(list, ", "));
}

}  // namespace

SimHost::SimHost(SimFleet& fleet, std::string name, HostShape shape)
    : fleet_(fleet), name_(std::move(name)), shape_(shape) {}

bool SimHost::vmmRuns(const Vm& vm) {
  switch (vm.vm.state()) {
    case VmState::VM_STATE_CREATING:
    case VmState::VM_STATE_RUNNING:
    case VmState::VM_STATE_PAUSED:
    case VmState::VM_STATE_MIGRATING:
      return true;
    default:
      return false;
  }
}

SimHost::Vm* SimHost::findLocked(std::string_view name) {
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : &it->second;
}

absl::StatusOr<SimHost::Vm*> SimHost::lookupLocked(std::string_view name) {
  Vm* vm = findLocked(name);
  if (vm == nullptr) {
    return absl::NotFoundError(fmt::format("VM '{}' is not on host '{}'", name, name_));
  }
  return vm;
}

bool SimHost::alive() const {
  absl::MutexLock lock(&mu_);
  return alive_;
}

bool SimHost::hasVm(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  return vms_.contains(name);
}

uint64_t SimHost::memoryInUse() {
  absl::MutexLock lock(&mu_);
  settleLocked();
  return memoryInUseLocked();
}

uint64_t SimHost::memoryInUseLocked() const {
  uint64_t used = 0;
  for (const auto& [name, vm] : vms_) {
    if (vmmRuns(vm)) used += vm.vm.spec().memory_bytes();
  }
  return used;
}

absl::Status SimHost::checkMemoryLocked(std::string_view vm, uint64_t memory_bytes) const {
  const uint64_t used = memoryInUseLocked();
  if (used + memory_bytes <= shape_.memory_bytes) return absl::OkStatus();
  size_t running = 0;
  for (const auto& [name, entry] : vms_) running += vmmRuns(entry) ? 1U : 0U;
  return absl::ResourceExhaustedError(fmt::format(
      "host '{}' has no memory for VM '{}': it needs {} MiB, and {} MiB of the host's {} MiB are "
      "in use by {} running VM(s); place it on another host or stop a VM here",
      name_, vm, memory_bytes / kMiB, used / kMiB, shape_.memory_bytes / kMiB, running));
}

absl::StatusOr<AgentVm> SimHost::newVm(
    std::string_view name, std::string_view uid, const flotilla::v1::VmSpec& spec,
    const google::protobuf::RepeatedPtrField<flotilla::v1::NetworkBinding>& networks,
    const google::protobuf::RepeatedPtrField<std::string>& macs) const {
  const SimulatorOptions& options = fleet_.options();
  RETURN_IF_ERROR(agent::validateVmSpec(name, spec));
  if (!spec.cpu_model().empty() && !contains(options.cpu_models, spec.cpu_model())) {
    return absl::FailedPreconditionError(
        fmt::format("VM '{}': CPU model '{}' cannot run on host '{}' (it runs: {})", name,
                    spec.cpu_model(), name_, joined(options.cpu_models)));
  }
  AgentVm vm;
  vm.set_name(std::string(name));
  vm.set_uid(uid.empty() ? std::string(name) : std::string(uid));
  *vm.mutable_spec() = spec;
  for (int i = 0; i < spec.disks_size(); ++i) {
    const flotilla::v1::DiskSpec& disk = spec.disks(i);
    if (!contains(options.pools, disk.pool())) {
      return absl::NotFoundError(
          fmt::format("VM '{}' disk {}: pool '{}' is not configured on this host (its pools: {})",
                      name, i, disk.pool(), joined(options.pools)));
    }
    flotilla::v1::AgentDisk* agent_disk = vm.add_disks();
    agent_disk->set_pool(disk.pool());
    agent_disk->set_volume(disk.volume());
    agent_disk->set_disk_option(fmt::format("path=/sim/{}/{}", disk.pool(), disk.volume()));
  }
  RETURN_IF_ERROR(agent::addNics(vm, networks, macs));
  return vm;
}

void SimHost::launchLocked(Vm& vm, bool incoming) {
  vm.vm.set_state(incoming ? VmState::VM_STATE_MIGRATING : VmState::VM_STATE_RUNNING);
  vm.vm.set_message(incoming ? "waiting for the migration" : "");
  vm.vm.set_vmm_pid(fleet_.nextVmmPid());
  vm.vm.set_incoming(incoming);
  vm.want_running = !incoming;
  vm.migrating_out = false;
  vm.running_since = fleet_.clock().monotonicNow();
}

void SimHost::endVmmLocked(Vm& vm, VmState state, std::string message, std::string last_exit) {
  if (vmmRuns(vm)) {
    const double cores = vmCpuFraction(fleet_.options(), vm.vm.name()) * vm.vm.spec().vcpus();
    const absl::Duration ran = fleet_.clock().monotonicNow() - vm.running_since;
    vm.cpu_ns_before += static_cast<uint64_t>(cores * absl::ToDoubleNanoseconds(ran));
  }
  vm.vm.set_vmm_pid(0);
  vm.vm.set_state(state);
  vm.vm.set_message(std::move(message));
  vm.vm.set_last_exit(std::move(last_exit));
}

AgentVm SimHost::snapshotLocked(const Vm& vm) const {
  AgentVm snapshot = vm.vm;
  flotilla::v1::VmUsage& usage = *snapshot.mutable_usage();
  usage.set_cpu_time_ns(vm.cpu_ns_before);
  if (vmmRuns(vm)) {
    const SimulatorOptions& options = fleet_.options();
    const double cores = vmCpuFraction(options, vm.vm.name()) * vm.vm.spec().vcpus();
    const absl::Duration ran = fleet_.clock().monotonicNow() - vm.running_since;
    const auto rss = static_cast<uint64_t>(vmMemoryFraction(options, vm.vm.name()) *
                                           static_cast<double>(vm.vm.spec().memory_bytes()));
    usage.set_cpu_cores(cores);
    usage.set_cpu_time_ns(vm.cpu_ns_before +
                          static_cast<uint64_t>(cores * absl::ToDoubleNanoseconds(ran)));
    usage.set_rss_bytes(rss);
    usage.set_memory_current_bytes(rss);
  }
  return snapshot;
}

absl::StatusOr<AgentVm> SimHost::createVm(const flotilla::v1::CreateVmRequest& request) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  if (Vm* existing = findLocked(request.name()); existing != nullptr) {
    if (!request.uid().empty() && existing->vm.uid() == request.uid() &&
        google::protobuf::util::MessageDifferencer::Equals(existing->vm.spec(), request.spec())) {
      return snapshotLocked(*existing);
    }
    return absl::AlreadyExistsError(
        fmt::format("VM '{}' already exists on this host with another uid or spec: delete it first",
                    request.name()));
  }
  Vm vm;
  ASSIGN_OR_RETURN(vm.vm,
                   newVm(request.name(), request.uid(), request.spec(), request.networks(), {}));
  vm.vm.set_state(VmState::VM_STATE_STOPPED);
  vm.vm.set_message("created");
  if (request.start()) {
    RETURN_IF_ERROR(checkMemoryLocked(request.name(), request.spec().memory_bytes()));
    launchLocked(vm, /*incoming=*/false);
  }
  auto [it, inserted] = vms_.emplace(request.name(), std::move(vm));
  return snapshotLocked(it->second);
}

absl::StatusOr<AgentVm> SimHost::startVm(std::string_view name) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  ASSIGN_OR_RETURN(Vm * vm, lookupLocked(name));
  if (vm->vm.incoming()) {
    return absl::FailedPreconditionError(fmt::format(
        "VM '{}' is the target of a migration: FinishMigration or AbortMigration it", name));
  }
  if (!vmmRuns(*vm)) {
    RETURN_IF_ERROR(checkMemoryLocked(name, vm->vm.spec().memory_bytes()));
    launchLocked(*vm, /*incoming=*/false);
  }
  return snapshotLocked(*vm);
}

absl::StatusOr<AgentVm> SimHost::stopVm(std::string_view name) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  ASSIGN_OR_RETURN(Vm * vm, lookupLocked(name));
  if (vmmRuns(*vm)) {
    dropMigrationsLocked(*vm, fmt::format("VM '{}' was stopped on host '{}'", name, name_));
    endVmmLocked(*vm, VmState::VM_STATE_STOPPED, "stopped by request", "exited with status 0");
  }
  vm->want_running = false;
  return snapshotLocked(*vm);
}

absl::Status SimHost::deleteVm(std::string_view name) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  Vm* vm = findLocked(name);
  if (vm == nullptr) return absl::OkStatus();
  dropMigrationsLocked(*vm, fmt::format("VM '{}' was deleted on host '{}'", name, name_));
  vms_.erase(vms_.find(name));
  return absl::OkStatus();
}

absl::StatusOr<AgentVm> SimHost::getVm(std::string_view name) {
  absl::MutexLock lock(&mu_);
  settleLocked();
  ASSIGN_OR_RETURN(Vm * vm, lookupLocked(name));
  return snapshotLocked(*vm);
}

std::vector<AgentVm> SimHost::listVms() {
  absl::MutexLock lock(&mu_);
  settleLocked();
  std::vector<AgentVm> vms;
  vms.reserve(vms_.size());
  for (const auto& [name, vm] : vms_) vms.push_back(snapshotLocked(vm));
  return vms;
}

flotilla::v1::HostStatus SimHost::status() {
  absl::MutexLock lock(&mu_);
  settleLocked();
  const SimulatorOptions& options = fleet_.options();
  flotilla::v1::HostStatus status;
  status.set_name(name_);
  status.set_agent_address(fleet_.agentAddress());
  status.set_migration_address(fleet_.migrationAddress());
  status.set_agent_version("flotilla-agent-sim 0.1");
  status.set_updated_unix_ms(absl::ToUnixMillis(fleet_.clock().now()));
  status.set_lease_id(static_cast<uint64_t>(lease_id_));

  flotilla::v1::HostInventory& inventory = *status.mutable_inventory();
  inventory.set_cpus(shape_.cpus);
  inventory.set_cpu_model_name(options.cpu_model_name);
  for (const std::string& flag : options.cpu_flags) inventory.add_cpu_flags(flag);
  for (const std::string& model : options.cpu_models) inventory.add_cpu_models(model);
  inventory.set_memory_bytes(shape_.memory_bytes);
  for (const std::string& pool : options.pools) inventory.add_pools(pool);
  std::set<std::string> networks(options.networks.begin(), options.networks.end());

  double cores = 0;
  uint64_t rss = 0;
  flotilla::v1::HostLoad& load = *status.mutable_load();
  for (const auto& [name, vm] : vms_) {
    for (const flotilla::v1::AgentNic& nic : vm.vm.nics()) networks.insert(nic.network());
    const AgentVm snapshot = snapshotLocked(vm);
    flotilla::v1::HostVm* host_vm = status.add_vms();
    host_vm->set_name(name);
    host_vm->set_state(snapshot.state());
    *host_vm->mutable_usage() = snapshot.usage();
    host_vm->set_memory_bytes(snapshot.spec().memory_bytes());
    host_vm->set_vcpus(snapshot.spec().vcpus());
    if (snapshot.state() == VmState::VM_STATE_RUNNING ||
        snapshot.state() == VmState::VM_STATE_MIGRATING) {
      load.set_vms_running(load.vms_running() + 1);
      load.set_vm_memory_bytes(load.vm_memory_bytes() + snapshot.spec().memory_bytes());
    }
    cores += snapshot.usage().cpu_cores();
    rss += snapshot.usage().memory_current_bytes();
  }
  for (const std::string& network : networks) inventory.add_networks(network);
  load.set_cpu_busy(std::min(1.0, cores / shape_.cpus));
  load.set_load_average_1m(cores);
  load.set_memory_available_bytes(shape_.memory_bytes > rss ? shape_.memory_bytes - rss : 0);
  return status;
}

void SimHost::setLeaseId(int64_t lease) {
  absl::MutexLock lock(&mu_);
  lease_id_ = lease;
}

void SimHost::powerOff() {
  absl::MutexLock lock(&mu_);
  if (!alive_) return;
  settleLocked();
  alive_ = false;
  const std::string reason = fmt::format("host '{}' went down", name_);
  for (auto& [name, vm] : vms_) {
    dropMigrationsLocked(vm, reason);
    // What the agent finds when it comes back (node-agent VmManager::reattach).
    if (vmmRuns(vm)) {
      endVmmLocked(vm, VmState::VM_STATE_FAILED,
                   "the VMM exited while the agent was not running (the simulated host was "
                   "killed)",
                   "killed by signal 9 (host lost)");
    }
  }
}

void SimHost::powerOn() {
  absl::MutexLock lock(&mu_);
  alive_ = true;
}

}  // namespace flotilla::sim
