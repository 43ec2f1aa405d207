// The reconciler's VM tasks: the agent calls that create, start, stop, restart and delete a
// VM, each ending with the VM's new status (see reconciler.h).
#include "absl/time/clock.h"
#include "common/status.h"
#include "controller/reconciler.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

int64_t nowMs() {
  return absl::ToUnixMillis(absl::Now());
}

// Errors after which another host may do better than this one (not room here). Other
// errors (a VMM that refuses the spec, a missing kernel) would fail on every host.
bool hostCannotTakeIt(const absl::Status& status) {
  return absl::IsResourceExhausted(status);
}

}  // namespace

void Reconciler::createOnHost(const VmView& vm, const HostView& host,
                              const std::vector<v1::NetworkBinding>& networks) {
  v1::CreateVmRequest request;
  request.set_name(vm.name);
  *request.mutable_spec() = vm.record.spec();
  request.set_uid(vm.record.meta().uid());
  request.set_start(true);
  // Its iSCSI volumes are opened with this generation: an HA restart (a newer generation)
  // fences the copy a lost host may still run off the LUNs (docs/storage.md).
  request.set_generation(vm.status.generation());
  for (const v1::NetworkBinding& network : networks) *request.add_networks() = network;
  const std::string address = host.status->agent_address();
  v1::AgentVm created;
  absl::Status status = agents_.call(host.name, address, fmt::format("CreateVm {}", vm.name),
                                     [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                                       return stub.CreateVm(&ctx, request, &created);
                                     });
  if (status.ok() && created.state() != v1::VM_STATE_RUNNING) {
    v1::AgentVmRequest start;
    start.set_name(vm.name);
    status = agents_.call(host.name, address, fmt::format("StartVm {}", vm.name),
                          [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                            return stub.StartVm(&ctx, start, &created);
                          });
  }
  v1::VmStatus next = vm.status;
  next.set_state_since_unix_ms(nowMs());
  v1::Event made;
  if (status.ok()) {
    next.set_state(v1::VM_STATE_RUNNING);
    next.set_message(fmt::format("running on host {}", host.name));
    next.set_restarts_done(vm.record.restarts_requested());
    made = EventLog::make("vm", vm.name, v1::Event::SEVERITY_INFO, "Started", next.message());
  } else if (hostCannotTakeIt(status)) {
    next.set_host("");
    next.set_state(v1::VM_STATE_PENDING);
    next.set_message(std::string(status.message()));
    made = EventLog::make("vm", vm.name, v1::Event::SEVERITY_WARNING, "Rescheduling",
                          fmt::format("{}: placing it again", status.message()));
  } else {
    next.set_state(v1::VM_STATE_FAILED);
    next.set_message(std::string(status.message()));
    made = EventLog::make("vm", vm.name, v1::Event::SEVERITY_ERROR, "StartFailed",
                          std::string(status.message()));
  }
  log_.with("vm", vm.name).info("{}", made.message());
  writeVmStatus(vm.name, next, &made);
}

void Reconciler::stopOnHost(const VmView& vm, const HostView& host, bool then_start) {
  const std::string address = host.status->agent_address();
  v1::StopVmRequest stop;
  stop.set_name(vm.name);
  v1::AgentVm stopped;
  absl::Status status = agents_.call(host.name, address, fmt::format("StopVm {}", vm.name),
                                     [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                                       return stub.StopVm(&ctx, stop, &stopped);
                                     });
  if (absl::IsNotFound(status)) status = absl::OkStatus();
  v1::VmStatus next = vm.status;
  next.set_state_since_unix_ms(nowMs());
  if (!status.ok()) {
    log_.with("vm", vm.name).warn("{}", status.message());
    next.set_message(std::string(status.message()));
    writeVmStatus(vm.name, next);
    return;
  }
  if (!then_start) {
    next.set_state(v1::VM_STATE_STOPPED);
    next.set_message(fmt::format("stopped on host {}", host.name));
    v1::Event made =
        EventLog::make("vm", vm.name, v1::Event::SEVERITY_INFO, "Stopped", next.message());
    writeVmStatus(vm.name, next, &made);
    return;
  }
  // Restart: the next pass starts it again on the same host.
  next.set_state(v1::VM_STATE_CREATING);
  next.set_message("restarting");
  v1::Event made =
      EventLog::make("vm", vm.name, v1::Event::SEVERITY_INFO, "Restarting", "restart requested");
  writeVmStatus(vm.name, next, &made);
}

