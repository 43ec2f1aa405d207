// Which cgroup file systems a host has and which of them CgroupManager uses (cgroup.h
// describes the two layouts): the cgroup mounts of /proc/self/mountinfo (proc(5)) and the
// choice between cgroup v2 and the v1 hierarchies.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node-agent/host/cgroup_fs.h"

namespace flotilla::agent {

enum class CgroupVersion {
  kAuto,  // detect from the mount table: v2 when it carries cpu and memory, else v1
  kV1,
  kV2,
};

// "v1", "v2", "auto".
std::string_view cgroupVersionName(CgroupVersion version);

// One cgroup file system mount from /proc/self/mountinfo.
struct CgroupMount {
  std::string mount_point;
  bool unified = false;                  // cgroup2
  std::vector<std::string> controllers;  // v1: the controllers it carries (from its options)
};

// Parses the cgroup and cgroup2 lines of a mountinfo text (proc(5)); others are skipped.
// Octal escapes in mount points ("\040" for a space) are decoded.
absl::StatusOr<std::vector<CgroupMount>> parseCgroupMounts(std::string_view mountinfo);

// Where the manager found its hierarchies.
struct CgroupLayout {
  CgroupVersion version = CgroupVersion::kV2;
  // v2: the unified hierarchy's mount point and the controllers the parent gets.
  std::string unified;
  std::vector<std::string> unified_controllers;
  // v1: each hierarchy the manager uses and its controllers (of cpu, cpuacct, memory, pids).
  struct Hierarchy {
    std::string mount_point;
    std::vector<std::string> controllers;
  };
  std::vector<Hierarchy> hierarchies;

  // "cgroup v2 at /sys/fs/cgroup (cpu memory pids)" or "cgroup v1: cpu at ..., ...".
  std::string describe() const;
};

// Finds the layout. kV2: `root` is the unified hierarchy (its cgroup.controllers must list
// cpu and memory). kV1: root/cpu, root/cpuacct, root/memory and root/pids, those that exist.
// kAuto: the mounts of `mountinfo_path` at or below `root`: a cgroup2 mount offering cpu and
// memory, else the v1 hierarchies carrying cpu, cpuacct, memory (required) and pids. Errors
// say what is missing and what to mount.
absl::StatusOr<CgroupLayout> detectCgroupLayout(CgroupFilesystem& fs, CgroupVersion version,
                                                const std::string& root,
                                                const std::string& mountinfo_path);

}  // namespace flotilla::agent
