// AgentService for every simulated host, dispatched by metadata (see agent_service.h).
#include "controller/sim/agent_service.h"

#include "common/rpc/status.h"
#include "fmt/format.h"

namespace flotilla::sim {
namespace {

template <typename T>
grpc::Status answer(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return toGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace

absl::StatusOr<SimHost*> SimAgentService::hostFor(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kHostMetadata);
  if (it == metadata.end()) {
    return absl::InvalidArgumentError(fmt::format(
        "the call has no '{}' metadata: this agent simulator serves {} hosts ({}) on one "
        "address, so every call must name its host in that gRPC metadata (the controller does)",
        kHostMetadata, fleet_.hosts().size(), fleet_.describeHosts()));
  }
  const std::string name(it->second.data(), it->second.size());
  SimHost* host = fleet_.host(name);
  if (host == nullptr) {
    return absl::NotFoundError(fmt::format(
        "host '{}' is not simulated here: this agent simulator serves {} (metadata '{}')", name,
        fleet_.describeHosts(), kHostMetadata));
  }
  if (!host->alive()) {
    return absl::UnavailableError(fmt::format(
        "host '{}' is down: the simulator killed it (fault injection); reviveHost brings it back",
        name));
  }
  return host;
}

absl::StatusOr<SimHost*> SimAgentService::poolHostFor(const grpc::ServerContext& context,
                                                      const std::string& pool) {
  absl::StatusOr<SimHost*> host = hostFor(context);
  if (!host.ok()) return host;
  for (const std::string& known : fleet_.options().pools) {
    if (known == pool) return host;
  }
  return absl::NotFoundError(fmt::format(
      "pool '{}' is not configured on host '{}': see the agent's pools (HostStatus.inventory)",
      pool, (*host)->name()));
}

grpc::Status SimAgentService::CreateVm(grpc::ServerContext* context,
                                       const flotilla::v1::CreateVmRequest* request,
                                       flotilla::v1::AgentVm* response) {
  return onHost(context, [&](SimHost& host) { return answer(host.createVm(*request), response); });
}

grpc::Status SimAgentService::StartVm(grpc::ServerContext* context,
                                      const flotilla::v1::AgentVmRequest* request,
                                      flotilla::v1::AgentVm* response) {
  return onHost(context,
                [&](SimHost& host) { return answer(host.startVm(request->name()), response); });
}

grpc::Status SimAgentService::StopVm(grpc::ServerContext* context,
                                     const flotilla::v1::StopVmRequest* request,
                                     flotilla::v1::AgentVm* response) {
  return onHost(context,
                [&](SimHost& host) { return answer(host.stopVm(request->name()), response); });
}

grpc::Status SimAgentService::DeleteVm(grpc::ServerContext* context,
                                       const flotilla::v1::AgentVmRequest* request,
                                       flotilla::v1::DeleteVmResponse*) {
  return onHost(context,
                [&](SimHost& host) { return toGrpcStatus(host.deleteVm(request->name())); });
}

grpc::Status SimAgentService::GetVm(grpc::ServerContext* context,
                                    const flotilla::v1::AgentVmRequest* request,
                                    flotilla::v1::AgentVm* response) {
  return onHost(context,
                [&](SimHost& host) { return answer(host.getVm(request->name()), response); });
}

grpc::Status SimAgentService::ListVms(grpc::ServerContext* context,
                                      const flotilla::v1::ListAgentVmsRequest*,
                                      flotilla::v1::ListAgentVmsResponse* response) {
  return onHost(context, [&](SimHost& host) {
    for (flotilla::v1::AgentVm& vm : host.listVms()) *response->add_vms() = std::move(vm);
    return grpc::Status::OK;
  });
}

grpc::Status SimAgentService::GetConsoleLog(grpc::ServerContext* context,
                                            const flotilla::v1::ConsoleLogRequest* request,
                                            flotilla::v1::ConsoleLogResponse* response) {
  return onHost(context, [&](SimHost& host) {
    // A simulated guest prints nothing.
    absl::StatusOr<flotilla::v1::AgentVm> vm = host.getVm(request->name());
    if (!vm.ok()) return toGrpcStatus(vm.status());
    response->set_next_offset(request->offset());
    return grpc::Status::OK;
  });
}

grpc::Status SimAgentService::GetHost(grpc::ServerContext* context,
                                      const flotilla::v1::GetHostRequest*,
                                      flotilla::v1::HostStatus* response) {
  return onHost(context, [&](SimHost& host) {
    *response = host.status();
    return grpc::Status::OK;
  });
}

grpc::Status SimAgentService::CreateVolume(grpc::ServerContext* context,
                                           const flotilla::v1::VolumeRequest* request,
                                           flotilla::v1::Volume* response) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<SimHost*> host = poolHostFor(*context, request->pool());
  if (!host.ok()) return toGrpcStatus(host.status());
  return answer(fleet_.volumes().create(request->pool(), request->volume(), request->size_bytes()),
                response);
}

grpc::Status SimAgentService::ResizeVolume(grpc::ServerContext* context,
                                           const flotilla::v1::VolumeRequest* request,
                                           flotilla::v1::Volume* response) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<SimHost*> host = poolHostFor(*context, request->pool());
  if (!host.ok()) return toGrpcStatus(host.status());
  return answer(fleet_.volumes().resize(request->pool(), request->volume(), request->size_bytes()),
                response);
}

