// ClusterView: a consistent snapshot of the cluster state the leader's reconcilers decide on
// (hosts with their agents' latest reports, VMs, networks, pools, migrations), read from
// etcd at one revision. The scheduler and the rebalancer are pure functions of it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "flotilla/v1/agent.pb.h"
#include "flotilla/v1/cluster_state.pb.h"

namespace flotilla::controller {

struct HostView {
  std::string name;
  v1::HostRecord record;
  std::optional<v1::HostStatus> status;  // absent: the agent's lease is gone

  // Reporting and not Unreachable/Fenced.
  bool ready() const;
  // Ready and not cordoned.
  bool schedulable() const;
};

struct VmView {
  std::string name;
  v1::VmRecord record;
  v1::VmStatus status;
};

struct ClusterView {
  int64_t revision = 0;  // the etcd revision it was read at
  std::map<std::string, HostView> hosts;
  std::map<std::string, VmView> vms;
  std::map<std::string, v1::NetworkRecord> networks;
  std::map<std::string, v1::PoolRecord> pools;
  std::map<std::string, v1::MigrationRecord> migrations;
  std::map<std::string, v1::DrainRecord> drains;

  // A migration of `vm` that has not ended (Pending to Switching), if any.
  const v1::MigrationRecord* activeMigration(const std::string& vm) const;
};

// Pending, Preparing, Transferring or Switching.
bool migrationActive(v1::MigrationPhase phase);

// The generation a VM gets when it is created or restarted by HA after `previous`: above it,
// and at least the current Unix time in seconds. Generations fence a VM's iSCSI LUNs (docs/
// storage.md "Fencing by generation"), and the LUN keeps the newest generation it saw even
// after the VM is gone: a VM created later, with the same volume, must still come above it.
// Unix seconds fit the 32 bits the reservation key holds until 2106.
uint64_t nextGeneration(uint64_t previous, int64_t now_unix_seconds);

}  // namespace flotilla::controller
