// ControllerReplicas: flotilla-controller replicas (ctl-1, ctl-2, ...) started and killed by
// PID for cluster_bench, each with its own configuration file, log and ClusterService port, and
// a ClusterService client per replica.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "flotilla/v1/cluster.grpc.pb.h"
#include "tests/support/test_env.h"

namespace flotilla::bench {

struct ControllerSettings {
  std::string binary;  // flotilla-controller
  std::vector<std::string> etcd_endpoints;
  absl::Duration election_ttl = absl::Seconds(2);
  absl::Duration host_fence_timeout = absl::Seconds(5);
  std::string log_level = "info";
};

class ControllerReplicas {
 public:
  // Nothing is started yet; files go to `dir`.
  ControllerReplicas(ControllerSettings settings, const testing::TempDir& dir)
      : settings_(std::move(settings)), dir_(dir) {}
  // Kills every replica still running (SIGKILL, by PID).
  ~ControllerReplicas();

  // Starts replica ctl-N (N = index + 1) and waits until it answers GetClusterInfo.
  absl::Status start(int index);
  // Signals the replica (kill -9 by default; SIGTERM: it resigns and exits) and waits until it
  // is reaped.
  absl::Status kill(int index, int sig = SIGKILL);
  // start() again with the same configuration and port.
  absl::Status restart(int index) { return start(index); }

  int size() const { return static_cast<int>(replicas_.size()); }
  bool running(int index) const;
  pid_t pid(int index) const;
  std::string name(int index) const { return "ctl-" + std::to_string(index + 1); }
  // The index of replica `name` ("ctl-2" → 1), or -1.
  int indexOf(const std::string& name) const;
  std::string logTail(int index) const;

  // host:port of replica `index`'s ClusterService.
  std::string address(int index) const;
  // A ClusterService client of replica `index` (its own channel).
  flotilla::v1::ClusterService::Stub& client(int index);
  // GetClusterInfo from replica `index`.
  absl::StatusOr<flotilla::v1::ClusterInfo> info(int index, absl::Duration timeout);
  // The leader a running replica reports (empty: none), asking each in turn.
  absl::StatusOr<std::string> leader();
  // Waits until a running replica reports a leader other than `not_this` (and any when empty).
  absl::StatusOr<std::string> waitForLeader(const std::string& not_this, absl::Duration timeout);

  // SIGKILL to every replica now, from any thread (the bench's interrupt handler); they are
  // reaped by the destructor or by init.
  void killAllNow();

  // CPU seconds used and peak RSS (MiB) of a running replica, from /proc.
  double cpuSeconds(int index) const;
  double peakRssMib(int index) const;

 private:
  struct Replica {
    uint16_t port = 0;
    ChildProcess process;
    std::unique_ptr<flotilla::v1::ClusterService::Stub> stub;
  };
  std::string configPath(int index) const;
  std::string logPath(int index) const;
  absl::Status writeConfig(int index) const;

  const ControllerSettings settings_;
  const testing::TempDir& dir_;
  std::vector<Replica> replicas_;
  // The PIDs of the running replicas, for killAllNow() from another thread.
  absl::Mutex pids_mu_;
  std::map<int, pid_t> pids_ ABSL_GUARDED_BY(pids_mu_);
  bool killed_all_ ABSL_GUARDED_BY(pids_mu_) = false;
};

// A ClusterService call's deadline and status in one.
std::unique_ptr<grpc::ClientContext> callContext(absl::Duration timeout);

}  // namespace flotilla::bench
