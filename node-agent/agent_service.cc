// AgentService handlers (see agent_service.h).
#include "node-agent/agent_service.h"

#include "common/rpc/status.h"
#include "fmt/format.h"

namespace flotilla::agent {
namespace {

template <typename T>
grpc::Status answer(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return toGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

flotilla::v1::Volume toVolume(std::string_view pool, const storage::VolumeInfo& info) {
  flotilla::v1::Volume volume;
  volume.set_pool(std::string(pool));
  volume.set_name(info.name);
  volume.set_size_bytes(info.size_bytes);
  volume.set_allocated_bytes(info.allocated_bytes);
  return volume;
}

}  // namespace

grpc::Status AgentServiceImpl::checkHost(const grpc::ServerContext* context) const {
  const auto& metadata = context->client_metadata();
  auto named = metadata.find("x-flotilla-host");
  if (named == metadata.end()) return grpc::Status::OK;
  const std::string_view wanted(named->second.data(), named->second.size());
  if (wanted == host_name_) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      fmt::format("this is host {}, not {}: the caller's address for host {} is "
                                  "stale",
                                  host_name_, wanted, wanted));
}

absl::StatusOr<storage::VolumePool*> AgentServiceImpl::pool(std::string_view name) {
  storage::VolumePool* found = host_.pool(name);
  if (found == nullptr) {
    return absl::NotFoundError(
        fmt::format("pool '{}' is not configured on this host: see the agent's pools", name));
  }
  return found;
}

grpc::Status AgentServiceImpl::CreateVolume(grpc::ServerContext* context,
                                            const flotilla::v1::VolumeRequest* request,
                                            flotilla::v1::Volume* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  auto found = pool(request->pool());
  if (!found.ok()) return toGrpcStatus(found.status());
  absl::StatusOr<storage::VolumeInfo> info;
  if (storage::DrbdPool* drbd = host_.drbdPool(request->pool()); drbd != nullptr) {
    // The controller allocated the resource's minor and port (the same on both hosts).
    info =
        drbd->create(request->volume(), request->size_bytes(),
                     storage::DrbdVolumePlacement{request->drbd().minor(), request->drbd().port()});
  } else if (request->has_drbd()) {
    return toGrpcStatus(absl::InvalidArgumentError(fmt::format(
        "pool '{}' is not a DRBD pool on this host, but the request carries a DRBD placement; "
        "check the pool's type in the controller and in this agent's configuration",
        request->pool())));
  } else {
    info = (*found)->create(request->volume(), request->size_bytes());
  }
  if (!info.ok()) return toGrpcStatus(info.status());
  *response = toVolume(request->pool(), *info);
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::ResizeVolume(grpc::ServerContext* context,
                                            const flotilla::v1::VolumeRequest* request,
                                            flotilla::v1::Volume* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  auto found = pool(request->pool());
  if (!found.ok()) return toGrpcStatus(found.status());
  if (absl::Status resized = (*found)->resize(request->volume(), request->size_bytes());
      !resized.ok()) {
    return toGrpcStatus(resized);
  }
  auto info = (*found)->get(request->volume());
  if (!info.ok()) return toGrpcStatus(info.status());
  *response = toVolume(request->pool(), *info);
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::CloneVolume(grpc::ServerContext* context,
                                           const flotilla::v1::CloneVolumeRequest* request,
                                           flotilla::v1::Volume* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  auto found = pool(request->pool());
  if (!found.ok()) return toGrpcStatus(found.status());
  auto info = (*found)->clone(request->source(), request->target());
  if (!info.ok()) return toGrpcStatus(info.status());
  *response = toVolume(request->pool(), *info);
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::DeleteVolume(grpc::ServerContext* context,
                                            const flotilla::v1::VolumeRequest* request,
                                            flotilla::v1::DeleteVolumeResponse*) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  auto found = pool(request->pool());
  if (!found.ok()) return toGrpcStatus(found.status());
  return toGrpcStatus((*found)->remove(request->volume()));
}

grpc::Status AgentServiceImpl::ListVolumes(grpc::ServerContext* context,
                                           const flotilla::v1::ListVolumesRequest* request,
                                           flotilla::v1::ListVolumesResponse* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  auto found = pool(request->pool());
  if (!found.ok()) return toGrpcStatus(found.status());
  auto volumes = (*found)->list();
  if (!volumes.ok()) return toGrpcStatus(volumes.status());
  for (const storage::VolumeInfo& info : *volumes) {
    *response->add_volumes() = toVolume(request->pool(), info);
  }
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::CreateVm(grpc::ServerContext* context,
                                        const flotilla::v1::CreateVmRequest* request,
                                        flotilla::v1::AgentVm* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.createVm(*request), response);
}

grpc::Status AgentServiceImpl::StartVm(grpc::ServerContext* context,
                                       const flotilla::v1::AgentVmRequest* request,
                                       flotilla::v1::AgentVm* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.startVm(request->name()), response);
}

grpc::Status AgentServiceImpl::StopVm(grpc::ServerContext* context,
                                      const flotilla::v1::StopVmRequest* request,
                                      flotilla::v1::AgentVm* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  const absl::Duration grace =
      request->grace_ms() == 0 ? stop_grace_ : absl::Milliseconds(request->grace_ms());
  return answer(vms_.stopVm(request->name(), grace), response);
}

grpc::Status AgentServiceImpl::DeleteVm(grpc::ServerContext* context,
                                        const flotilla::v1::AgentVmRequest* request,
                                        flotilla::v1::DeleteVmResponse*) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return toGrpcStatus(vms_.deleteVm(request->name()));
}

grpc::Status AgentServiceImpl::GetVm(grpc::ServerContext* context,
                                     const flotilla::v1::AgentVmRequest* request,
                                     flotilla::v1::AgentVm* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.getVm(request->name()), response);
}

