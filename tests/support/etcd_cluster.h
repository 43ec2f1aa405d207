// EtcdCluster: a real etcd cluster on loopback for integration tests, with members that can
// be killed and restarted. Every member is a child process owned by this object and killed
// by PID when it is destroyed; data and logs live in a private temporary directory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "tests/support/test_env.h"

namespace flotilla::testing {

class EtcdCluster {
 public:
  // Starts `members` members (election timings of 50/500 ms, so that failover takes about a
  // second) and waits until every member answers a linearizable read. A member that could not
  // bind its port (taken since it was picked) starts the cluster over on new ports.
  // Members listen on `address` (an address of this host: loopback, or a bridge that test
  // namespaces reach).
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> start(
      int members = 3, std::string address = "127.0.0.1",
      const PortPicker& pick_port = pickFreePort);
  ~EtcdCluster();

  int size() const { return static_cast<int>(members_.size()); }
  std::string clientEndpoint(int member) const;
  std::vector<std::string> clientEndpoints() const;

  // SIGKILL, as a crash would.
  absl::Status kill(int member);
  // Starts a killed member again with its data directory and ports.
  absl::Status restart(int member);
  // Waits until the member answers a linearizable read.
  absl::Status waitHealthy(int member, absl::Duration timeout);

  // The end of a member's log, for failure messages.
  std::string logTail(int member) const;

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    ChildProcess process;
  };

  EtcdCluster(std::string etcd_binary, std::vector<Member> members, std::string address);
  absl::Status launch(int member, bool initial);
  // Launches every member of a new cluster and waits until each is healthy.
  absl::Status launchAll();
  // Whether a member's log says that its port was taken.
  bool lostAPortRace() const;
  std::string dataDir(int member) const;
  std::string logFile(int member) const;

  const std::string etcd_binary_;
  const std::string address_;
  TempDir dir_;
  std::vector<Member> members_;
};

}  // namespace flotilla::testing
