// The whole-host benchmarks' machine checks (see machine.h).
#include "bench/machine.h"

#include <unistd.h>

#include <cerrno>

#include "common/command.h"
#include "common/status.h"
#include "fmt/format.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla::bench {

std::vector<HostTool> simulatedHostTools() {
  return {{"etcd", "etcd-server"},
          {"ovs-vswitchd", "openvswitch-switch"},
          {"ovsdb-server", "openvswitch-switch"},
          {"ovs-vsctl", "openvswitch-common"},
          {"ip", "iproute2"},
          {"nsenter", "util-linux"},
          {"ethtool", "ethtool"}};
}

absl::Status requireMachine(std::string_view why, const std::vector<HostTool>& tools,
                            const std::vector<std::string>& built) {
  RETURN_IF_ERROR(testing::requireRoot(why));
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    return errnoStatus(errno, "the VMs need read-write access to /dev/kvm");
  }
  for (const HostTool& tool : tools) {
    RETURN_IF_ERROR(testing::findProgram(tool.program, tool.package).status());
  }
  for (const std::string& file : built) {
    if (::access(file.c_str(), R_OK) != 0) {
      return errnoStatus(errno, fmt::format("{} (build it: deploy/build.sh)", file));
    }
  }
  return absl::OkStatus();
}

std::string programVersion(const std::vector<std::string>& argv) {
  SystemCommandRunner runner;
  auto out = runChecked(runner, argv);
  if (!out.ok()) return "unknown";
  return out->substr(0, out->find('\n'));
}

}  // namespace flotilla::bench
