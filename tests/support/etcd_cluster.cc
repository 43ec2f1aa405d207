// A real etcd cluster for integration tests (see etcd_cluster.h).
#include "tests/support/etcd_cluster.h"

#include <fcntl.h>
#include <signal.h>

#include <utility>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/etcd/client.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::testing {
namespace {

constexpr int kStartAttempts = 3;

}  // namespace

EtcdCluster::EtcdCluster(std::string etcd_binary, std::vector<Member> members, std::string address)
    : etcd_binary_(std::move(etcd_binary)),
      address_(std::move(address)),
      members_(std::move(members)) {}

EtcdCluster::~EtcdCluster() {
  for (Member& member : members_) {
    if (member.process.valid()) (void)member.process.terminate(absl::Seconds(5));
  }
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::start(int members, std::string address,
                                                                const PortPicker& pick_port) {
  ASSIGN_OR_RETURN(std::string etcd, findProgram("etcd", "etcd-server"));
  absl::Status last;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    std::vector<Member> list(static_cast<size_t>(members));
    for (int i = 0; i < members; ++i) {
      Member& member = list[static_cast<size_t>(i)];
      member.name = fmt::format("n{}", i);
      ASSIGN_OR_RETURN(member.client_port, pick_port());
      ASSIGN_OR_RETURN(member.peer_port, pick_port());
    }
    std::unique_ptr<EtcdCluster> cluster(new EtcdCluster(etcd, std::move(list), address));
    last = cluster->launchAll();
    if (last.ok()) return cluster;
    // A port picked free can be taken before etcd binds it (by any connection's local port):
    // start over on new ports. The failed attempt's members go with `cluster`.
    if (!cluster->lostAPortRace()) return last;
  }
  return annotate(last,
                  fmt::format("starting etcd ({} attempts, each on new ports)", kStartAttempts));
}

absl::Status EtcdCluster::launchAll() {
  for (int i = 0; i < size(); ++i) RETURN_IF_ERROR(launch(i, /*initial=*/true));
  for (int i = 0; i < size(); ++i) RETURN_IF_ERROR(waitHealthy(i, absl::Seconds(60)));
  return absl::OkStatus();
}

bool EtcdCluster::lostAPortRace() const {
  for (int i = 0; i < size(); ++i) {
    if (absl::StrContains(logTail(i), "address already in use")) return true;
  }
  return false;
}

std::string EtcdCluster::clientEndpoint(int member) const {
  return fmt::format("{}:{}", address_, members_[static_cast<size_t>(member)].client_port);
}

std::vector<std::string> EtcdCluster::clientEndpoints() const {
  std::vector<std::string> endpoints;
  for (int i = 0; i < size(); ++i) endpoints.push_back(clientEndpoint(i));
  return endpoints;
}

std::string EtcdCluster::dataDir(int member) const {
  return dir_.file(members_[static_cast<size_t>(member)].name);
}

std::string EtcdCluster::logFile(int member) const {
  return dir_.file(members_[static_cast<size_t>(member)].name + ".log");
}

std::string EtcdCluster::logTail(int member) const {
  return fileTail(logFile(member));
}

absl::Status EtcdCluster::launch(int member, bool initial) {
  std::vector<std::string> peers;
  for (const Member& m : members_) {
    peers.push_back(fmt::format("{}=http://{}:{}", m.name, address_, m.peer_port));
  }
  Member& self = members_[static_cast<size_t>(member)];
  std::string client_url = fmt::format("http://{}:{}", address_, self.client_port);
  std::string peer_url = fmt::format("http://{}:{}", address_, self.peer_port);

  UniqueFd log(::open(logFile(member).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) return errnoStatus(errno, fmt::format("opening {}", logFile(member)));

  SpawnOptions options;
  options.argv = {etcd_binary_,
                  "--name",
                  self.name,
                  "--data-dir",
                  dataDir(member),
                  "--listen-client-urls",
                  client_url,
                  "--advertise-client-urls",
                  client_url,
                  "--listen-peer-urls",
                  peer_url,
                  "--initial-advertise-peer-urls",
                  peer_url,
                  "--initial-cluster",
                  fmt::format("{}", fmt::join(peers, ",")),
                  "--initial-cluster-token",
                  "flotilla-test",
                  "--initial-cluster-state",
                  initial ? "new" : "existing",
                  "--heartbeat-interval",
                  "50",
                  "--election-timeout",
                  "500",
                  "--logger",
                  "zap",
                  "--log-outputs",
                  "stderr"};
  options.fds = {{1, log.get()}, {2, log.get()}};
  ASSIGN_OR_RETURN(self.process, ChildProcess::spawn(options));
  return absl::OkStatus();
}

absl::Status EtcdCluster::kill(int member) {
  ChildProcess& process = members_[static_cast<size_t>(member)].process;
  RETURN_IF_ERROR(process.signal(SIGKILL));
  return process.wait(absl::Seconds(30)).status();
}

absl::Status EtcdCluster::restart(int member) {
  RETURN_IF_ERROR(launch(member, /*initial=*/false));
  return waitHealthy(member, absl::Seconds(60));
}

absl::Status EtcdCluster::waitHealthy(int member, absl::Duration timeout) {
  etcd::ClientOptions options;
  options.endpoints = {clientEndpoint(member)};
  options.request_timeout = absl::Seconds(1);
  options.attempt_timeout = absl::Seconds(1);
  ASSIGN_OR_RETURN(std::unique_ptr<etcd::EtcdClient> client, etcd::EtcdClient::connect(options));
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  absl::Status last;
  while (clock.monotonicNow() < deadline) {
    last = client->get("health-probe").status();
    if (last.ok()) return absl::OkStatus();
    auto exited = members_[static_cast<size_t>(member)].process.wait(absl::ZeroDuration());
    if (exited.ok()) {
      return absl::InternalError(fmt::format("etcd member {} {}; its log ends with:\n{}", member,
                                             exited->describe(), logTail(member)));
    }
    clock.sleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      fmt::format("etcd member {} not healthy after {}: {}; its log ends with:\n{}", member,
                  absl::FormatDuration(timeout), last.message(), logTail(member)));
}

}  // namespace flotilla::testing
