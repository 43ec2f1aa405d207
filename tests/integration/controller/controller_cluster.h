// A whole cluster for the controller's integration tests: a cluster network (bridge), an
// etcd cluster on it, a tgtd storage daemon, simulated hosts (network namespaces with their
// own OVS and flotilla-agent, joined by VXLAN; agent_host.h) and flotilla-controller
// replicas as processes in this namespace. Host 0's agent manages the iSCSI pool "san" on
// the tgtd. Everything is removed by name and PID when the object goes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "flotilla/v1/cluster.grpc.pb.h"
#include "tests/integration/node-agent/agent_host.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"

namespace flotilla::controller::testing {

struct ControllerClusterOptions {
  int hosts = 3;
  int controllers = 3;
  int etcd_members = 3;
  bool storage = true;  // tgtd and the pool "san" on host 0's agent
  absl::Duration lease_ttl = absl::Seconds(4);
  absl::Duration fence_after = absl::Seconds(2);
  absl::Duration host_fence_timeout = absl::Seconds(2);
  absl::Duration election_ttl = absl::Seconds(2);
  std::string controller_config{};  // more YAML appended to each replica's configuration
  // More entries of host INDEX's `pools:` list (YAML, indented like "  - name: ..."); the
  // network gives the hosts' addresses.
  std::function<std::string(int index, const agent::testing::ClusterNetwork& network)> more_pools{};
};

class ControllerCluster {
 public:
  static absl::StatusOr<std::unique_ptr<ControllerCluster>> start(ControllerClusterOptions options);
  ~ControllerCluster();

  v1::ClusterService::Stub& api(int replica) { return *stubs_[static_cast<size_t>(replica)]; }
  // Runs `call` against each live replica in turn until one answers (not UNAVAILABLE).
  grpc::Status call(
      const std::function<grpc::Status(v1::ClusterService::Stub&, grpc::ClientContext&)>& call);
  // The leading replica's index, once one leads (up to `timeout`).
  absl::StatusOr<int> waitForLeader(absl::Duration timeout, int not_this = -1);
  absl::Status killController(int replica);  // SIGKILL
  bool controllerAlive(int replica) const;
  std::string controllerLog(int replica) const;
  std::string logs() const;  // every controller's log tail, and tgtd's

  agent::testing::AgentHost& host(int index) { return *hosts_[static_cast<size_t>(index)]; }
  int hostCount() const { return static_cast<int>(hosts_.size()); }
  ::flotilla::testing::EtcdCluster& etcd() { return *etcd_; }
  const agent::testing::ClusterNetwork& network() const { return *network_; }
  std::string portal() const;

  // Polls GetVm until `done` holds (or `timeout`); the last VM read, or an error.
  absl::StatusOr<v1::Vm> waitForVm(const std::string& name,
                                   const std::function<bool(const v1::Vm&)>& done,
                                   absl::Duration timeout);

 private:
  ControllerCluster() = default;
  absl::Status startController(int replica);

  ControllerClusterOptions options_;
  ::flotilla::testing::TempDir dir_;
  std::unique_ptr<agent::testing::ClusterNetwork> network_;
  std::unique_ptr<::flotilla::testing::EtcdCluster> etcd_;
  std::unique_ptr<::flotilla::testing::TgtDaemon> tgtd_;
  std::vector<std::unique_ptr<agent::testing::AgentHost>> hosts_;
  std::vector<std::string> listen_;
  std::vector<ChildProcess> controllers_;
  std::vector<std::unique_ptr<v1::ClusterService::Stub>> stubs_;
};

// A VM spec for the test guest answering UDP echo at `ip` on network "blue", with its disk
// san/VOLUME (none when `volume` is empty).
v1::CreateVmClusterRequest testVm(const std::string& name, const std::string& ip,
                                  const std::string& volume, bool ha);

}  // namespace flotilla::controller::testing
