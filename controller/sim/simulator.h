// Simulator: N simulated agents in one process, so that flotilla-controller can be run
// against 1000 hosts and 20,000 VMs on one machine (docs/simulator.md). It serves AgentService
// for every host on one gRPC port (SimAgentService, dispatching by the x-flotilla-host
// metadata), writes every host's lease-bound HostStatus to etcd (FleetReporter; skipped when no
// etcd endpoint is given), and injects faults: a host killed, a migration failed.
//
//   auto sim = Simulator::start({.etcd_endpoints = {"127.0.0.1:2379"}, .hosts = 1000});
//   // controller: HostStatus.agent_address of every host is (*sim)->address()
//   (*sim)->killHost("sim-0042");
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controller/sim/agent_service.h"
#include "controller/sim/fleet_reporter.h"
#include "controller/sim/sim_fleet.h"
#include "controller/sim/sim_options.h"
#include "flotilla/v1/agent.pb.h"
#include "grpcpp/server.h"

namespace flotilla::sim {

struct SimulatorStats {
  uint64_t agent_calls = 0;   // AgentService calls answered
  FleetReporter::Stats etcd;  // zero without etcd
  size_t migrations = 0;      // simulated migrations not yet released by both sides
};

class Simulator {
 public:
  // Validates the options, serves AgentService, and (with etcd endpoints) registers every host
  // in etcd before it returns. Nothing is left running on failure.
  static absl::StatusOr<std::unique_ptr<Simulator>> start(SimulatorOptions options);
  // shutdown(true) unless done.
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Stops serving and reporting. With `revoke_leases`, every host's lease is revoked so that
  // its status key leaves etcd at once; otherwise the keys expire after the lease TTL.
  // Idempotent.
  absl::Status shutdown(bool revoke_leases = true);

  // host:port of the AgentService of every host (HostStatus.agent_address).
  const std::string& address() const { return address_; }
  std::vector<std::string> hostNames() const;
  SimFleet& fleet() { return *fleet_; }
  SimHost* host(std::string_view name) { return fleet_->host(name); }

  // Fault injection. killHost: the host stops answering (UNAVAILABLE), its VMs are lost, its
  // migrations fail, and its lease is no longer renewed, so its status key leaves etcd after
  // the lease TTL (at once with `revoke_lease`). reviveHost: it answers and reports again
  // (with a new lease); the VMs it had are Failed, as after a real host crash.
  absl::Status killHost(std::string_view name, bool revoke_lease = false);
  absl::Status reviveHost(std::string_view name);
  // The next migration of `vm` (whichever host it starts from) ends "failed".
  void failNextMigration(std::string_view vm) { fleet_->failNextMigration(vm); }

  // What `name` reports now (the same message as in etcd).
  absl::StatusOr<flotilla::v1::HostStatus> hostStatus(std::string_view name);
  // Writes the host's status to etcd now (FailedPrecondition without etcd).
  absl::Status reportNow(std::string_view name);
  // The etcd key of the host's status.
  std::string statusKey(std::string_view name) const;
  // The reporter's etcd client (nullptr without etcd), for tests and benches.
  etcd::EtcdClient* etcd() { return reporter_ == nullptr ? nullptr : &reporter_->etcd(); }

  SimulatorStats stats() const;

 private:
  Simulator() = default;
  absl::StatusOr<SimHost*> lookup(std::string_view name);

  std::unique_ptr<SimFleet> fleet_;
  std::unique_ptr<SimAgentService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<FleetReporter> reporter_;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace flotilla::sim
