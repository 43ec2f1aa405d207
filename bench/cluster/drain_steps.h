// drain_bench's steps on a ControllerCluster (tests/integration/controller/controller_cluster.h):
// the benchmark VMs and their storage, placing them all on one host, draining that host through
// ClusterService, and the peer: the same kind of live migration driven directly through two
// agents' AgentService, without the controller (docs/benchmarks.md, "Drain").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/probe/udp_prober.h"
#include "tests/integration/controller/controller_cluster.h"
#include "tests/integration/node-agent/agent_host.h"

namespace flotilla::bench {

using controller::testing::ControllerCluster;

// One benchmark VM: the test guest answering UDP echo at `ip` on network "blue", with the
// iSCSI disk san/`volume`.
struct BenchVm {
  std::string name;
  std::string ip;
  std::string volume;
};

// "PREFIX-1" .. "PREFIX-COUNT" at 10.78.0.(first_host_octet + i), disks "PREFIX-i-disk".
std::vector<BenchVm> benchVms(const std::string& prefix, int count, int first_host_octet);
std::vector<probe::ProbeTarget> probeTargets(const std::vector<BenchVm>& vms);

// Network "blue" (VLAN 100), the iSCSI pool "san" managed by host 0's agent, and a 16 MiB
// volume for each VM of `vms`.
absl::Status createNetworkAndStorage(ControllerCluster& cluster, const std::vector<BenchVm>& vms);

// Creates `vms` (1 vCPU, 64 MiB, the disk, a NIC on "blue") through ClusterService while every
// other host is cordoned, so that the scheduler puts them all on `host`; waits until each runs
// there, then uncordons the other hosts again. Placement constraints (a pin or host labels)
// would also hold for the drain, which could then move them nowhere: a cordon only affects new
// placements.
absl::Status createVmsOnHost(ControllerCluster& cluster, int host, const std::vector<BenchVm>& vms,
                             absl::Duration timeout);

// DeleteVm of each, then waits until none exists any more.
absl::Status deleteVms(ControllerCluster& cluster, const std::vector<BenchVm>& vms,
                       absl::Duration timeout);

// ClusterService.UndrainHost: the (finished) drain record stays, the host is uncordoned.
absl::Status undrainHost(ControllerCluster& cluster, const std::string& host);

// One live migration, as its driver saw it.
struct Move {
  std::string vm;
  std::string source;
  std::string target;
  bool succeeded = false;
  int64_t started_unix_ms = 0;          // the target was being prepared
  int64_t completed_unix_ms = 0;        // peer only: GetMigration on the source said completed
  int64_t target_finished_unix_ms = 0;  // peer only: FinishMigration on the target returned
  int64_t finished_unix_ms = 0;         // both sides finished (or it failed)
  double vmm_downtime_ms = 0;           // the source VMM's figure: its pause to the target's resume
  std::string message;
};

struct DrainOutcome {
  absl::Duration called_at = absl::ZeroDuration();     // monotonic: DrainHost was called
  absl::Duration succeeded_at = absl::ZeroDuration();  // monotonic: Succeeded was first read
  int64_t record_ms = 0;    // the controller's own figure: finished - created of the DrainRecord
  std::string message;      // the DrainRecord's
  std::vector<Move> moves;  // every migration the drain ran (failed attempts included)
};

// DrainHost(`host`), then GetDrain every `poll` until it leaves Running; fails unless it
// Succeeded within `timeout`. The moves come from the MigrationRecords marked with the drain.
absl::StatusOr<DrainOutcome> drainHost(ControllerCluster& cluster, const std::string& host,
                                       absl::Duration poll, absl::Duration timeout);

// VmStatus.generation of each of `vms`, by name: the generation its VMM opened its iSCSI
// volumes with, which a migration target must open them with too (docs/storage.md "Fencing by
// generation"). The agents do not report it; the controller records it.
absl::StatusOr<std::map<std::string, uint64_t>> vmGenerations(ControllerCluster& cluster,
                                                              const std::vector<BenchVm>& vms);

// The peer: moves `vm` (of `generation`) from `source` to `target` as flotilla-controller's
// migration driver does (controller/migration_driver.cc) but from here, with nothing recorded
// anywhere: GetVm on the source (spec, uid, NICs), PrepareIncoming on the target, StartMigration on
// the source (`downtime_limit_ms`, auto-converge), GetMigration on the source every `poll` until it
// completed, FinishMigration on the target, then on the source. On a failure both sides are
// aborted (the VM keeps running on the source) and the error says which step failed.
absl::StatusOr<Move> migrateDirectly(agent::testing::AgentHost& source,
                                     agent::testing::AgentHost& target, const std::string& vm,
                                     uint64_t generation, uint32_t downtime_limit_ms,
                                     absl::Duration poll, absl::Duration timeout);

// The most moves whose [started, finished] intervals overlap at one instant.
int maxConcurrent(const std::vector<Move>& moves);

}  // namespace flotilla::bench
