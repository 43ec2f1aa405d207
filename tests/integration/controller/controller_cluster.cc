// ControllerCluster (see controller_cluster.h).
#include "tests/integration/controller/controller_cluster.h"

#include <fcntl.h>
#include <signal.h>

#include "common/files.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "grpcpp/create_channel.h"

namespace flotilla::controller::testing {

constexpr char kIqnPrefix[] = "iqn.2026-01.org.flotilla:ctl";

absl::StatusOr<std::unique_ptr<ControllerCluster>> ControllerCluster::start(
    ControllerClusterOptions options) {
  std::unique_ptr<ControllerCluster> cluster(new ControllerCluster());
  cluster->options_ = options;
  ASSIGN_OR_RETURN(cluster->network_, agent::testing::ClusterNetwork::create());
  ASSIGN_OR_RETURN(cluster->etcd_, ::flotilla::testing::EtcdCluster::start(
                                       options.etcd_members, cluster->network_->gateway()));
  std::vector<std::string> endpoints;
  for (int member = 0; member < options.etcd_members; ++member) {
    endpoints.push_back(cluster->etcd_->clientEndpoint(member));
  }
  if (options.storage) {
    ASSIGN_OR_RETURN(cluster->tgtd_,
                     ::flotilla::testing::TgtDaemon::start(cluster->network_->gateway()));
  }
  for (int index = 0; index < options.hosts; ++index) {
    std::string pools;
    if (options.storage) {
      pools =
          fmt::format("  - name: san\n    type: iscsi\n    portal: '{}'\n    iqn_prefix: '{}'\n",
                      cluster->tgtd_->portal(), kIqnPrefix);
      if (index == 0) {
        pools += fmt::format("    manage: true\n    tgt_instance: {}\n    path: '{}'\n",
                             cluster->tgtd_->control(), cluster->dir_.file("san"));
      }
    }
    if (options.more_pools) pools += options.more_pools(index, *cluster->network_);
    ASSIGN_OR_RETURN(auto host, agent::testing::AgentHost::create(
                                    *cluster->network_,
                                    {.index = index,
                                     .etcd_endpoint = fmt::format("{}", fmt::join(endpoints, ", ")),
                                     .tunnels = options.hosts > 1,
                                     .lease_ttl = options.lease_ttl,
                                     .fence_after = options.fence_after,
                                     .extra_config = pools}));
    RETURN_IF_ERROR(host->startAgent());
    cluster->hosts_.push_back(std::move(host));
  }
  for (int replica = 0; replica < options.controllers; ++replica) {
    ASSIGN_OR_RETURN(uint16_t port, ::flotilla::testing::pickFreePort());
    cluster->listen_.push_back(fmt::format("127.0.0.1:{}", port));
    cluster->controllers_.emplace_back();
    RETURN_IF_ERROR(cluster->startController(replica));
    cluster->stubs_.push_back(v1::ClusterService::NewStub(
        grpc::CreateChannel(cluster->listen_.back(), grpc::InsecureChannelCredentials())));
  }
  for (int replica = 0; replica < options.controllers; ++replica) {
    auto channel = grpc::CreateChannel(cluster->listen_[static_cast<size_t>(replica)],
                                       grpc::InsecureChannelCredentials());
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    bool connected = false;
    while (!connected && absl::Now() < deadline && cluster->controllerAlive(replica)) {
      connected = waitConnected(*channel, absl::Seconds(1));
      if (!connected) absl::SleepFor(absl::Milliseconds(50));
    }
    if (!connected) {
      return absl::UnavailableError(fmt::format(
          "controller ctl-{} does not serve on {}:\n{}", replica + 1,
          cluster->listen_[static_cast<size_t>(replica)], cluster->controllerLog(replica)));
    }
  }
  return cluster;
}

absl::Status ControllerCluster::startController(int replica) {
  std::vector<std::string> endpoints;
  for (int member = 0; member < options_.etcd_members; ++member) {
    endpoints.push_back(etcd_->clientEndpoint(member));
  }
  const std::string config_path = dir_.file(fmt::format("ctl-{}.yaml", replica + 1));
  const std::string config = fmt::format(
      "name: ctl-{}\nlisten: '{}'\nplaintext: true\netcd:\n  endpoints: ['{}']\n"
      "agents:\n  plaintext: true\nelection_ttl: {}s\nhost_fence_timeout: {}ms\n"
      "resync_interval: 500ms\nlog:\n  level: debug\n{}",
      replica + 1, listen_[static_cast<size_t>(replica)], fmt::join(endpoints, "', '"),
      absl::ToInt64Seconds(options_.election_ttl),
      absl::ToInt64Milliseconds(options_.host_fence_timeout), options_.controller_config);
  RETURN_IF_ERROR(writeFileAtomically(config_path, config));
  const std::string log_path = dir_.file(fmt::format("ctl-{}.log", replica + 1));
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return errnoStatus(errno, "open " + log_path);
  SpawnOptions spawn;
  spawn.argv = {FLOTILLA_CONTROLLER, "--config", config_path};
  spawn.fds = {{1, log.get()}, {2, log.get()}};
  ASSIGN_OR_RETURN(controllers_[static_cast<size_t>(replica)], ChildProcess::spawn(spawn));
  return absl::OkStatus();
}

ControllerCluster::~ControllerCluster() {
  for (ChildProcess& controller : controllers_) {
    if (controller.valid()) (void)controller.terminate(absl::Seconds(5));
  }
  hosts_.clear();  // agents and their VMMs, OVS, namespaces
}

std::string ControllerCluster::portal() const {
  return tgtd_ ? tgtd_->portal() : "";
}

grpc::Status ControllerCluster::call(
    const std::function<grpc::Status(v1::ClusterService::Stub&, grpc::ClientContext&)>& call) {
  grpc::Status status(grpc::StatusCode::UNAVAILABLE, "no controller is alive");
  for (size_t replica = 0; replica < stubs_.size(); ++replica) {
    if (!controllerAlive(static_cast<int>(replica))) continue;
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Seconds(20)));
    status = call(*stubs_[replica], context);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return status;
  }
  return status;
}

