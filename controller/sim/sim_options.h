// What the agent simulator simulates: how many hosts, their shapes (CPUs, memory), what they
// report (CPU models, pools, networks), how its VMs load them, and how it talks to etcd
// (docs/simulator.md). Also the deterministic per-VM figures (CPU and memory use) that give
// the rebalancer something to do.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace flotilla::sim {

// CPUs and memory of a simulated host.
struct HostShape {
  uint32_t cpus = 16;
  uint64_t memory_bytes = uint64_t{64} << 30;

  friend bool operator==(const HostShape&, const HostShape&) = default;
};

// Parses "16:64G,32:128G" (CPUS:MEMORY, memory as parseByteSize takes it). Errors quote the
// piece that is wrong and show an example.
absl::StatusOr<std::vector<HostShape>> parseHostShapes(std::string_view text);

// The x86-64 baselines the real agent derives from /proc/cpuinfo (node-agent/host/host_info.cc),
// all runnable on a simulated host.
std::vector<std::string> defaultCpuModels();
std::vector<std::string> defaultCpuFlags();

struct SimulatorOptions {
  // etcd members ("host:port"); empty: nothing is written to etcd (the AgentService alone,
  // for unit tests).
  std::vector<std::string> etcd_endpoints;
  std::string key_prefix = "/flotilla/v1/";

  int hosts = 10;
  std::string prefix = "sim";  // host names PREFIX-0001, PREFIX-0002, ...
  int first_index = 1;
  // Host i (0-based) gets shapes[i % shapes.size()].
  std::vector<HostShape> shapes = {HostShape{}};
  std::string cpu_model_name = "Flotilla Simulated CPU @ 2.0GHz";
  std::vector<std::string> cpu_flags = defaultCpuFlags();
  std::vector<std::string> cpu_models = defaultCpuModels();
  std::vector<std::string> pools = {"shared"};  // every host reaches every pool
  std::vector<std::string> networks;            // reported besides those of VM NICs

  // AgentService for every host ("127.0.0.1:0": a free port).
  std::string listen = "127.0.0.1:0";
  // What HostStatus.migration_address says, and the host part of PrepareIncoming's address;
  // empty: the host part of the listen address.
  std::string migration_address;

  absl::Duration report_interval = absl::Seconds(3);
  absl::Duration lease_ttl = absl::Seconds(10);
  // etcd writers: reports and lease grants run on this many threads.
  int report_threads = 8;

  // How long a simulated live migration stays in "precopy" before it completes.
  absl::Duration migration_duration = absl::Milliseconds(200);
  // Each running VM uses a fraction of its vCPUs drawn from [min, max], and a fraction of its
  // memory from [memory_min, memory_max], both fixed by a hash of its name.
  double vm_cpu_min = 0.05;
  double vm_cpu_max = 0.95;
  double vm_memory_min = 0.3;
  double vm_memory_max = 0.9;

  Clock* clock = nullptr;  // nullptr: systemClock(); tests pass a FakeClock
};

// Checks the options (host count, shapes, fractions, durations); InvalidArgument naming the
// option otherwise.
absl::Status validateOptions(const SimulatorOptions& options);

// "sim-0001" for prefix "sim" and index 1 (at least four digits).
std::string hostName(std::string_view prefix, int index);

// A number in [0, 1) fixed by `key` (FNV-1a), the same on every run and machine.
double stableFraction(std::string_view key);

// The share of its vCPUs and of its memory a running VM named `vm` uses.
double vmCpuFraction(const SimulatorOptions& options, std::string_view vm);
double vmMemoryFraction(const SimulatorOptions& options, std::string_view vm);

}  // namespace flotilla::sim