void Reconciler::deleteVm(const VmView& vm, const HostView* host) {
  if (host != nullptr) {
    v1::AgentVmRequest request;
    request.set_name(vm.name);
    v1::DeleteVmResponse response;
    absl::Status status =
        agents_.call(host->name, host->status->agent_address(), fmt::format("DeleteVm {}", vm.name),
                     [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                       return stub.DeleteVm(&ctx, request, &response);
                     });
    if (!status.ok() && !absl::IsNotFound(status)) {
      log_.with("vm", vm.name).warn("{} (retrying)", status.message());
      return;
    }
    noteRemoved(host->name, vm.name);
  }
  etcd::Txn txn = leader_.txn();
  txn.thenDelete(vmKey(vm.name));
  txn.thenDelete(vmStatusKey(vm.name));
  for (const v1::DiskSpec& disk : vm.record.spec().disks()) {
    auto volume = store_.get<v1::VolumeRecord>(volumeKey(disk.pool(), disk.volume()));
    if (!volume.ok()) return;
    if (!*volume || (*volume)->value.attached_to() != vm.name) continue;
    v1::VolumeRecord detached = (*volume)->value;
    detached.clear_attached_to();
    txn.ifModRevision((*volume)->key, etcd::CompareOp::kEqual, (*volume)->mod_revision);
    txn.thenPut((*volume)->key, encodeValue(detached));
  }
  events_.add(txn, EventLog::make("vm", vm.name, v1::Event::SEVERITY_INFO, "Deleted",
                                  host ? fmt::format("removed from host {}", host->name)
                                       : std::string("deleted")));
  if (commit(txn, fmt::format("delete vm {}", vm.name))) {
    log_.with("vm", vm.name).info("deleted");
  }
}

void Reconciler::removeOrphan(const std::string& vm, const HostView& host) {
  // Read again: the view that found it may be older than a placement or migration here.
  auto status = store_.get<v1::VmStatus>(vmStatusKey(vm));
  if (!status.ok()) return;
  if (*status && ((*status)->value.host() == host.name || !(*status)->value.migration().empty())) {
    return;
  }
  v1::AgentVmRequest request;
  request.set_name(vm);
  v1::DeleteVmResponse response;
  absl::Status deleted =
      agents_.call(host.name, host.status->agent_address(), fmt::format("DeleteVm {}", vm),
                   [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                     return stub.DeleteVm(&ctx, request, &response);
                   });
  if (absl::IsNotFound(deleted)) {
    noteRemoved(host.name, vm);
    return;  // gone already (the report was older)
  }
  if (!deleted.ok()) {
    log_.with("vm", vm).warn("cannot remove it from host {}: {}", host.name, deleted.message());
    return;
  }
  noteRemoved(host.name, vm);
  event(
      "vm", vm, v1::Event::SEVERITY_WARNING, "OrphanRemoved",
      fmt::format("host {} ran vm {}, which the cluster places {}: removed it there", host.name, vm,
                  *status && !(*status)->value.host().empty() ? "on " + (*status)->value.host()
                                                              : std::string("nowhere")));
}

void Reconciler::unplaceStopped(const VmView& vm, const HostView* host) {
  if (host != nullptr) {
    v1::AgentVmRequest request;
    request.set_name(vm.name);
    v1::DeleteVmResponse response;
    absl::Status deleted =
        agents_.call(host->name, host->status->agent_address(), fmt::format("DeleteVm {}", vm.name),
                     [&](v1::AgentService::Stub& stub, grpc::ClientContext& ctx) {
                       return stub.DeleteVm(&ctx, request, &response);
                     });
    if (!deleted.ok() && !absl::IsNotFound(deleted)) {
      log_.with("vm", vm.name).warn("{}", deleted.message());
      return;
    }
  }
  v1::VmStatus next = vm.status;
  next.set_host("");
  if (next.state() != v1::VM_STATE_FAILED) next.set_state(v1::VM_STATE_STOPPED);
  next.set_message("not running: it will start wherever the scheduler places it");
  next.set_state_since_unix_ms(nowMs());
  writeVmStatus(vm.name, next);
}

}  // namespace flotilla::controller