grpc::Status AgentServiceImpl::ListVms(grpc::ServerContext* context,
                                       const flotilla::v1::ListAgentVmsRequest*,
                                       flotilla::v1::ListAgentVmsResponse* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  for (flotilla::v1::AgentVm& vm : vms_.listVms()) *response->add_vms() = std::move(vm);
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::GetConsoleLog(grpc::ServerContext* context,
                                             const flotilla::v1::ConsoleLogRequest* request,
                                             flotilla::v1::ConsoleLogResponse* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.consoleLog(*request), response);
}

grpc::Status AgentServiceImpl::GetHost(grpc::ServerContext* context,
                                       const flotilla::v1::GetHostRequest*,
                                       flotilla::v1::HostStatus* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  *response = reporter_.current();
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::PrepareOutgoing(grpc::ServerContext* context,
                                               const flotilla::v1::AgentVmRequest* request,
                                               flotilla::v1::PrepareOutgoingResponse*) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return toGrpcStatus(vms_.prepareOutgoing(request->name()));
}

grpc::Status AgentServiceImpl::PrepareIncoming(grpc::ServerContext* context,
                                               const flotilla::v1::PrepareIncomingRequest* request,
                                               flotilla::v1::PrepareIncomingResponse* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.prepareIncoming(*request), response);
}

grpc::Status AgentServiceImpl::StartMigration(grpc::ServerContext* context,
                                              const flotilla::v1::StartMigrationRequest* request,
                                              flotilla::v1::StartMigrationResponse*) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return toGrpcStatus(vms_.startMigration(*request));
}

grpc::Status AgentServiceImpl::GetMigration(grpc::ServerContext* context,
                                            const flotilla::v1::AgentVmRequest* request,
                                            flotilla::v1::MigrationStatus* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.migrationStatus(request->name()), response);
}

grpc::Status AgentServiceImpl::FinishMigration(grpc::ServerContext* context,
                                               const flotilla::v1::MigrationEndRequest* request,
                                               flotilla::v1::AgentVm* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.finishMigration(request->name(), request->role()), response);
}

grpc::Status AgentServiceImpl::AbortMigration(grpc::ServerContext* context,
                                              const flotilla::v1::MigrationEndRequest* request,
                                              flotilla::v1::AgentVm* response) {
  if (grpc::Status wrong = checkHost(context); !wrong.ok()) return wrong;
  return answer(vms_.abortMigration(request->name(), request->role()), response);
}

}  // namespace flotilla::agent
