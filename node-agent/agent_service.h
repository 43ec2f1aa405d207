// AgentService (flotilla/v1/agent.proto): the gRPC face of the agent. Handlers translate to
// VmManager and HostReporter calls; errors keep their code and message.
#pragma once

#include "flotilla/v1/agent.grpc.pb.h"
#include "node-agent/host_plumbing.h"
#include "node-agent/host_reporter.h"
#include "node-agent/vm_manager.h"

namespace flotilla::agent {

class AgentServiceImpl final : public flotilla::v1::AgentService::Service {
 public:
  // `host_name`: this host's name; a call whose `x-flotilla-host` metadata names another
  // host is refused (a controller with a stale address must not act on the wrong host).
  AgentServiceImpl(VmManager& vms, HostReporter& reporter, HostPlumbing& host,
                   absl::Duration stop_grace, std::string host_name)
      : vms_(vms),
        reporter_(reporter),
        host_(host),
        stop_grace_(stop_grace),
        host_name_(std::move(host_name)) {}

  grpc::Status CreateVm(grpc::ServerContext*, const flotilla::v1::CreateVmRequest* request,
                        flotilla::v1::AgentVm* response) override;
  grpc::Status StartVm(grpc::ServerContext*, const flotilla::v1::AgentVmRequest* request,
                       flotilla::v1::AgentVm* response) override;
  grpc::Status StopVm(grpc::ServerContext*, const flotilla::v1::StopVmRequest* request,
                      flotilla::v1::AgentVm* response) override;
  grpc::Status DeleteVm(grpc::ServerContext*, const flotilla::v1::AgentVmRequest* request,
                        flotilla::v1::DeleteVmResponse*) override;
  grpc::Status GetVm(grpc::ServerContext*, const flotilla::v1::AgentVmRequest* request,
                     flotilla::v1::AgentVm* response) override;
  grpc::Status ListVms(grpc::ServerContext*, const flotilla::v1::ListAgentVmsRequest*,
                       flotilla::v1::ListAgentVmsResponse* response) override;
  grpc::Status GetConsoleLog(grpc::ServerContext*, const flotilla::v1::ConsoleLogRequest* request,
                             flotilla::v1::ConsoleLogResponse* response) override;
  grpc::Status GetHost(grpc::ServerContext*, const flotilla::v1::GetHostRequest*,
                       flotilla::v1::HostStatus* response) override;
  grpc::Status CreateVolume(grpc::ServerContext*, const flotilla::v1::VolumeRequest* request,
                            flotilla::v1::Volume* response) override;
  grpc::Status ResizeVolume(grpc::ServerContext*, const flotilla::v1::VolumeRequest* request,
                            flotilla::v1::Volume* response) override;
  grpc::Status CloneVolume(grpc::ServerContext*, const flotilla::v1::CloneVolumeRequest* request,
                           flotilla::v1::Volume* response) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const flotilla::v1::VolumeRequest* request,
                            flotilla::v1::DeleteVolumeResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const flotilla::v1::ListVolumesRequest* request,
                           flotilla::v1::ListVolumesResponse* response) override;
  grpc::Status PrepareOutgoing(grpc::ServerContext*, const flotilla::v1::AgentVmRequest* request,
                               flotilla::v1::PrepareOutgoingResponse*) override;
  grpc::Status PrepareIncoming(grpc::ServerContext*,
                               const flotilla::v1::PrepareIncomingRequest* request,
                               flotilla::v1::PrepareIncomingResponse* response) override;
  grpc::Status StartMigration(grpc::ServerContext*,
                              const flotilla::v1::StartMigrationRequest* request,
                              flotilla::v1::StartMigrationResponse*) override;
  grpc::Status GetMigration(grpc::ServerContext*, const flotilla::v1::AgentVmRequest* request,
                            flotilla::v1::MigrationStatus* response) override;
  grpc::Status FinishMigration(grpc::ServerContext*,
                               const flotilla::v1::MigrationEndRequest* request,
                               flotilla::v1::AgentVm* response) override;
  grpc::Status AbortMigration(grpc::ServerContext*,
                              const flotilla::v1::MigrationEndRequest* request,
                              flotilla::v1::AgentVm* response) override;

 private:
  absl::StatusOr<storage::VolumePool*> pool(std::string_view name);
  // FAILED_PRECONDITION when the call's `x-flotilla-host` names another host.
  grpc::Status checkHost(const grpc::ServerContext* context) const;

  VmManager& vms_;
  HostReporter& reporter_;
  HostPlumbing& host_;
  const absl::Duration stop_grace_;
  const std::string host_name_;
};

}  // namespace flotilla::agent
