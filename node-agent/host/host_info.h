// What the agent reports about its host: the inventory (hostname, CPUs, the Flotilla CPU
// models the host can run, memory, huge pages) and the load (CPU utilisation between two
// samples of /proc/stat, available memory, load average), and per process (a VMM) its CPU
// time, resident memory and start time. Everything comes from /proc and /sys (proc(5),
// Documentation/admin-guide/mm/hugetlbpage.rst); HostPaths points elsewhere in unit tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::agent {

struct HostPaths {
  std::string proc = "/proc";
  std::string sys = "/sys";
  // Clock ticks per second of /proc's tick counts; 0: sysconf(_SC_CLK_TCK).
  long clock_ticks = 0;
};

// ---- Inventory ----

struct HugePagePool {
  uint64_t page_bytes = 0;  // 2 MiB, 1 GiB, ...
  uint64_t total = 0;       // pages reserved (nr_hugepages)
  uint64_t free = 0;        // of them not in use
};

// Whether the host can run one of the VMM's CPU models (vmm/vcpu/cpuid.h) and what it lacks.
struct CpuModelSupport {
  std::string model;                 // "host", "x86-64-v2", "x86-64-v3"
  std::vector<std::string> missing;  // /proc/cpuinfo flag names; empty: runnable
  bool runnable() const { return missing.empty(); }
};

struct HostInventory {
  std::string hostname;
  uint32_t cpu_count = 0;              // logical CPUs ("processor" entries of /proc/cpuinfo)
  std::string cpu_model_name;          // "AMD EPYC 7B13"
  std::vector<std::string> cpu_flags;  // sorted
  std::vector<CpuModelSupport> cpu_models;
  uint64_t memory_total_bytes = 0;
  std::vector<HugePagePool> huge_pages;  // by page size, ascending

  // The names of the runnable CPU models, in cpuModelSupport() order.
  std::vector<std::string> runnableCpuModels() const;
};

// Reads the inventory: <proc>/sys/kernel/hostname, <proc>/cpuinfo, <proc>/meminfo and
// <sys>/kernel/mm/hugepages/hugepages-*/{nr,free}_hugepages (no such directory: no pools).
absl::StatusOr<HostInventory> readHostInventory(const HostPaths& paths = {});

// Which of the VMM's CPU models a host with these /proc/cpuinfo flags can run. The feature
// lists are those of vmm/vcpu/cpuid.cc under their /proc/cpuinfo names (sse3 is "pni",
// sse4.1 "sse4_1", lzcnt "abm"): every model needs the x86-64 baseline ("host" only that);
// x86-64-v2 adds cx16 lahf_lm pni popcnt sse4_1 sse4_2 ssse3; x86-64-v3 adds avx avx2 bmi1
// bmi2 f16c fma abm movbe xsave. The VMM checks again against KVM's CPUID when a VM starts:
// a hypervisor can offer guests less than its kernel's flags show.
std::vector<CpuModelSupport> cpuModelSupport(const std::vector<std::string>& cpu_flags);

// Parsed /proc/cpuinfo (x86 layout: "key\t: value" lines, a blank line between CPUs).
struct CpuInfo {
  uint32_t cpu_count = 0;
  std::string model_name;
  std::vector<std::string> flags;  // of the first CPU, sorted
};
absl::StatusOr<CpuInfo> parseCpuInfo(std::string_view text);

// ---- Load ----

// The aggregate "cpu" line of /proc/stat, in clock ticks.
struct CpuTimes {
  uint64_t user = 0;  // includes guest time
  uint64_t nice = 0;  // includes guest_nice time
  uint64_t system = 0;
  uint64_t idle = 0;
  uint64_t iowait = 0;
  uint64_t irq = 0;
  uint64_t softirq = 0;
  uint64_t steal = 0;

  uint64_t total() const { return user + nice + system + idle + iowait + irq + softirq + steal; }
};
absl::StatusOr<CpuTimes> parseCpuTimes(std::string_view proc_stat);
absl::StatusOr<CpuTimes> readCpuTimes(const HostPaths& paths = {});

// Shares of the time between two samples, each 0..1, summing with idle and iowait to 1.
struct CpuUtilisation {
  double busy = 0;   // user, nice, system, irq, softirq and steal: not available to us
  double steal = 0;  // of which taken by the hypervisor (a host that is itself a VM)
};
// From `before` to `after` (a later sample). Counters that went backwards, or no ticks in
// between, give all zeros.
CpuUtilisation cpuUtilisation(const CpuTimes& before, const CpuTimes& after);

struct HostLoad {
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;  // MemAvailable: what can be had without swapping
  double load1 = 0;
  double load5 = 0;
  double load15 = 0;
};
// Reads <proc>/meminfo and <proc>/loadavg.
absl::StatusOr<HostLoad> readHostLoad(const HostPaths& paths = {});

// ---- Processes ----

struct ProcessStats {
  pid_t pid = 0;
  std::string comm;     // the command name (at most 15 characters)
  char state = '?';     // R, S, D, Z, ...
  uint64_t cpu_ns = 0;  // user + system time of all its threads (utime + stime)
  uint64_t rss_bytes = 0;
  // Clock ticks after boot when it started (field 22 of /proc/PID/stat). With the pid it
  // names a process for good: a pid reused later has a later start time.
  uint64_t start_time = 0;
};
// NotFound when the process does not exist.
absl::StatusOr<ProcessStats> readProcessStats(pid_t pid, const HostPaths& paths = {});

// The fields of a /proc/PID/stat line (pid, comm, state, utime + stime in ticks, start time).
struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  uint64_t cpu_ticks = 0;
  uint64_t start_time = 0;
};
absl::StatusOr<ProcStat> parseProcStat(std::string_view line);

// A process as the agent records it to recognise its VMM after a restart.
struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;
};
// True when process `identity.pid` exists (and is not a zombie) and started at
// `identity.start_time`: the same process, not a later one that reuses the pid.
absl::StatusOr<bool> isSameProcess(const ProcessIdentity& identity, const HostPaths& paths = {});

}  // namespace flotilla::agent
