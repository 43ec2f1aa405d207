// How clusterctl shows each kind of object: the kinds `get` and `watch` know, their table
// rows (-o table and -o wide), their names (-o name), and one-line summaries for watch and
// progress lines.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "cli/output.h"
#include "flotilla/v1/cluster.pb.h"

namespace flotilla::cli {

enum class Kind { kHost, kVm, kNetwork, kPool, kVolume, kMigration, kDrain, kEvent };

struct KindInfo {
  Kind kind;
  std::string_view singular;  // "vm": in -o name output and in messages
  std::string_view plural;    // "vms"
  v1::ObjectKind object_kind;
};

const std::vector<KindInfo>& allKinds();
// "vm", "vms", "host", ... (singular or plural); nullopt for anything else.
std::optional<KindInfo> findKind(std::string_view word);
// "hosts, vms, networks, ..." for messages and help.
std::string kindList();

const KindInfo& kindInfo(Kind kind);
const KindInfo* kindInfo(v1::ObjectKind object_kind);

// Short words for enum values as clusterctl prints and accepts them.
std::string hostStateWord(const v1::Host& host);           // Ready, Unreachable,Cordoned, ...
std::string vmStateWord(v1::VmState state);                // Running, Pending, ...
std::string policyWord(v1::MigrationPolicy policy);        // live, live-or-cold, cold
std::string poolTypeWord(v1::PoolType type);               // dir, iscsi, drbd
std::string modeWord(v1::MigrationMode mode);              // live, cold
std::string migrationPhaseWord(v1::MigrationPhase phase);  // Transferring, ...
std::string drainPhaseWord(v1::DrainPhase phase);          // Running, Succeeded, ...
std::string drainVmStateWord(v1::DrainVm::State state);    // Waiting, Migrating, Done, Failed
std::string severityWord(v1::Event::Severity severity);    // Info, Warning, Error

bool migrationEnded(v1::MigrationPhase phase);
bool drainEnded(v1::DrainPhase phase);
// How many of a drain's VMs are done and failed.
struct DrainCounts {
  int done = 0;
  int failed = 0;
  int total = 0;
};
DrainCounts countDrain(const v1::DrainRecord& drain);

// Tables of each kind (`wide` adds columns).
Table hostsTable(const v1::ListHostsResponse& list, bool wide, absl::Time now);
Table vmsTable(const v1::ListVmsResponse& list, bool wide, absl::Time now);
Table networksTable(const v1::ListNetworksResponse& list, bool wide, absl::Time now);
Table poolsTable(const v1::ListPoolsResponse& list, bool wide, absl::Time now);
Table volumesTable(const v1::ListVolumesClusterResponse& list, bool wide, absl::Time now);
Table migrationsTable(const v1::ListMigrationsResponse& list, bool wide, absl::Time now);
Table drainsTable(const v1::ListDrainsResponse& list, bool wide, absl::Time now);
Table eventsTable(const v1::ListEventsResponse& list, bool wide, absl::Time now);

// "vm web1: Running on host-a", ... for an object of a watch event.
std::string summarizeEvent(const v1::WatchEvent& event);
// "Transferring, 120M sent, round 3" for progress lines.
std::string migrationProgress(const v1::MigrationRecord& migration);

}  // namespace flotilla::cli
