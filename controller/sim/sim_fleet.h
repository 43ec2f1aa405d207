// SimFleet: every simulated host, and what they share: the migrations between them, the
// volumes of the (shared) pools, the VMs whose next migration must fail, and the addresses
// they report. Pure logic, no I/O: the AgentService (agent_service.h) and the etcd reporter
// (fleet_reporter.h) are built on it, and unit tests drive it directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "controller/sim/migration_registry.h"
#include "controller/sim/sim_host.h"
#include "controller/sim/sim_options.h"
#include "flotilla/v1/agent.pb.h"

namespace flotilla::sim {

// The volumes of every pool. Pools are shared: every simulated host sees the same volumes
// (as hosts of a real cluster see the volumes of a shared iSCSI pool).
class VolumeStore {
 public:
  absl::StatusOr<flotilla::v1::Volume> create(std::string_view pool, std::string_view name,
                                              uint64_t size_bytes);
  absl::StatusOr<flotilla::v1::Volume> resize(std::string_view pool, std::string_view name,
                                              uint64_t size_bytes);
  absl::StatusOr<flotilla::v1::Volume> clone(std::string_view pool, std::string_view source,
                                             std::string_view target);
  absl::Status remove(std::string_view pool, std::string_view name);  // absent: OK
  std::vector<flotilla::v1::Volume> list(std::string_view pool);

 private:
  using Pool = std::map<std::string, flotilla::v1::Volume, std::less<>>;
  absl::Mutex mu_;
  std::map<std::string, Pool, std::less<>> pools_ ABSL_GUARDED_BY(mu_);
};

class SimFleet {
 public:
  // Creates the hosts (options must be valid: validateOptions).
  explicit SimFleet(SimulatorOptions options);
  SimFleet(const SimFleet&) = delete;
  SimFleet& operator=(const SimFleet&) = delete;

  const SimulatorOptions& options() const { return options_; }
  Clock& clock() const { return clock_; }

  // The host named `name`, or nullptr when it is not simulated here.
  SimHost* host(std::string_view name) const;
  const std::vector<std::unique_ptr<SimHost>>& hosts() const { return hosts_; }
  // "sim-0001 to sim-1000", for error messages.
  std::string describeHosts() const;

  MigrationRegistry& migrations() { return migrations_; }
  VolumeStore& volumes() { return volumes_; }

  // The next migration started from `vm` fails at its end (once).
  void failNextMigration(std::string_view vm);
  // Whether `vm`'s migration that starts now must fail (consumes the request).
  bool takeInjectedFailure(std::string_view vm);

  // The addresses hosts report: AgentService (this simulator's one server) and the host part
  // of the incoming-migration addresses. Set once the server listens, before any report.
  void setAddresses(std::string agent_address, std::string migration_address);
  std::string agentAddress() const;
  std::string migrationAddress() const;

  // A fresh fake VMM pid (for AgentVm.vmm_pid).
  uint32_t nextVmmPid() { return next_pid_.fetch_add(1); }

  // The hosts that hold `vm` (as a running, stopped or incoming VM), for tests and benches.
  std::vector<std::string> hostsOf(std::string_view vm) const;

 private:
  const SimulatorOptions options_;
  Clock& clock_;
  std::vector<std::unique_ptr<SimHost>> hosts_;
  std::map<std::string, SimHost*, std::less<>> by_name_;
  MigrationRegistry migrations_;
  VolumeStore volumes_;
  std::atomic<uint32_t> next_pid_{100000};
  mutable absl::Mutex mu_;
  std::set<std::string, std::less<>> fail_next_ ABSL_GUARDED_BY(mu_);
  std::string agent_address_ ABSL_GUARDED_BY(mu_);
  std::string migration_address_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::sim
