// flotilla-controller replicas for cluster_bench (see controller_replicas.h).
#include "bench/cluster/controller_replicas.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/rpc/channel.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "fmt/ranges.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"

namespace flotilla::bench {

std::unique_ptr<grpc::ClientContext> callContext(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(deadlineAfter(timeout));
  return context;
}

ControllerReplicas::~ControllerReplicas() {
  for (Replica& replica : replicas_) {
    if (replica.process.valid()) (void)replica.process.terminate(absl::ZeroDuration());
  }
}

std::string ControllerReplicas::configPath(int index) const {
  return dir_.file(name(index) + ".yaml");
}

std::string ControllerReplicas::logPath(int index) const {
  return dir_.file(name(index) + ".log");
}

absl::Status ControllerReplicas::writeConfig(int index) const {
  const std::string config = fmt::format(
      "name: {}\n"
      "listen: 127.0.0.1:{}\n"
      "plaintext: true\n"
      "etcd:\n"
      "  endpoints: [{}]\n"
      "agents:\n"
      "  plaintext: true\n"
      "election_ttl: {}\n"
      "host_fence_timeout: {}\n"
      "scheduler: {{strategy: spread, cpu_overcommit: 4.0, memory_overcommit: 1.0}}\n"
      "migrations: {{per_source: 2, per_target: 2, per_cluster: 8, downtime_limit_ms: 300}}\n"
      "rebalance: {{automatic: false, interval: 60s, threshold: 0.1, max_moves: 10, cooldown: "
      "10m}}\n"
      "log: {{level: {}}}\n",
      name(index), replicas_[static_cast<size_t>(index)].port,
      fmt::join(settings_.etcd_endpoints, ", "), absl::FormatDuration(settings_.election_ttl),
      absl::FormatDuration(settings_.host_fence_timeout), settings_.log_level);
  return writeFileAtomically(configPath(index), config);
}

absl::Status ControllerReplicas::start(int index) {
  if (index >= size()) replicas_.resize(static_cast<size_t>(index) + 1);
  Replica& replica = replicas_[static_cast<size_t>(index)];
  if (replica.process.valid()) return absl::OkStatus();
  if (replica.port == 0) {
    ASSIGN_OR_RETURN(replica.port, testing::pickFreePort());
    replica.stub = flotilla::v1::ClusterService::NewStub(grpc::CreateChannel(
        fmt::format("127.0.0.1:{}", replica.port), grpc::InsecureChannelCredentials()));
  }
  RETURN_IF_ERROR(writeConfig(index));
  UniqueFd log(::open(logPath(index).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) return errnoStatus(errno, fmt::format("opening {}", logPath(index)));
  SpawnOptions options;
  options.argv = {settings_.binary, "--config", configPath(index)};
  options.fds = {{1, log.get()}, {2, log.get()}};
  ASSIGN_OR_RETURN(replica.process, ChildProcess::spawn(options));
  {
    absl::MutexLock lock(&pids_mu_);
    pids_[index] = replica.process.pid();
    // Interrupted meanwhile: this one goes too.
    if (killed_all_) ::kill(replica.process.pid(), SIGKILL);
  }
  // Serving once it answers; an exit before that is the start's failure.
  auto forget = [&] {
    {
      absl::MutexLock lock(&pids_mu_);
      pids_.erase(index);
    }
    // Reaped only now, so that killAllNow() never signals a PID that was freed.
    absl::StatusOr<ExitStatus> how = replica.process.terminate(absl::ZeroDuration());
    replica.process = ChildProcess();
    return how.ok() ? how->describe() : std::string(how.status().message());
  };
  const absl::Duration deadline = systemClock().monotonicNow() + absl::Seconds(60);
  while (true) {
    if (info(index, absl::Seconds(2)).ok()) return absl::OkStatus();
    pollfd exit_fd{.fd = replica.process.pidfd(), .events = POLLIN, .revents = 0};
    if (::poll(&exit_fd, 1, 50) > 0) {
      const std::string how = forget();
      return absl::UnavailableError(fmt::format("{} {} before serving; the end of its log:\n{}",
                                                name(index), how, logTail(index)));
    }
    if (systemClock().monotonicNow() > deadline) {
      forget();
      return absl::DeadlineExceededError(fmt::format(
          "{} did not answer GetClusterInfo on port {} within 60 s; the end of its log:\n{}",
          name(index), replica.port, logTail(index)));
    }
  }
}

absl::Status ControllerReplicas::kill(int index, int sig) {
  Replica& replica = replicas_[static_cast<size_t>(index)];
  {
    absl::MutexLock lock(&pids_mu_);
    pids_.erase(index);
  }
  RETURN_IF_ERROR(replica.process.signal(sig));
  RETURN_IF_ERROR(replica.process.wait(absl::Seconds(30)).status());
  replica.process = ChildProcess();
  return absl::OkStatus();
}

void ControllerReplicas::killAllNow() {
  absl::MutexLock lock(&pids_mu_);
  killed_all_ = true;
  // Not yet reaped, so none of these PIDs can belong to another process.
  for (const auto& [index, pid] : pids_) ::kill(pid, SIGKILL);
}

bool ControllerReplicas::running(int index) const {
  return index < size() && replicas_[static_cast<size_t>(index)].process.valid();
}

pid_t ControllerReplicas::pid(int index) const {
  return replicas_[static_cast<size_t>(index)].process.pid();
}

int ControllerReplicas::indexOf(const std::string& replica_name) const {
  for (int i = 0; i < size(); ++i) {
    if (name(i) == replica_name) return i;
  }
  return -1;
}

std::string ControllerReplicas::logTail(int index) const {
  return testing::fileTail(logPath(index), 3000);
}

std::string ControllerReplicas::address(int index) const {
  return fmt::format("127.0.0.1:{}", replicas_[static_cast<size_t>(index)].port);
}

flotilla::v1::ClusterService::Stub& ControllerReplicas::client(int index) {
  return *replicas_[static_cast<size_t>(index)].stub;
}

absl::StatusOr<flotilla::v1::ClusterInfo> ControllerReplicas::info(int index,
                                                                   absl::Duration timeout) {
  auto context = callContext(timeout);
  flotilla::v1::ClusterInfo info;
  grpc::Status status =
      client(index).GetClusterInfo(context.get(), flotilla::v1::GetClusterInfoRequest(), &info);
  if (!status.ok()) return fromGrpcStatus(status, name(index) + " GetClusterInfo");
  return info;
}

absl::StatusOr<std::string> ControllerReplicas::leader() {
  absl::Status last = absl::UnavailableError("no controller replica is running");
  for (int i = 0; i < size(); ++i) {
    if (!running(i)) continue;
    auto got = info(i, absl::Seconds(2));
    if (got.ok()) return got->leader();
    last = got.status();
  }
  return last;
}

absl::StatusOr<std::string> ControllerReplicas::waitForLeader(const std::string& not_this,
                                                              absl::Duration timeout) {
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  std::string seen;
  while (systemClock().monotonicNow() < deadline) {
    for (int i = 0; i < size(); ++i) {
      if (!running(i)) continue;
      auto got = info(i, absl::Seconds(1));
      if (!got.ok()) continue;
      seen = got->leader();
      if (!seen.empty() && seen != not_this) return seen;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::DeadlineExceededError(
      fmt::format("no controller replica reported a new leader within {} (last seen: '{}')",
                  absl::FormatDuration(timeout), seen));
}

double ControllerReplicas::cpuSeconds(int index) const {
  auto stat = readFileToString(fmt::format("/proc/{}/stat", pid(index)), 4096);
  if (!stat.ok()) return 0;
  // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat->substr(close + 2), ' ');
  double ticks = 0;
  for (size_t field : {size_t{11}, size_t{12}}) {
    double value = 0;
    if (field < fields.size() && absl::SimpleAtod(fields[field], &value)) ticks += value;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double ControllerReplicas::peakRssMib(int index) const {
  auto status = readFileToString(fmt::format("/proc/{}/status", pid(index)), 1 << 16);
  if (!status.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmHWM:")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, " kB");
    double kib = 0;
    if (absl::SimpleAtod(line, &kib)) return kib / 1024;
  }
  return 0;
}

}  // namespace flotilla::bench