grpc::Status SimAgentService::CloneVolume(grpc::ServerContext* context,
                                          const flotilla::v1::CloneVolumeRequest* request,
                                          flotilla::v1::Volume* response) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<SimHost*> host = poolHostFor(*context, request->pool());
  if (!host.ok()) return toGrpcStatus(host.status());
  return answer(fleet_.volumes().clone(request->pool(), request->source(), request->target()),
                response);
}

grpc::Status SimAgentService::DeleteVolume(grpc::ServerContext* context,
                                           const flotilla::v1::VolumeRequest* request,
                                           flotilla::v1::DeleteVolumeResponse*) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<SimHost*> host = poolHostFor(*context, request->pool());
  if (!host.ok()) return toGrpcStatus(host.status());
  return toGrpcStatus(fleet_.volumes().remove(request->pool(), request->volume()));
}

grpc::Status SimAgentService::ListVolumes(grpc::ServerContext* context,
                                          const flotilla::v1::ListVolumesRequest* request,
                                          flotilla::v1::ListVolumesResponse* response) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  absl::StatusOr<SimHost*> host = poolHostFor(*context, request->pool());
  if (!host.ok()) return toGrpcStatus(host.status());
  for (flotilla::v1::Volume& volume : fleet_.volumes().list(request->pool())) {
    *response->add_volumes() = std::move(volume);
  }
  return grpc::Status::OK;
}

grpc::Status SimAgentService::PrepareOutgoing(grpc::ServerContext* context,
                                              const flotilla::v1::AgentVmRequest*,
                                              flotilla::v1::PrepareOutgoingResponse*) {
  return onHost(context, [](SimHost&) { return grpc::Status::OK; });
}

grpc::Status SimAgentService::PrepareIncoming(grpc::ServerContext* context,
                                              const flotilla::v1::PrepareIncomingRequest* request,
                                              flotilla::v1::PrepareIncomingResponse* response) {
  return onHost(context,
                [&](SimHost& host) { return answer(host.prepareIncoming(*request), response); });
}

grpc::Status SimAgentService::StartMigration(grpc::ServerContext* context,
                                             const flotilla::v1::StartMigrationRequest* request,
                                             flotilla::v1::StartMigrationResponse*) {
  return onHost(context,
                [&](SimHost& host) { return toGrpcStatus(host.startMigration(*request)); });
}

grpc::Status SimAgentService::GetMigration(grpc::ServerContext* context,
                                           const flotilla::v1::AgentVmRequest* request,
                                           flotilla::v1::MigrationStatus* response) {
  return onHost(context, [&](SimHost& host) {
    return answer(host.migrationStatus(request->name()), response);
  });
}

grpc::Status SimAgentService::FinishMigration(grpc::ServerContext* context,
                                              const flotilla::v1::MigrationEndRequest* request,
                                              flotilla::v1::AgentVm* response) {
  return onHost(context, [&](SimHost& host) {
    return answer(host.finishMigration(request->name(), request->role()), response);
  });
}

grpc::Status SimAgentService::AbortMigration(grpc::ServerContext* context,
                                             const flotilla::v1::MigrationEndRequest* request,
                                             flotilla::v1::AgentVm* response) {
  return onHost(context, [&](SimHost& host) {
    return answer(host.abortMigration(request->name(), request->role()), response);
  });
}

}  // namespace flotilla::sim
