// The agent simulator: one AgentService server, the fleet, the etcd reporter (see simulator.h).
#include "controller/sim/simulator.h"

#include <chrono>

#include "common/status.h"
#include "fmt/format.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace flotilla::sim {
namespace {

// The host part of "HOST:PORT" as clients reach it: a wildcard listen address is reached on
// loopback.
std::string reachableHost(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "[::]") return "127.0.0.1";
  return host;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Simulator>> Simulator::start(SimulatorOptions options) {
  RETURN_IF_ERROR(validateOptions(options));
  std::unique_ptr<Simulator> sim(new Simulator());
  const std::string listen = options.listen;
  std::string migration_address = options.migration_address;
  sim->fleet_ = std::make_unique<SimFleet>(std::move(options));
  sim->service_ = std::make_unique<SimAgentService>(*sim->fleet_);

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(sim->service_.get());
  sim->server_ = builder.BuildAndStart();
  if (sim->server_ == nullptr || port == 0) {
    sim->shut_down_ = true;
    return absl::UnavailableError(fmt::format(
        "cannot serve AgentService on {}: is the address in use, or not one of this host's?",
        listen));
  }
  sim->address_ = fmt::format("{}:{}", reachableHost(listen), port);
  if (migration_address.empty()) migration_address = reachableHost(listen);
  sim->fleet_->setAddresses(sim->address_, migration_address);

  if (!sim->fleet_->options().etcd_endpoints.empty()) {
    absl::StatusOr<std::unique_ptr<FleetReporter>> reporter = FleetReporter::start(*sim->fleet_);
    if (!reporter.ok()) {
      (void)sim->shutdown(false);
      return annotate(reporter.status(), "registering the simulated hosts in etcd");
    }
    sim->reporter_ = std::move(*reporter);
  }
  return sim;
}

Simulator::~Simulator() {
  (void)shutdown(true);
}

absl::Status Simulator::shutdown(bool revoke_leases) {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  absl::Status status;
  if (reporter_ != nullptr) status = reporter_->stop(revoke_leases);
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  return status;
}

std::vector<std::string> Simulator::hostNames() const {
  std::vector<std::string> names;
  names.reserve(fleet_->hosts().size());
  for (const auto& host : fleet_->hosts()) names.push_back(host->name());
  return names;
}

absl::StatusOr<SimHost*> Simulator::lookup(std::string_view name) {
  SimHost* found = fleet_->host(name);
  if (found == nullptr) {
    return absl::NotFoundError(
        fmt::format("host '{}' is not simulated here ({})", name, fleet_->describeHosts()));
  }
  return found;
}

absl::Status Simulator::killHost(std::string_view name, bool revoke_lease) {
  ASSIGN_OR_RETURN(SimHost * host, lookup(name));
  // Reports stop first, so that none carries the dead host's state.
  absl::Status down =
      reporter_ == nullptr ? absl::OkStatus() : reporter_->hostDown(name, revoke_lease);
  host->powerOff();
  return down;
}

absl::Status Simulator::reviveHost(std::string_view name) {
  ASSIGN_OR_RETURN(SimHost * host, lookup(name));
  host->powerOn();
  if (reporter_ == nullptr) return absl::OkStatus();
  return reporter_->hostUp(name);
}

absl::StatusOr<flotilla::v1::HostStatus> Simulator::hostStatus(std::string_view name) {
  ASSIGN_OR_RETURN(SimHost * host, lookup(name));
  return host->status();
}

absl::Status Simulator::reportNow(std::string_view name) {
  if (reporter_ == nullptr) {
    return absl::FailedPreconditionError("the simulator was started without etcd endpoints");
  }
  return reporter_->reportNow(name);
}

std::string Simulator::statusKey(std::string_view name) const {
  return fmt::format("{}hosts-status/{}", fleet_->options().key_prefix, name);
}

SimulatorStats Simulator::stats() const {
  SimulatorStats stats;
  stats.agent_calls = service_->calls();
  if (reporter_ != nullptr) stats.etcd = reporter_->stats();
  stats.migrations = fleet_->migrations().size();
  return stats;
}

}  // namespace flotilla::sim
