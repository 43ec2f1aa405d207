// A test client of the simulator's AgentService: every call carries the x-flotilla-host
// metadata naming its host, as the controller's calls do; and the fixture of the tests that
// use it.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/rpc/channel.h"
#include "common/rpc/status.h"
#include "common/testing/fake_clock.h"
#include "controller/sim/agent_service.h"
#include "controller/sim/simulator.h"
#include "flotilla/v1/agent.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"

namespace flotilla::sim::testing {

using Stub = flotilla::v1::AgentService::Stub;

class SimClient {
 public:
  explicit SimClient(const std::string& address)
      : stub_(flotilla::v1::AgentService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  // `host` empty: the call carries no host metadata.
  template <typename Response, typename Request, typename Method>
  absl::StatusOr<Response> call(std::string_view host, Method method, const Request& request) {
    grpc::ClientContext context;
    if (!host.empty()) context.AddMetadata(kHostMetadata, std::string(host));
    context.set_deadline(deadlineAfter(absl::Seconds(30)));
    Response response;
    grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (!status.ok()) return fromGrpcStatus(status);
    return response;
  }

  absl::StatusOr<flotilla::v1::AgentVm> createVm(std::string_view host, std::string_view name,
                                                 uint64_t memory_mib, bool start,
                                                 std::string_view uid = "") {
    flotilla::v1::CreateVmRequest request;
    request.set_name(std::string(name));
    request.set_uid(std::string(uid.empty() ? name : uid));
    *request.mutable_spec() = spec(memory_mib);
    request.set_start(start);
    return call<flotilla::v1::AgentVm>(host, &Stub::CreateVm, request);
  }

  absl::StatusOr<flotilla::v1::AgentVm> getVm(std::string_view host, std::string_view name) {
    return call<flotilla::v1::AgentVm>(host, &Stub::GetVm, vmRequest(name));
  }
  absl::StatusOr<flotilla::v1::AgentVm> startVm(std::string_view host, std::string_view name) {
    return call<flotilla::v1::AgentVm>(host, &Stub::StartVm, vmRequest(name));
  }
  absl::StatusOr<flotilla::v1::AgentVm> stopVm(std::string_view host, std::string_view name) {
    flotilla::v1::StopVmRequest request;
    request.set_name(std::string(name));
    return call<flotilla::v1::AgentVm>(host, &Stub::StopVm, request);
  }
  absl::Status deleteVm(std::string_view host, std::string_view name) {
    return call<flotilla::v1::DeleteVmResponse>(host, &Stub::DeleteVm, vmRequest(name)).status();
  }
  absl::StatusOr<flotilla::v1::HostStatus> getHost(std::string_view host) {
    return call<flotilla::v1::HostStatus>(host, &Stub::GetHost, flotilla::v1::GetHostRequest());
  }

  absl::StatusOr<flotilla::v1::PrepareIncomingResponse> prepare(std::string_view host,
                                                                std::string_view name,
                                                                uint64_t memory_mib) {
    flotilla::v1::PrepareIncomingRequest request;
    request.set_name(std::string(name));
    request.set_uid(std::string(name));
    *request.mutable_spec() = spec(memory_mib);
    return call<flotilla::v1::PrepareIncomingResponse>(host, &Stub::PrepareIncoming, request);
  }
  absl::Status startMigration(std::string_view host, std::string_view name,
                              const flotilla::v1::PrepareIncomingResponse& target) {
    flotilla::v1::StartMigrationRequest request;
    request.set_name(std::string(name));
    request.set_address(target.address());
    request.set_token(target.token());
    return call<flotilla::v1::StartMigrationResponse>(host, &Stub::StartMigration, request)
        .status();
  }
  absl::StatusOr<flotilla::v1::MigrationStatus> migration(std::string_view host,
                                                          std::string_view name) {
    return call<flotilla::v1::MigrationStatus>(host, &Stub::GetMigration, vmRequest(name));
  }
  absl::StatusOr<flotilla::v1::AgentVm> finish(std::string_view host, std::string_view name,
                                               flotilla::v1::MigrationEndRequest::Role role) {
    return call<flotilla::v1::AgentVm>(host, &Stub::FinishMigration, endRequest(name, role));
  }
  absl::StatusOr<flotilla::v1::AgentVm> abort(std::string_view host, std::string_view name,
                                              flotilla::v1::MigrationEndRequest::Role role) {
    return call<flotilla::v1::AgentVm>(host, &Stub::AbortMigration, endRequest(name, role));
  }

  static flotilla::v1::VmSpec spec(uint64_t memory_mib) {
    flotilla::v1::VmSpec spec;
    spec.set_vcpus(2);
    spec.set_memory_bytes(memory_mib << 20);
    spec.mutable_boot()->set_kernel("/sim/guest.elf");
    return spec;
  }

 private:
  static flotilla::v1::AgentVmRequest vmRequest(std::string_view name) {
    flotilla::v1::AgentVmRequest request;
    request.set_name(std::string(name));
    return request;
  }
  static flotilla::v1::MigrationEndRequest endRequest(
      std::string_view name, flotilla::v1::MigrationEndRequest::Role role) {
    flotilla::v1::MigrationEndRequest request;
    request.set_name(std::string(name));
    request.set_role(role);
    return request;
  }

  std::unique_ptr<Stub> stub_;
};

// A simulator of 3 hosts (sim-0001..3: 8 CPUs, 4 GiB) on a FakeClock, without etcd, and a
// client of it.
class SimFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    SimulatorOptions options;
    options.hosts = 3;
    options.shapes = {HostShape{.cpus = 8, .memory_bytes = uint64_t{4} << 30}};
    options.clock = &clock_;
    auto sim = Simulator::start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
    client_ = std::make_unique<SimClient>(sim_->address());
  }

  FakeClock clock_;
  std::unique_ptr<Simulator> sim_;
  std::unique_ptr<SimClient> client_;
};

}  // namespace flotilla::sim::testing
