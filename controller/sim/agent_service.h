// SimAgentService: one AgentService (flotilla/v1/agent.proto) for every simulated host. Each
// call names its host in the gRPC metadata `x-flotilla-host` (the controller sends it on every
// agent call); a call without it is INVALID_ARGUMENT, one naming a host not simulated here is
// NOT_FOUND, one to a killed host UNAVAILABLE, as a dead agent would be. The handlers answer
// as the real agent's (node-agent/agent_service.cc), from SimHost.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/rpc/status.h"
#include "controller/sim/sim_fleet.h"
#include "flotilla/v1/agent.grpc.pb.h"

namespace flotilla::sim {

// The metadata key naming the host a call is for.
inline constexpr char kHostMetadata[] = "x-flotilla-host";

class SimAgentService final : public flotilla::v1::AgentService::Service {
 public:
  explicit SimAgentService(SimFleet& fleet) : fleet_(fleet) {}

  // Calls answered (any outcome), for the benchmark's report.
  uint64_t calls() const { return calls_.load(); }

  grpc::Status CreateVm(grpc::ServerContext* context, const flotilla::v1::CreateVmRequest* request,
                        flotilla::v1::AgentVm* response) override;
  grpc::Status StartVm(grpc::ServerContext* context, const flotilla::v1::AgentVmRequest* request,
                       flotilla::v1::AgentVm* response) override;
  grpc::Status StopVm(grpc::ServerContext* context, const flotilla::v1::StopVmRequest* request,
                      flotilla::v1::AgentVm* response) override;
  grpc::Status DeleteVm(grpc::ServerContext* context, const flotilla::v1::AgentVmRequest* request,
                        flotilla::v1::DeleteVmResponse*) override;
  grpc::Status GetVm(grpc::ServerContext* context, const flotilla::v1::AgentVmRequest* request,
                     flotilla::v1::AgentVm* response) override;
  grpc::Status ListVms(grpc::ServerContext* context, const flotilla::v1::ListAgentVmsRequest*,
                       flotilla::v1::ListAgentVmsResponse* response) override;
  grpc::Status GetConsoleLog(grpc::ServerContext* context,
                             const flotilla::v1::ConsoleLogRequest* request,
                             flotilla::v1::ConsoleLogResponse* response) override;
  grpc::Status GetHost(grpc::ServerContext* context, const flotilla::v1::GetHostRequest*,
                       flotilla::v1::HostStatus* response) override;
  grpc::Status CreateVolume(grpc::ServerContext* context,
                            const flotilla::v1::VolumeRequest* request,
                            flotilla::v1::Volume* response) override;
  grpc::Status ResizeVolume(grpc::ServerContext* context,
                            const flotilla::v1::VolumeRequest* request,
                            flotilla::v1::Volume* response) override;
  grpc::Status CloneVolume(grpc::ServerContext* context,
                           const flotilla::v1::CloneVolumeRequest* request,
                           flotilla::v1::Volume* response) override;
  grpc::Status DeleteVolume(grpc::ServerContext* context,
                            const flotilla::v1::VolumeRequest* request,
                            flotilla::v1::DeleteVolumeResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext* context,
                           const flotilla::v1::ListVolumesRequest* request,
                           flotilla::v1::ListVolumesResponse* response) override;
  // Simulated hosts have no DRBD pools: nothing to ready, OK (on a known host).
  grpc::Status PrepareOutgoing(grpc::ServerContext* context,
                               const flotilla::v1::AgentVmRequest* request,
                               flotilla::v1::PrepareOutgoingResponse*) override;
  grpc::Status PrepareIncoming(grpc::ServerContext* context,
                               const flotilla::v1::PrepareIncomingRequest* request,
                               flotilla::v1::PrepareIncomingResponse* response) override;
  grpc::Status StartMigration(grpc::ServerContext* context,
                              const flotilla::v1::StartMigrationRequest* request,
                              flotilla::v1::StartMigrationResponse*) override;
  grpc::Status GetMigration(grpc::ServerContext* context,
                            const flotilla::v1::AgentVmRequest* request,
                            flotilla::v1::MigrationStatus* response) override;
  grpc::Status FinishMigration(grpc::ServerContext* context,
                               const flotilla::v1::MigrationEndRequest* request,
                               flotilla::v1::AgentVm* response) override;
  grpc::Status AbortMigration(grpc::ServerContext* context,
                              const flotilla::v1::MigrationEndRequest* request,
                              flotilla::v1::AgentVm* response) override;

 private:
  // The live host the call is for, from its metadata.
  absl::StatusOr<SimHost*> hostFor(const grpc::ServerContext& context);
  // Counts the call, then runs `handler` on its host, or answers the lookup's error.
  template <typename Handler>
  grpc::Status onHost(const grpc::ServerContext* context, Handler&& handler) {
    calls_.fetch_add(1, std::memory_order_relaxed);
    absl::StatusOr<SimHost*> host = hostFor(*context);
    if (!host.ok()) return toGrpcStatus(host.status());
    return handler(**host);
  }
  // The host, and the pool it must manage (every host reaches every configured pool).
  absl::StatusOr<SimHost*> poolHostFor(const grpc::ServerContext& context, const std::string& pool);

  SimFleet& fleet_;
  std::atomic<uint64_t> calls_{0};
};

}  // namespace flotilla::sim
