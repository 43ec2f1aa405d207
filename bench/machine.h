// What the whole-host benchmarks (agent_bench, drain_bench) ask of the machine, and the
// versions they print: root, /dev/kvm, the host tools and the programs of the build.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace flotilla::bench {

// A program a benchmark runs, and the Debian package that has it.
struct HostTool {
  std::string program;
  std::string package;
};

// The tools every benchmark that makes simulated hosts needs: etcd, Open vSwitch, iproute2,
// nsenter, ethtool.
std::vector<HostTool> simulatedHostTools();

// OK when this runs as root (`why` says what for), /dev/kvm is read-write, every tool is on
// the PATH and every built file is readable; otherwise an error that names what is missing and
// how to get it (its package, deploy/build.sh).
absl::Status requireMachine(std::string_view why, const std::vector<HostTool>& tools,
                            const std::vector<std::string>& built);

// The first line `argv` prints (e.g. {"etcd", "--version"}), or "unknown".
std::string programVersion(const std::vector<std::string>& argv);

}  // namespace flotilla::bench
