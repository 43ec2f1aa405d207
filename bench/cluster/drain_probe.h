// drain_bench's view from a client: a namespace on VLAN 100 of a host's integration bridge
// (network "blue"), from which it checks that VMs answer UDP echo and runs the UDP prober
// (bench/probe/udp_prober.h) in the background while VMs move.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "bench/probe/udp_prober.h"
#include "common/unique_fd.h"
#include "tests/integration/node-agent/agent_host.h"
#include "tests/support/netns.h"

namespace flotilla::bench {

// A namespace with eth0 (10.78.0.1/24) plugged into `host`'s br-int as an access port of
// VLAN 100; removed (namespace, veth, port) on destruction.
class ProbeClient {
 public:
  static absl::StatusOr<std::unique_ptr<ProbeClient>> attach(agent::testing::AgentHost& host);
  ~ProbeClient();

  const testing::NetNamespace& ns() const { return *ns_; }
  // Whether `ip` answers a UDP echo within `timeout` (one probe every 200 ms).
  bool answers(const std::string& ip, absl::Duration timeout);
  // Every target answers within `timeout` each; the error names those that do not.
  absl::Status allAnswer(const std::vector<probe::ProbeTarget>& targets, absl::Duration timeout);

 private:
  ProbeClient() = default;

  agent::testing::AgentHost* host_ = nullptr;
  std::unique_ptr<testing::NetNamespace> ns_;
  std::optional<testing::VethPair> veth_;
  UniqueFd socket_;
  int sequence_ = 0;
};

// A UdpProber run inside `ns` until the options' duration or count, from a thread that joined
// the namespace; returns its report.
absl::StatusOr<probe::ProbeReport> probeInside(const testing::NetNamespace& ns,
                                               std::vector<probe::ProbeTarget> targets,
                                               const probe::ProbeOptions& options);

// A UdpProber running on a thread inside the client's namespace from start() until stop().
class BackgroundProber {
 public:
  // Returns once the prober sends its first round (or with the error that kept it from
  // starting).
  static absl::StatusOr<std::unique_ptr<BackgroundProber>> start(
      const testing::NetNamespace& ns, std::vector<probe::ProbeTarget> targets,
      const probe::ProbeOptions& options);
  // Stops it if stop() was not called.
  ~BackgroundProber();

  // Stops sending, waits for the last replies (the options' linger) and returns the report.
  absl::StatusOr<probe::ProbeReport> stop();
  // When the first round was sent (monotonic clock, common/clock.h): the origin of the
  // report's offsets (TargetReport::longest_gap_start).
  absl::Duration startedAt() const { return started_at_; }
  // The same instant on the wall clock, to line gaps up with the moves' records.
  absl::Time startedAtWall() const { return started_wall_; }

 private:
  BackgroundProber() = default;

  UniqueFd stop_fd_;            // eventfd: readable = stop
  absl::Notification running_;  // the first round went out, or run() ended
  bool started_ = false;        // set before running_ when the first round went out
  absl::Duration started_at_ = absl::ZeroDuration();
  absl::Time started_wall_;
  std::optional<absl::StatusOr<probe::ProbeReport>> result_;
  std::jthread thread_;
};

}  // namespace flotilla::bench
