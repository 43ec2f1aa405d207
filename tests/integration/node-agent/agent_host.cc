// Simulated hosts for the agent's integration tests (see agent_host.h).
#include "tests/integration/node-agent/agent_host.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "common/command.h"
#include "common/files.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "fmt/format.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "node-agent/host/cgroup.h"
#include "node-agent/host/host_info.h"
#include "node-agent/vm_record_store.h"

namespace flotilla::agent::testing {

using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::OvsInstance;
using ::flotilla::testing::VethPair;

namespace {

absl::Status run(const std::vector<std::string>& argv) {
  SystemCommandRunner runner;
  return runChecked(runner, argv).status();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterNetwork>> ClusterNetwork::create() {
  RETURN_IF_ERROR(::flotilla::testing::requireRoot("the agent's simulated hosts"));
  const int pid = static_cast<int>(::getpid());
  const std::string bridge = fmt::format("fltc-{}", pid);
  const std::string prefix = fmt::format("10.{}.{}", 100 + pid % 100, (pid / 100) % 250);
  RETURN_IF_ERROR(run({"ip", "link", "add", bridge, "type", "bridge"}));
  std::unique_ptr<ClusterNetwork> network(new ClusterNetwork(bridge, prefix));
  RETURN_IF_ERROR(run({"ip", "address", "add", prefix + ".1/24", "dev", bridge}));
  RETURN_IF_ERROR(run({"ip", "link", "set", bridge, "up"}));
  return network;
}

ClusterNetwork::~ClusterNetwork() {
  absl::Status deleted = run({"ip", "link", "del", bridge_});
  if (!deleted.ok())
    std::fprintf(stderr, "cannot delete bridge %s: %s\n", bridge_.c_str(),
                 std::string(deleted.message()).c_str());
}

std::string ClusterNetwork::hostAddress(int index) const {
  return fmt::format("{}.{}", prefix_, 10 + index);
}

AgentHost::AgentHost(AgentHostOptions options, std::string address)
    : options_(std::move(options)),
      name_(fmt::format("host-{}", static_cast<char>('a' + options_.index))),
      address_(std::move(address)) {}

absl::StatusOr<std::unique_ptr<AgentHost>> AgentHost::create(const ClusterNetwork& network,
                                                             AgentHostOptions options) {
  const int index = options.index;
  std::unique_ptr<AgentHost> host(new AgentHost(std::move(options), network.hostAddress(index)));
  ASSIGN_OR_RETURN(host->ns_, NetNamespace::create(fmt::format("ag{}", index)));
  const std::string root_end = fmt::format("fltv{}-{}", index, ::getpid() % 100000);
  ASSIGN_OR_RETURN(
      VethPair veth,
      VethPair::create({.ns = nullptr, .name = root_end, .cidr = ""},
                       {.ns = host->ns_.get(),
                        .name = "eth0",
                        .cidr = host->options_.tunnels ? "" : host->address_ + "/24"}));
  host->veth_.emplace(std::move(veth));
  RETURN_IF_ERROR(run({"ip", "link", "set", root_end, "master", network.bridge()}));
  RETURN_IF_ERROR(::flotilla::testing::disableInterfaceOffloads(nullptr, root_end));
  RETURN_IF_ERROR(::flotilla::testing::disableInterfaceOffloads(host->ns_.get(), "eth0"));
  ASSIGN_OR_RETURN(host->ovs_, OvsInstance::start({.ns = host->ns_.get()}));
  for (const char* sub : {"state", "run", "pool"}) {
    if (::mkdir(host->dir_.file(sub).c_str(), 0700) != 0) {
      return errnoStatus(errno, "mkdir " + host->dir_.file(sub));
    }
  }
  return host;
}

std::string AgentHost::cgroupParent() const {
  return fmt::format("flotilla-test-{}-{}", ::getpid(), options_.index);
}

::flotilla::testing::Traces AgentHost::traces() const {
  ::flotilla::testing::Traces traces;
  if (ns_ != nullptr) traces.namespaces.push_back(ns_->name());
  if (veth_) traces.links.push_back(veth_->a().name);
  traces.paths.push_back(dir_.path());
  traces.cgroups.push_back(cgroupParent());
  traces.command_lines.push_back(dir_.path());
  return traces;
}

std::string AgentHost::agentLog() const {
  auto text = readFileToString(dir_.file("agent.log"));
  return text.ok() ? *text : "";
}

absl::Status AgentHost::startAgent() {
  std::string config = fmt::format(
      "host: {name}\n"
      "listen: {address}:7100\n"
      "socket: {dir}/agent.sock\n"
      "state_dir: {dir}/state\n"
      "run_dir: {dir}/run\n"
      "vmm_binary: {vmm}\n"
      "migration:\n  address: {address}\n  ports: 7200-7209\n"
      "etcd:\n  endpoints: [{etcd}]\n"
      "lease_ttl: {ttl}\n"
      "fence_after: {fence}\n"
      "report_interval: {report}\n"
      "stop_grace: 2s\n"
      "cgroup_parent: {cgroup}\n"
      "ovs:\n  db: unix:{ovs}/db.sock\n  datapath: netdev\n",
      fmt::arg("name", name_), fmt::arg("address", address_), fmt::arg("dir", dir_.path()),
      fmt::arg("vmm", FLOTILLA_VMM), fmt::arg("etcd", options_.etcd_endpoint),
      fmt::arg("ttl", absl::FormatDuration(options_.lease_ttl)),
      fmt::arg("fence", absl::FormatDuration(options_.fence_after)),
      fmt::arg("report", absl::FormatDuration(options_.report_interval)),
      fmt::arg("cgroup", cgroupParent()), fmt::arg("ovs", ovs_->dir()));
  if (options_.tunnels) {
    config += fmt::format("  underlay_port: eth0\n  underlay_cidr: {}/24\n  tunnel_ip: {}\n",
                          address_, address_);
  }
  if (options_.tls_ca.empty()) {
    config += "plaintext: true\n";
  } else {
    config += fmt::format("tls: {{ca: {}, cert: {}, key: {}}}\n", options_.tls_ca,
                          options_.tls_cert, options_.tls_key);
  }
  config += fmt::format("pools:\n  - name: local\n    type: dir\n    path: {}\n", poolDir());
  config += options_.extra_config;
  RETURN_IF_ERROR(writeFileAtomically(dir_.file("agent.yaml"), config));

  UniqueFd log(
      ::open(dir_.file("agent.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return errnoStatus(errno, "open " + dir_.file("agent.log"));
  SpawnOptions spawn;
  // nsenter enters the network namespace only; `ip netns exec` would also remount /sys,
  // which hides the cgroup hierarchies mounted below it.
  spawn.argv = {"nsenter",  "--net=/run/netns/" + ns_->name(),
                "--",       FLOTILLA_AGENT,
                "--config", dir_.file("agent.yaml")};
  spawn.fds = {{1, log.get()}, {2, log.get()}};
  ASSIGN_OR_RETURN(agent_, ChildProcess::spawn(spawn));

  const std::string socket = dir_.file("agent.sock");
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    if (unixSocketAccepts(socket)) {
      api_ = flotilla::v1::AgentService::NewStub(
          grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
      grpc::ClientContext context;
      context.set_deadline(deadlineAfter(absl::Seconds(10)));
      flotilla::v1::HostStatus status;
      grpc::Status answered = api_->GetHost(&context, flotilla::v1::GetHostRequest(), &status);
      if (answered.ok()) return absl::OkStatus();
      return absl::UnavailableError(
          fmt::format("flotilla-agent does not answer GetHost: {}; its log:\n{}",
                      answered.error_message(), agentLog()));
    }
    if (auto exited = agent_.wait(absl::ZeroDuration()); exited.ok()) {
      return absl::FailedPreconditionError(
          fmt::format("flotilla-agent {}; its log:\n{}", exited->describe(), agentLog()));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError("flotilla-agent did not answer within 30 s; its log:\n" +
                                     agentLog());
}

absl::Status AgentHost::killAgent() {
  RETURN_IF_ERROR(agent_.signal(SIGKILL));
  return agent_.wait(absl::Seconds(10)).status();
}

absl::Status AgentHost::stopAgent() {
  return agent_.terminate(absl::Seconds(10)).status();
}

bool AgentHost::agentRunning() {
  return agent_.valid() && !agent_.wait(absl::ZeroDuration()).ok();
}

void AgentHost::killVmms() {
  auto store = VmRecordStore::open(stateDir() + "/vms");
  if (!store.ok()) return;
  auto records = store->loadAll();
  if (!records.ok()) return;
  for (const auto& record : *records) {
    const pid_t pid = static_cast<pid_t>(record.vmm_pid());
    if (pid <= 1) continue;
    // Only that very process: the pid and its start time both match.
    auto same = isSameProcess({.pid = pid, .start_time = record.vmm_start_ticks()});
    if (same.ok() && *same) ::kill(pid, SIGKILL);
  }
}

AgentHost::~AgentHost() {
  if (agent_.valid()) (void)agent_.terminate(absl::Seconds(5));
  killVmms();
  // Give the killed VMMs a moment to leave their cgroups before those are removed.
  CgroupOptions options;
  options.parent = cgroupParent();
  if (auto cgroups = CgroupManager::open(options); cgroups.ok()) {
    for (int attempt = 0; attempt < 50; ++attempt) {
      bool left = false;
      if (auto groups = (*cgroups)->listVmGroups(); groups.ok()) {
        for (const std::string& vm : *groups) {
          if (!(*cgroups)->removeVmGroup(vm).ok()) left = true;
        }
      }
      if (!left) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    (void)(*cgroups)->removeParentGroup();
  }
  if (ovs_ != nullptr) (void)ovs_->stop();
  veth_.reset();
  ns_.reset();
}

}  // namespace flotilla::agent::testing
