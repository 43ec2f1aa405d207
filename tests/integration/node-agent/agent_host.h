// Simulated hosts for the agent's integration tests: a "cluster network" (a Linux bridge in
// the test's own namespace, with an address that etcd listens on), and hosts that are network
// namespaces plugged into it by a veth, each with its own Open vSwitch (userspace datapath),
// its own flotilla-agent (started with `nsenter --net`) and its own directories. Everything
// is removed by name and PID when the objects go, also after a failed test: the VMMs the
// agent left running (found through its VM records), the agent, OVS, the namespace, the
// bridge and the cgroups.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "flotilla/v1/agent.grpc.pb.h"
#include "tests/support/leftovers.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla::agent::testing {

// A Linux bridge "fltc-<pid>" with ADDRESS.1/24, ADDRESS = 10.<a>.<b> chosen from the pid.
class ClusterNetwork {
 public:
  static absl::StatusOr<std::unique_ptr<ClusterNetwork>> create();
  ~ClusterNetwork();

  const std::string& bridge() const { return bridge_; }
  // "10.a.b.1": this namespace's address on the network (etcd listens there).
  std::string gateway() const { return prefix_ + ".1"; }
  // "10.a.b.(10 + index)".
  std::string hostAddress(int index) const;

 private:
  ClusterNetwork(std::string bridge, std::string prefix)
      : bridge_(std::move(bridge)), prefix_(std::move(prefix)) {}
  std::string bridge_;
  std::string prefix_;
};

struct AgentHostOptions {
  int index = 0;  // host-a is 0, host-b 1, ...
  std::string etcd_endpoint{};
  // The underlay for VXLAN: eth0 goes into OVS's br-phy, which takes the host's address.
  bool tunnels = false;
  absl::Duration lease_ttl = absl::Seconds(4);
  absl::Duration fence_after = absl::Seconds(2);
  // How often the agent refreshes its host report (the agent's own default is 3 s).
  absl::Duration report_interval = absl::Milliseconds(500);
  // TLS for AgentService on TCP (PEM files); empty: plaintext.
  std::string tls_ca{};
  std::string tls_cert{};
  std::string tls_key{};
  // More YAML appended to the agent's configuration (e.g. pools).
  std::string extra_config{};
};

class AgentHost {
 public:
  // Creates the namespace, its veth into `network` (eth0 with hostAddress(index)) and its
  // OVS; does not start the agent.
  static absl::StatusOr<std::unique_ptr<AgentHost>> create(const ClusterNetwork& network,
                                                           AgentHostOptions options);
  ~AgentHost();

  // Writes the configuration, starts flotilla-agent and waits until it answers on its socket.
  absl::Status startAgent();
  // SIGKILL (a crash); its VMMs keep running.
  absl::Status killAgent();
  // SIGTERM, and waits for it to exit.
  absl::Status stopAgent();
  bool agentRunning();
  // SIGKILL to every VMM the agent recorded (with killAgent(): the host dies).
  void killVmms();
  // The agent's process id (nsenter execs flotilla-agent in place); -1 when none was started.
  pid_t agentPid() const { return agent_.pid(); }

  flotilla::v1::AgentService::Stub& api() { return *api_; }
  const ::flotilla::testing::NetNamespace& ns() const { return *ns_; }
  ::flotilla::testing::OvsInstance& ovs() { return *ovs_; }
  const std::string& name() const { return name_; }
  std::string address() const { return address_; }
  std::string poolDir() const { return dir_.file("pool"); }
  std::string stateDir() const { return dir_.file("state"); }
  std::string cgroupParent() const;
  std::string agentLog() const;
  const ::flotilla::testing::TempDir& dir() const { return dir_; }
  // What this host makes that must be gone after it (tests/support/leftovers.h): its
  // namespace, the root end of its veth, its directory, its cgroup, and every process started
  // with its directory on the command line (agent, VMMs, OVS).
  ::flotilla::testing::Traces traces() const;

 private:
  AgentHost(AgentHostOptions options, std::string address);

  const AgentHostOptions options_;
  const std::string name_;
  const std::string address_;
  ::flotilla::testing::TempDir dir_;
  std::unique_ptr<::flotilla::testing::NetNamespace> ns_;
  std::optional<::flotilla::testing::VethPair> veth_;
  std::unique_ptr<::flotilla::testing::OvsInstance> ovs_;
  ChildProcess agent_;
  std::unique_ptr<flotilla::v1::AgentService::Stub> api_;
};

}  // namespace flotilla::agent::testing