absl::StatusOr<int> ControllerCluster::waitForLeader(absl::Duration timeout, int not_this) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    v1::ClusterInfo info;
    grpc::Status status = call([&](v1::ClusterService::Stub& stub, grpc::ClientContext& context) {
      return stub.GetClusterInfo(&context, v1::GetClusterInfoRequest(), &info);
    });
    if (status.ok() && info.leader().starts_with("ctl-")) {
      const int index = std::stoi(info.leader().substr(4)) - 1;
      if (index != not_this && controllerAlive(index)) return index;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      fmt::format("no (new) leader within {}:\n{}", absl::FormatDuration(timeout), logs()));
}

absl::Status ControllerCluster::killController(int replica) {
  return controllers_[static_cast<size_t>(replica)].signal(SIGKILL);
}

bool ControllerCluster::controllerAlive(int replica) const {
  const ChildProcess& controller = controllers_[static_cast<size_t>(replica)];
  return controller.valid() && ::kill(controller.pid(), 0) == 0 &&
         !const_cast<ChildProcess&>(controller).wait(absl::ZeroDuration()).ok();
}

std::string ControllerCluster::controllerLog(int replica) const {
  return ::flotilla::testing::fileTail(dir_.file(fmt::format("ctl-{}.log", replica + 1)), 6000);
}

std::string ControllerCluster::logs() const {
  std::string all;
  for (size_t replica = 0; replica < controllers_.size(); ++replica) {
    all += fmt::format("---- ctl-{} ----\n{}\n", replica + 1,
                       controllerLog(static_cast<int>(replica)));
  }
  if (tgtd_) all += fmt::format("---- tgtd ({}) ----\n{}\n", tgtd_->portal(), tgtd_->logTail());
  return all;
}

absl::StatusOr<v1::Vm> ControllerCluster::waitForVm(const std::string& name,
                                                    const std::function<bool(const v1::Vm&)>& done,
                                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  v1::Vm vm;
  while (absl::Now() < deadline) {
    v1::NameRequest request;
    request.set_name(name);
    grpc::Status status = call([&](v1::ClusterService::Stub& stub, grpc::ClientContext& context) {
      return stub.GetVm(&context, request, &vm);
    });
    if (status.ok() && done(vm)) return vm;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      fmt::format("vm {} did not get there within {}: last seen {}\n{}", name,
                  absl::FormatDuration(timeout), vm.ShortDebugString(), logs()));
}

v1::CreateVmClusterRequest testVm(const std::string& name, const std::string& ip,
                                  const std::string& volume, bool ha) {
  v1::CreateVmClusterRequest request;
  request.set_name(name);
  request.set_start(true);
  v1::VmSpec& spec = *request.mutable_spec();
  spec.set_vcpus(1);
  spec.set_memory_bytes(uint64_t{64} << 20);
  spec.set_ha(ha);
  spec.mutable_boot()->set_kernel(FLOTILLA_GUEST_ELF);
  spec.mutable_boot()->set_cmdline(
      fmt::format("workload=net net.ip={}/24 virtio.irq=1 virtio.event_idx=1", ip));
  v1::NicSpec& nic = *spec.add_nics();
  nic.set_network("blue");
  if (!volume.empty()) {
    v1::DiskSpec& disk = *spec.add_disks();
    disk.set_pool("san");
    disk.set_volume(volume);
  }
  return request;
}

}  // namespace flotilla::controller::testing
