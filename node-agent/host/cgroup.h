// CgroupManager: one cgroup per VM, under a parent group of the agent's ("flotilla"), with
// the VM's CPU and memory limits and its accounting. The agent spawns one flotilla-vmm per
// VM and puts it in the VM's group; after an agent restart it finds the groups again with
// listVmGroups().
//
// Kernel interfaces: Documentation/admin-guide/cgroup-v2.rst (unified hierarchy) and
// Documentation/admin-guide/cgroup-v1/{cgroups,cpuacct,memory,pids}.rst plus
// Documentation/scheduler/sched-bwc.rst (CFS bandwidth, v1 files).
//
// Layouts. open() reads /proc/self/mountinfo and uses
//   v2 (preferred): a cgroup2 mount under the root (/sys/fs/cgroup) whose cgroup.controllers
//       lists cpu and memory. The parent group gets its controllers through
//       cgroup.subtree_control ("+cpu", "+memory", and "+pids" when available) at every
//       level from the root down, and every VM group is one directory below it.
//   v1 (fallback; also "hybrid" systems, whose cgroup2 mount at /sys/fs/cgroup/unified has
//       no controllers): the cgroup v1 hierarchies that carry cpu, cpuacct and memory
//       (required) and pids (used when mounted). The parent group and every VM group exist
//       once in each hierarchy (a hierarchy that co-mounts controllers, "cpu,cpuacct", is one
//       directory); a process is added to each.
//
// How the files map (v2 ↔ v1), with the values written for VmLimits:
//   cpu.max "QUOTA PERIOD" / "max PERIOD"  ↔ cpu.cfs_quota_us QUOTA / -1, cpu.cfs_period_us
//   cpu.weight W (1..10000, default 100)   ↔ cpu.shares W*1024/100 (default 1024)
//   memory.max BYTES / "max"               ↔ memory.limit_in_bytes BYTES / -1
//   memory.high BYTES / "max"              ↔ memory.soft_limit_in_bytes BYTES / -1 (not the
//        same: v1 has no throttling threshold; the soft limit only makes the group the first
//        to be reclaimed from when the host runs short of memory)
//   pids.max N / "max"                     ↔ pids.max N / "max" (pids hierarchy)
// and for usage():
//   cpu.stat usage_usec (µs)               ↔ cpuacct.usage (ns)
//   cpu.stat nr_throttled, throttled_usec  ↔ cpu.stat nr_throttled, throttled_time (ns)
//   memory.current                         ↔ memory.usage_in_bytes
//   memory.peak (Linux 5.19+)              ↔ memory.max_usage_in_bytes
//   pids.current                           ↔ pids.current (pids hierarchy)
//   cgroup.procs                           ↔ cgroup.procs of every hierarchy (their union)
//
// Putting the VMM into its group. v2: openGroupFd() gives the descriptor clone3() takes with
// CLONE_INTO_CGROUP (Linux 5.7+), so the child never runs outside its group. Otherwise (v1,
// or a spawner without clone3, like ChildProcess, which uses posix_spawn) the agent calls
// addProcess(vm, pid) right after the spawn. Until then the VMM runs in the agent's group,
// and on v1 the memory it touches meanwhile stays charged there after the move. flotilla-vmm
// builds its VM as soon as it starts, so that window is real: to close it, the VMM must
// wait for a go (e.g. a line on a pipe) before building the VM, or the spawner use clone3.
//
// Thread safety: the manager keeps nothing but paths after open(); every method may be
// called from any thread. Concurrent calls for the same VM see the kernel's ordering.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "node-agent/host/cgroup_fs.h"
#include "node-agent/host/cgroup_layout.h"

