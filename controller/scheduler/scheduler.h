// The scheduler: picks a host for a VM from a ClusterView (docs/scheduler.md). Filters
// (host ready and schedulable, exclusions, pin, host labels, CPU model, pools, anti-affinity,
// memory and vCPUs with overcommit) then a score (spread or pack, affinity groups first).
// Pure logic: no I/O. load() builds per-host counters once; place() reads only them, so a
// placement costs O(hosts), never O(VMs).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/model/cluster_view.h"

namespace flotilla::controller {

struct SchedulerOptions {
  enum class Strategy { kSpread, kPack };
  Strategy strategy = Strategy::kSpread;
  double cpu_overcommit = 4.0;        // vCPUs per host CPU
  double memory_overcommit = 1.0;     // VM memory per byte of host memory (after the reserve)
  uint64_t memory_reserve_bytes = 0;  // kept free on each host for the host itself
};

// "spread" or "pack" (the controller configuration's scheduler.strategy).
absl::StatusOr<SchedulerOptions::Strategy> parseStrategy(std::string_view text);
const char* strategyName(SchedulerOptions::Strategy strategy);
// Overcommit ratios must be finite and > 0; the error names the setting and a valid value.
absl::Status validateSchedulerOptions(const SchedulerOptions& options);

// What is being placed.
struct PlacementRequest {
  std::string vm;                        // name
  const v1::VmRecord* record = nullptr;  // spec and placement constraints
  std::set<std::string> exclude{};       // hosts not to use (the source of a migration or drain)
  // The target must be able to take the VM live from `source_host`: a named cpu_model must be
  // among the target's cpu_models; "host" (or empty) needs the same cpu_model_name and a
  // superset of the source's cpu_flags. Disks on local (dir) pools cannot move live.
  bool live_migration = false;
  std::string source_host{};
};

struct PlacementResult {
  std::optional<std::string> host{};  // the chosen host
  // When no host fits: one line per host ("host-3: cordoned"), sorted by host, then a summary
  // line. A problem of the request itself (undefined network, unknown pinned host, no source
  // report for a live migration) is a single line instead.
  std::vector<std::string> reasons{};
};

// Capacity and use of one host as the scheduler accounts it.
struct HostUsage {
  double vcpu_capacity = 0;    // cpus * cpu_overcommit
  double memory_capacity = 0;  // (memory_bytes - reserve) * memory_overcommit
  uint64_t vcpus_used = 0;
  uint64_t memory_used = 0;
  uint32_t vms = 0;  // placed VMs plus incoming migrations
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options);

  // Rebuilds all accounting from `view`: every VM with a host in its status counts on that
  // host (running or not: starting it again must not fail for room), and the target of every
  // active migration holds the VM's resources and group membership too.
  void load(const ClusterView& view);

  PlacementResult place(const PlacementRequest& request) const;
  // OK when `host` passes every filter for the request; otherwise FailedPrecondition with
  // the reason line place() would give for that host (NotFound for an unknown host).
  absl::Status check(const PlacementRequest& request, const std::string& host) const;

  // Accounts a decision so that the next place() sees it; a VM already placed moves (its old
  // host is released), and a reservation of its own migration to `host` becomes this
  // placement. NotFound when `host` was not in the loaded view.
  // place() and check() never count the VM being placed against itself: neither where it is
  // placed nor at the target of its own active migration.
  absl::Status assign(const std::string& vm, const v1::VmRecord& record, const std::string& host);
  // Releases the VM's placement (not an incoming-migration reservation). Unknown VM: no-op.
  void unassign(const std::string& vm);

  std::optional<HostUsage> usage(const std::string& host) const;
  // The host a VM is accounted on (its placement), if any.
  std::optional<std::string> hostOf(const std::string& vm) const;
  const SchedulerOptions& options() const { return options_; }

 private:
  enum class Availability { kSchedulable, kNoReport, kUnreachable, kFenced, kCordoned, kDraining };

  struct Host {
    std::string name;
    Availability availability = Availability::kNoReport;
    std::string cordon_reason;
    uint32_t cpus = 0;
    uint64_t memory_bytes = 0;
    double vcpu_capacity = 0;
    double memory_capacity = 0;
    uint64_t vcpus_used = 0;
    uint64_t memory_used = 0;
    uint32_t vms = 0;
    bool has_inventory = false;
    uint32_t cpu_signature = 0;  // index into cpu_signatures_ (same CPU name and flags)
    // Strings for the reason texts; the same as sorted interned ids for the placement loop,
    // which then compares integers instead of hashing strings for every host.
    absl::flat_hash_set<std::string> cpu_models;
    absl::flat_hash_set<std::string> pools;
    absl::flat_hash_map<std::string, std::string> labels;
    std::vector<uint32_t> cpu_model_ids;
    std::vector<uint32_t> pool_ids;
    std::vector<uint32_t> label_ids;  // of key=value pairs
  };
  struct CpuSignature {
    std::string model_name;
    std::vector<std::string> flags;  // sorted, unique
  };
  // A VM's claim on a host (a placement, or the target of a migration).
  struct Claim {
    uint32_t host = 0;
    uint32_t vcpus = 0;
    uint64_t memory = 0;
    std::string affinity_group;
    std::string anti_affinity_group;
  };
  using GroupHosts = absl::flat_hash_map<uint32_t, uint32_t>;  // host index -> VMs of the group

  // Everything place() derives from the request once, before it looks at hosts.
  struct Prepared;
  enum class Filter {
    kPass,
    kAvailability,
    kExcluded,
    kPinned,
    kLabels,
    kCpuModel,
    kPool,
    kAntiAffinity,
    kMemory,
    kVcpus,
  };

  // A request-level problem (one reason line), or nullopt when it can be placed at all.
  std::optional<std::string> prepare(const PlacementRequest& request, Prepared& out) const;
  Filter filter(const Prepared& prepared, uint32_t host, std::vector<int8_t>& cpu_cache) const;
  std::string reason(const Prepared& prepared, uint32_t host, Filter failed) const;
  // One line per host and a summary, when no host passed.
  std::vector<std::string> unplaceableReasons(const Prepared& prepared,
                                              std::vector<int8_t>& cpu_cache) const;
  bool cpuCompatible(uint32_t source_signature, uint32_t target_signature) const;
  void addClaim(const Claim& claim);
  void removeClaim(const Claim& claim);
  Claim claimFor(const v1::VmRecord& record, uint32_t host) const;

  SchedulerOptions options_;
  std::vector<Host> hosts_;  // sorted by name: ties go to the first
  absl::flat_hash_map<std::string, uint32_t> host_index_;
  std::vector<CpuSignature> cpu_signatures_;
  absl::flat_hash_map<std::string, uint32_t> cpu_model_ids_;
  absl::flat_hash_map<std::string, uint32_t> pool_ids_;
  absl::flat_hash_map<std::pair<std::string, std::string>, uint32_t> label_ids_;
  absl::flat_hash_set<std::string> networks_;
  absl::flat_hash_set<std::string> local_pools_;  // dir pools: volumes cannot move live
  absl::flat_hash_map<std::string, Claim> placed_;
  absl::flat_hash_map<std::string, Claim> incoming_;  // active migrations, by VM
  absl::flat_hash_map<std::string, GroupHosts> affinity_;
  absl::flat_hash_map<std::string, GroupHosts> anti_affinity_;
};

}  // namespace flotilla::controller
