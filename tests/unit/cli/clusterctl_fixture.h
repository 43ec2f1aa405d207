// The fixture of clusterctl's unit tests: a FakeClusterServer with a small cluster in it, and
// run() to call runClusterctl in-process against it with a private HOME and a fixed clock.
#pragma once

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/clusterctl.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "tests/unit/cli/fake_cluster_service.h"

namespace flotilla::cli::testing {

struct RunResult {
  int code = -1;
  std::string out;
  std::string err;
};

// Prints the result on failure.
inline std::ostream& operator<<(std::ostream& os, const RunResult& result) {
  return os << "exit " << result.code << "\n--- out:\n" << result.out << "--- err:\n" << result.err;
}

// A fixed "now": ages in tables are computed from it.
inline absl::Time fixedNow() {
  return absl::FromUnixSeconds(1'800'000'000);
}
inline int64_t millisAgo(int64_t seconds) {
  return absl::ToUnixMillis(fixedNow() - absl::Seconds(seconds));
}

// A unix socket path nothing listens on: an endpoint that refuses connections at once.
inline std::string deadEndpoint(const flotilla::testing::TempDir& dir) {
  return "unix:" + dir.file("dead.sock");
}

class ClusterctlTest : public ::testing::Test {
 protected:
  ClusterctlTest();

  // clusterctl --plaintext --endpoint SERVER ARGS...
  RunResult run(const std::vector<std::string>& args);
  // clusterctl ARGS... (no endpoint given).
  RunResult runRaw(const std::vector<std::string>& args);

  FakeClusterService& fake() { return server_.service(); }

  flotilla::testing::TempDir dir_;
  FakeClusterServer server_;
  std::map<std::string, std::string> env_;  // the environment clusterctl sees
  bool tty_ = false;
  Interrupt* interrupt_ = nullptr;
};

// Fills `service` with: hosts host-a (2 VMs) and host-b (cordoned); vms web1 and web2 running
// on host-a, db1 pending (unschedulable); network net1 (vlan 100); pool shared (iscsi);
// volume shared/web1; migration web1-old (succeeded); drain of host-b (failed); 2 events.
void populateCluster(FakeClusterService& service);

}  // namespace flotilla::cli::testing