namespace flotilla::agent {

struct CgroupOptions {
  // The agent's group, relative to the root of each hierarchy: one or more '/'-separated
  // components of [A-Za-z0-9._-] ("flotilla", "flotilla.slice/vms"). Tests use a name with
  // their pid ("flotilla-test-1234").
  std::string parent = "flotilla";
  // Where the cgroup file systems are mounted. With kAuto only mounts at or below it count.
  // With kV1 or kV2 the mount table is not read: kV2 uses `root` itself as the unified
  // hierarchy, kV1 uses root/cpu, root/cpuacct, root/memory and root/pids (when present).
  std::string root = "/sys/fs/cgroup";
  CgroupVersion version = CgroupVersion::kAuto;
  // The mount table read by kAuto.
  std::string mountinfo_path = "/proc/self/mountinfo";
  // The file system operations; nullptr: the real one. Not owned; must outlive the manager.
  CgroupFilesystem* filesystem = nullptr;
};

struct VmLimits {
  // CPU bandwidth in thousandths of a core (1500: one and a half cores), enforced over each
  // period; 0: no limit. The quota (millicores × period / 1000) must be at least 1000 µs.
  uint64_t cpu_millicores = 0;
  // The bandwidth period in µs, 1000 .. 1000000.
  uint64_t cpu_period_us = 100000;
  // Relative CPU share under contention on the cgroup v2 scale, 1 .. 10000; 0: the default
  // (100).
  uint64_t cpu_weight = 0;
  // Hard memory limit (the kernel reclaims, then OOM-kills inside the group); 0: none.
  uint64_t memory_max_bytes = 0;
  // v2: the group is throttled and reclaimed above it; v1: soft limit (see above). 0: none.
  uint64_t memory_high_bytes = 0;
  // At most this many tasks (threads); 0: no limit. Needs the pids controller.
  uint64_t pids_max = 0;
};

// A VM's group as created or found.
struct VmCgroup {
  std::string vm;
  // The group's directory in each hierarchy (one on v2).
  std::vector<std::string> paths;
  // False when the group existed already (its limits were updated).
  bool created = false;
};

struct CgroupUsage {
  uint64_t cpu_ns = 0;                        // CPU time of all its tasks, user and system
  uint64_t cpu_throttled_periods = 0;         // periods in which the quota ran out
  uint64_t cpu_throttled_ns = 0;              // time spent throttled
  uint64_t memory_bytes = 0;                  // memory charged now (page cache included)
  std::optional<uint64_t> memory_peak_bytes;  // highest memory_bytes seen, when the kernel has it
  std::optional<uint64_t> tasks;              // threads, when the pids controller is there
  std::vector<pid_t> pids;                    // its processes, sorted
};

class CgroupManager {
 public:
  // Detects the layout and creates the parent group (in every hierarchy on v1), enabling
  // the controllers on the way on v2. Creating what exists already is fine. Errors name the
  // path and file that failed; a failed open() removes the groups it created.
  static absl::StatusOr<std::unique_ptr<CgroupManager>> open(const CgroupOptions& options);

  CgroupManager(const CgroupManager&) = delete;
  CgroupManager& operator=(const CgroupManager&) = delete;

  const CgroupLayout& layout() const { return layout_; }
  CgroupVersion version() const { return layout_.version; }
  // The parent group's directory in each hierarchy.
  std::vector<std::string> parentPaths() const;

  // Creates VM `vm`'s group with `limits`, or sets `limits` on the existing group (every
  // limit file is written, so a limit left at 0 returns to "no limit"). `vm` is a VM name
  // (a DNS label, common/ids.h). A group this call created is removed again when a limit
  // cannot be set.
  absl::StatusOr<VmCgroup> createVmGroup(std::string_view vm, const VmLimits& limits);

  // Moves process `pid` (with all its threads) into VM `vm`'s group: its cgroup.procs on v2,
  // in every hierarchy on v1. NotFound when the group or the process does not
  // exist.
  absl::Status addProcess(std::string_view vm, pid_t pid);

  // v2 only: a descriptor of the VM's group directory for clone3(CLONE_INTO_CGROUP).
  // FailedPrecondition on v1 (use addProcess).
  absl::StatusOr<UniqueFd> openGroupFd(std::string_view vm);

  // The group's CPU time, throttling, memory and processes.
  absl::StatusOr<CgroupUsage> usage(std::string_view vm);

  // Removes VM `vm`'s group. Processes are never killed: FailedPrecondition naming them
  // while any remain. OK when the group does not exist.
  absl::Status removeVmGroup(std::string_view vm);

  // The VMs that have a group (in any hierarchy on v1, so that a half-removed group is still
  // found), sorted. Directories whose names are not VM names are skipped.
  absl::StatusOr<std::vector<std::string>> listVmGroups();

  // Removes the parent group (its last path component) once it holds no VM groups; for
  // tests and for uninstalling. OK when it does not exist; FailedPrecondition naming the
  // groups left in it otherwise.
  absl::Status removeParentGroup();

 private:
  CgroupManager(CgroupLayout layout, std::string parent, CgroupFilesystem* filesystem,
                std::unique_ptr<CgroupFilesystem> owned_filesystem)
      : layout_(std::move(layout)),
        parent_(std::move(parent)),
        fs_(filesystem),
        owned_fs_(std::move(owned_filesystem)) {}

  absl::Status createParent();
  absl::Status enableControllers(const std::string& group);
  absl::Status writeLimits(std::string_view vm, const VmLimits& limits);
  absl::StatusOr<std::vector<pid_t>> readProcs(const std::string& group);
  absl::StatusOr<std::string> readFile(const std::string& path);
  absl::StatusOr<uint64_t> readNumber(const std::string& path);
  absl::StatusOr<std::optional<uint64_t>> readOptionalNumber(const std::string& path);
  absl::Status writeFile(const std::string& path, std::string_view value);
  // The hierarchies' mount points (one on v2).
  std::vector<std::string> mountPoints() const;
  // The mount point of the v1 hierarchy carrying `controller`, or "".
  std::string hierarchyOf(std::string_view controller) const;
  std::string groupPath(const std::string& mount_point, std::string_view vm) const;

  CgroupLayout layout_;
  std::string parent_;
  CgroupFilesystem* fs_;
  std::unique_ptr<CgroupFilesystem> owned_fs_;
};

}  // namespace flotilla::agent
