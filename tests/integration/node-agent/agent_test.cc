// flotilla-agent for real, on one simulated host (a network namespace with its own OVS, the
// test's etcd reached over a bridge): a VM with a disk from a pool and a NIC on a VLAN
// answers a client on that VLAN; the host's record is in etcd under its lease; the agent is
// killed and restarted while the VM runs on and is re-attached; stop and delete leave
// nothing behind; bad requests leave nothing half-made; HA VMs are fenced when the lease
// cannot be renewed (etcd killed, or the host's link to it cut while etcd runs on).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "common/etcd/client.h"
#include "common/rpc/channel.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "node-agent/host/host_info.h"
#include "tests/integration/node-agent/agent_host.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/netns.h"
#include "tests/support/vmm_process.h"

namespace flotilla::agent {
namespace {

using ::flotilla::agent::testing::AgentHost;
using ::flotilla::agent::testing::ClusterNetwork;
using ::flotilla::testing::EtcdCluster;
using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::VethPair;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr uint32_t kBlueVlan = 100;

flotilla::v1::CreateVmRequest netVm(const std::string& name, const std::string& ip,
                                    bool ha = false) {
  flotilla::v1::CreateVmRequest request;
  request.set_name(name);
  request.set_uid("uid-" + name);
  request.set_start(true);
  flotilla::v1::VmSpec& spec = *request.mutable_spec();
  spec.set_vcpus(1);
  spec.set_memory_bytes(uint64_t{128} << 20);
  spec.set_ha(ha);
  spec.mutable_boot()->set_kernel(kGuest);
  spec.mutable_boot()->set_cmdline(
      fmt::format("workload=net net.ip={}/24 virtio.irq=1 virtio.event_idx=1", ip));
  flotilla::v1::NicSpec& nic = *spec.add_nics();
  nic.set_network("blue");
  nic.set_offload(false);
  flotilla::v1::NetworkBinding& blue = *request.add_networks();
  blue.set_name("blue");
  blue.set_vlan(kBlueVlan);
  return request;
}

grpc::Status createVm(AgentHost& host, const flotilla::v1::CreateVmRequest& request,
                      flotilla::v1::AgentVm* vm) {
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(60)));
  return host.api().CreateVm(&context, request, vm);
}

grpc::Status getVm(AgentHost& host, const std::string& name, flotilla::v1::AgentVm* vm) {
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(10)));
  flotilla::v1::AgentVmRequest request;
  request.set_name(name);
  return host.api().GetVm(&context, request, vm);
}

// Polls the VM's console log until it holds `text`.
bool waitForConsole(AgentHost& host, const std::string& name, const std::string& text,
                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Seconds(5)));
    flotilla::v1::ConsoleLogRequest request;
    request.set_name(name);
    request.set_max_bytes(1 << 20);
    flotilla::v1::ConsoleLogResponse response;
    if (host.api().GetConsoleLog(&context, request, &response).ok() &&
        response.data().find(text) != std::string::npos) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

// A client on VLAN `vlan` of the host's integration bridge: a namespace with `cidr` on a veth
// whose other end is an access port of br-int.
struct VlanClient {
  std::unique_ptr<NetNamespace> ns;
  std::optional<VethPair> veth;
};

absl::StatusOr<VlanClient> attachClient(AgentHost& host, const std::string& cidr, uint32_t vlan) {
  VlanClient client;
  ASSIGN_OR_RETURN(client.ns, NetNamespace::create("agc"));
  ASSIGN_OR_RETURN(VethPair veth,
                   VethPair::create({.ns = client.ns.get(), .name = "eth0", .cidr = cidr},
                                    {.ns = &host.ns(), .name = "client0", .cidr = ""}));
  client.veth.emplace(std::move(veth));
  RETURN_IF_ERROR(::flotilla::testing::disableInterfaceOffloads(client.ns.get(), "eth0"));
  RETURN_IF_ERROR(::flotilla::testing::disableInterfaceOffloads(&host.ns(), "client0"));
  RETURN_IF_ERROR(host.ovs().addPort("br-int", "client0", static_cast<uint16_t>(vlan)));
  return client;
}

// Whether the guest at `ip` answers within a few attempts.
bool answers(int socket, const std::string& ip, int& sequence) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (::flotilla::testing::udpEchoed(socket, ip, sequence++, absl::Milliseconds(500)))
      return true;
  }
  return false;
}

// Whether that very process runs (not a zombie: after the agent's crash the VMMs are
// re-parented to a process that may reap them late).
bool stillRuns(pid_t pid, uint64_t start_time) {
  auto same = isSameProcess({.pid = pid, .start_time = start_time});
  return same.ok() && *same;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
    auto network = ClusterNetwork::create();
    ASSERT_TRUE(network.ok()) << network.status();
    network_ = std::move(*network);
    auto etcd = EtcdCluster::start(1, network_->gateway());
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = std::move(*etcd);
    auto host =
        AgentHost::create(*network_, {.index = 0, .etcd_endpoint = etcd_->clientEndpoint(0)});
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = std::move(*host);
    absl::Status started = host_->startAgent();
    ASSERT_TRUE(started.ok()) << started;
  }

  void TearDown() override {
    if (HasFailure() && host_ != nullptr) {
      (void)std::fprintf(stderr, "agent log:\n%s\n", host_->agentLog().c_str());
    }
    ::flotilla::testing::Traces traces;
    if (host_ != nullptr) traces = host_->traces();
    if (network_ != nullptr) traces.links.push_back(network_->bridge());
    host_.reset();
    etcd_.reset();
    network_.reset();
    // Nothing of the test is left on the machine: no namespace, link, process, file or cgroup.
    EXPECT_THAT(::flotilla::testing::findLeftovers(traces), ::testing::IsEmpty());
  }

  std::unique_ptr<ClusterNetwork> network_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<AgentHost> host_;
};

TEST_F(AgentTest, RunsAVmOnItsVlanSurvivesAnAgentCrashAndCleansUp) {
  // A volume from the host's pool.
  {
    grpc::ClientContext context;
    flotilla::v1::VolumeRequest request;
    request.set_pool("local");
    request.set_volume("web1-disk");
    request.set_size_bytes(uint64_t{16} << 20);
    flotilla::v1::Volume volume;
    grpc::Status status = host_->api().CreateVolume(&context, request, &volume);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(volume.size_bytes(), uint64_t{16} << 20);
  }
  flotilla::v1::CreateVmRequest request = netVm("web1", "10.77.0.2");
  flotilla::v1::DiskSpec& disk = *request.mutable_spec()->add_disks();
  disk.set_pool("local");
  disk.set_volume("web1-disk");
  flotilla::v1::AgentVm vm;
  grpc::Status created = createVm(*host_, request, &vm);
  ASSERT_TRUE(created.ok()) << created.error_message();
  EXPECT_EQ(vm.state(), flotilla::v1::VM_STATE_RUNNING) << vm.message();
  ASSERT_EQ(vm.nics_size(), 1);
  const std::string tap = vm.nics(0).tap();
  EXPECT_THAT(tap, StartsWith("fv"));
  EXPECT_FALSE(vm.nics(0).mac().empty());
  ASSERT_EQ(vm.disks_size(), 1);
  EXPECT_EQ(vm.disks(0).disk_option(), "path=" + host_->poolDir() + "/web1-disk.img");
  const pid_t pid = static_cast<pid_t>(vm.vmm_pid());
  ASSERT_GT(pid, 1);
  auto stats = readProcessStats(pid);
  ASSERT_TRUE(stats.ok()) << stats.status();
  const uint64_t start_time = stats->start_time;
  ASSERT_TRUE(waitForConsole(*host_, "web1", "net up", absl::Minutes(1)));
  {
    // Reading on from an offset past the log's end (a reader that followed an older log of
    // this VM) gets nothing and a next_offset below its own: the log started over.
    grpc::ClientContext context;
    flotilla::v1::ConsoleLogRequest past_end;
    past_end.set_name("web1");
    past_end.set_offset(uint64_t{1} << 40);
    flotilla::v1::ConsoleLogResponse response;
    ASSERT_TRUE(host_->api().GetConsoleLog(&context, past_end, &response).ok());
    EXPECT_TRUE(response.data().empty());
    EXPECT_GT(response.next_offset(), 0U);
    EXPECT_LT(response.next_offset(), past_end.offset());
  }

  // Its port: an access port of VLAN 100 that says whose it is.
  auto tag = host_->ovs().vsctl({"get", "Port", tap, "tag"});
  ASSERT_TRUE(tag.ok()) << tag.status();
  EXPECT_EQ(*tag, "100\n");
  auto ids = host_->ovs().vsctl({"get", "Port", tap, "external_ids"});
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, HasSubstr("uid-web1"));

  // A client on the same VLAN reaches it.
  auto client = attachClient(*host_, "10.77.0.1/24", kBlueVlan);
  ASSERT_TRUE(client.ok()) << client.status();
  auto socket = client->ns->udpSocket();
  ASSERT_TRUE(socket.ok()) << socket.status();
  int sequence = 0;
  EXPECT_TRUE(answers(socket->get(), "10.77.0.2", sequence));

  // The host's record in etcd, bound to a lease, lists the VM.
  etcd::ClientOptions etcd_options;
  etcd_options.endpoints = {etcd_->clientEndpoint(0)};
  auto etcd = etcd::EtcdClient::connect(etcd_options);
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  flotilla::v1::HostStatus status;
  bool listed = false;
  for (int attempt = 0; attempt < 100 && !listed; ++attempt) {
    auto got = (*etcd)->get("/flotilla/v1/hosts-status/host-a");
    if (got.ok() && got->kvs.size() == 1 && status.ParseFromString(got->kvs[0].value)) {
      EXPECT_NE(got->kvs[0].lease, 0);
      for (const auto& host_vm : status.vms()) {
        listed |= host_vm.name() == "web1" && host_vm.state() == flotilla::v1::VM_STATE_RUNNING;
      }
    }
    if (!listed) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(listed) << status.DebugString();
  EXPECT_GT(status.inventory().cpus(), 0u);
  EXPECT_EQ(status.agent_address(), host_->address() + ":7100");

  // kill -9 of the agent: the VM runs on and is re-attached by the next agent.
  ASSERT_TRUE(host_->killAgent().ok());
  EXPECT_TRUE(stillRuns(pid, start_time)) << "the VMM died with the agent";
  EXPECT_TRUE(answers(socket->get(), "10.77.0.2", sequence));
  absl::Status restarted = host_->startAgent();
  ASSERT_TRUE(restarted.ok()) << restarted;
  ASSERT_TRUE(getVm(*host_, "web1", &vm).ok());
  EXPECT_EQ(vm.state(), flotilla::v1::VM_STATE_RUNNING) << vm.message();
  EXPECT_EQ(static_cast<pid_t>(vm.vmm_pid()), pid);
  EXPECT_THAT(host_->agentLog(), HasSubstr("re-attached to its VMM"));
  EXPECT_TRUE(answers(socket->get(), "10.77.0.2", sequence));

  // Stop, then delete: nothing of the VM is left.
  {
    grpc::ClientContext context;
    flotilla::v1::StopVmRequest stop;
    stop.set_name("web1");
    stop.set_grace_ms(500);
    grpc::Status stopped = host_->api().StopVm(&context, stop, &vm);
    ASSERT_TRUE(stopped.ok()) << stopped.error_message();
    EXPECT_EQ(vm.state(), flotilla::v1::VM_STATE_STOPPED) << vm.message();
    EXPECT_FALSE(stillRuns(pid, start_time)) << "the VMM still runs";
  }
  {
    grpc::ClientContext context;
    flotilla::v1::AgentVmRequest remove;
    remove.set_name("web1");
    flotilla::v1::DeleteVmResponse response;
    grpc::Status deleted = host_->api().DeleteVm(&context, remove, &response);
    ASSERT_TRUE(deleted.ok()) << deleted.error_message();
  }
  EXPECT_EQ(getVm(*host_, "web1", &vm).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_FALSE(host_->ns().hasLink(tap));
  auto ports = host_->ovs().vsctl({"list-ports", "br-int"});
  ASSERT_TRUE(ports.ok());
  EXPECT_EQ(*ports, "client0\n");
  struct stat info {};
  EXPECT_NE(::stat((host_->stateDir() + "/vms/web1.pb").c_str(), &info), 0);
  EXPECT_NE(
      ::stat(fmt::format("/sys/fs/cgroup/memory/{}/web1", host_->cgroupParent()).c_str(), &info),
      0);
}

TEST_F(AgentTest, BadRequestsGetClearErrorsAndLeaveNothingBehind) {
  auto expectRefused = [&](const flotilla::v1::CreateVmRequest& request, grpc::StatusCode code,
                           const std::string& text) {
    flotilla::v1::AgentVm vm;
    grpc::Status status = createVm(*host_, request, &vm);
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(text));
  };
  flotilla::v1::CreateVmRequest request = netVm("bad1", "10.77.0.5");
  request.mutable_networks()->Clear();
  expectRefused(request, grpc::StatusCode::INVALID_ARGUMENT, "network 'blue'");

  request = netVm("bad2", "10.77.0.5");
  flotilla::v1::DiskSpec& disk = *request.mutable_spec()->add_disks();
  disk.set_pool("nowhere");
  disk.set_volume("x");
  expectRefused(request, grpc::StatusCode::NOT_FOUND, "pool 'nowhere'");

  request = netVm("Bad_Name", "10.77.0.5");
  expectRefused(request, grpc::StatusCode::INVALID_ARGUMENT, "VM name 'Bad_Name'");

  request = netVm("bad3", "10.77.0.5");
  request.mutable_spec()->mutable_boot()->set_kernel("/nonexistent/kernel");
  expectRefused(request, grpc::StatusCode::INVALID_ARGUMENT, "/nonexistent/kernel");

  // The VMM itself refuses (a memory size it cannot give): the start fails, the VM is gone.
  request = netVm("bad4", "10.77.0.5");
  request.mutable_spec()->set_memory_bytes(uint64_t{1} << 50);
  expectRefused(request, grpc::StatusCode::UNAVAILABLE, "VM 'bad4'");

  // A call meant for another host (a controller with a stale address) is refused.
  {
    grpc::ClientContext misrouted;
    misrouted.AddMetadata("x-flotilla-host", "host-z");
    flotilla::v1::ListAgentVmsResponse list;
    grpc::Status status =
        host_->api().ListVms(&misrouted, flotilla::v1::ListAgentVmsRequest(), &list);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("not host-z"));
  }

  grpc::ClientContext context;
  flotilla::v1::ListAgentVmsResponse list;
  ASSERT_TRUE(host_->api().ListVms(&context, flotilla::v1::ListAgentVmsRequest(), &list).ok());
  EXPECT_EQ(list.vms_size(), 0);
  auto ports = host_->ovs().vsctl({"list-ports", "br-int"});
  ASSERT_TRUE(ports.ok());
  EXPECT_EQ(*ports, "");
  auto links = host_->ns().execChecked({"ip", "-o", "link"});
  ASSERT_TRUE(links.ok());
  EXPECT_THAT(*links, ::testing::Not(HasSubstr(": fv")));
}

TEST_F(AgentTest, FencesItsHaVmsWhenItsLeaseCannotBeRenewed) {
  flotilla::v1::AgentVm ha, plain;
  grpc::Status created = createVm(*host_, netVm("ha1", "10.77.0.3", /*ha=*/true), &ha);
  ASSERT_TRUE(created.ok()) << created.error_message();
  created = createVm(*host_, netVm("plain1", "10.77.0.4"), &plain);
  ASSERT_TRUE(created.ok()) << created.error_message();
  ASSERT_TRUE(waitForConsole(*host_, "ha1", "net up", absl::Minutes(1)));
  const pid_t ha_pid = static_cast<pid_t>(ha.vmm_pid());
  auto ha_stats = readProcessStats(ha_pid);
  ASSERT_TRUE(ha_stats.ok()) << ha_stats.status();

  // etcd goes away: the lease can no longer be renewed.
  ASSERT_TRUE(etcd_->kill(0).ok());
  const absl::Time killed = absl::Now();
  bool fenced = false;
  for (int attempt = 0; attempt < 300 && !fenced; ++attempt) {
    absl::SleepFor(absl::Milliseconds(100));
    fenced = getVm(*host_, "ha1", &ha).ok() && ha.state() == flotilla::v1::VM_STATE_STOPPED;
  }
  ASSERT_TRUE(fenced) << ha.DebugString();
  std::printf("HA VM fenced %.0f ms after etcd went away (fence_after 2 s, lease TTL 4 s)\n",
              absl::ToDoubleMilliseconds(absl::Now() - killed));
  EXPECT_THAT(ha.message(), HasSubstr("fenced"));
  EXPECT_FALSE(stillRuns(ha_pid, ha_stats->start_time)) << "the fenced VMM still runs";
  ASSERT_TRUE(getVm(*host_, "plain1", &plain).ok());
  EXPECT_EQ(plain.state(), flotilla::v1::VM_STATE_RUNNING) << "only HA VMs are fenced";
  EXPECT_THAT(host_->agentLog(), HasSubstr("self-fencing: killed 1 HA VM(s)"));
}

TEST_F(AgentTest, FencesItsHaVmsWhenItsHostIsCutOffFromEtcd) {
  flotilla::v1::AgentVm ha, plain;
  grpc::Status created = createVm(*host_, netVm("ha5", "10.77.0.10", /*ha=*/true), &ha);
  ASSERT_TRUE(created.ok()) << created.error_message();
  created = createVm(*host_, netVm("plain5", "10.77.0.11"), &plain);
  ASSERT_TRUE(created.ok()) << created.error_message();
  ASSERT_TRUE(waitForConsole(*host_, "ha5", "net up", absl::Minutes(1)));
  const pid_t ha_pid = static_cast<pid_t>(ha.vmm_pid());
  auto ha_stats = readProcessStats(ha_pid);
  ASSERT_TRUE(ha_stats.ok()) << ha_stats.status();

  // The host's link to the cluster network goes down: etcd runs on, for everyone else.
  ASSERT_TRUE(host_->ns().execChecked({"ip", "link", "set", "eth0", "down"}).ok());
  const absl::Time cut = absl::Now();
  bool fenced = false;
  for (int attempt = 0; attempt < 300 && !fenced; ++attempt) {
    absl::SleepFor(absl::Milliseconds(100));
    fenced = !stillRuns(ha_pid, ha_stats->start_time);
  }
  const absl::Duration to_fence = absl::Now() - cut;
  EXPECT_TRUE(etcd_->waitHealthy(0, absl::Seconds(5)).ok()) << "etcd itself went down";
  ASSERT_TRUE(host_->ns().execChecked({"ip", "link", "set", "eth0", "up"}).ok());
  ASSERT_TRUE(fenced) << "the HA VM still runs on a host cut off from etcd";
  std::printf("HA VM fenced %.0f ms after its host was cut off (fence_after 2 s, lease TTL 4 s)\n",
              absl::ToDoubleMilliseconds(to_fence));
  ASSERT_TRUE(getVm(*host_, "plain5", &plain).ok());
  EXPECT_EQ(plain.state(), flotilla::v1::VM_STATE_RUNNING) << "only HA VMs are fenced";
  EXPECT_THAT(host_->agentLog(), HasSubstr("self-fencing: killed 1 HA VM(s)"));
}

TEST_F(AgentTest, FencesAgainAfterEtcdCameBackAndWentAwayAgain) {
  auto fenceOnce = [&](const std::string& name, const std::string& ip) {
    flotilla::v1::AgentVm ha;
    grpc::Status created = createVm(*host_, netVm(name, ip, /*ha=*/true), &ha);
    ASSERT_TRUE(created.ok()) << created.error_message();
    auto stats = readProcessStats(static_cast<pid_t>(ha.vmm_pid()));
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_TRUE(etcd_->kill(0).ok());
    bool fenced = false;
    for (int attempt = 0; attempt < 300 && !fenced; ++attempt) {
      absl::SleepFor(absl::Milliseconds(100));
      fenced = !stillRuns(static_cast<pid_t>(ha.vmm_pid()), stats->start_time);
    }
    EXPECT_TRUE(fenced) << name << " was not fenced";
    ASSERT_TRUE(etcd_->restart(0).ok());
    ASSERT_TRUE(etcd_->waitHealthy(0, absl::Seconds(30)).ok());
  };
  fenceOnce("ha3", "10.77.0.8");
  // The agent renews again (the same lease or a new one); the next outage must fence again.
  absl::SleepFor(absl::Seconds(2));
  fenceOnce("ha4", "10.77.0.9");
}

TEST_F(AgentTest, ARestartedAgentThatCannotReachEtcdStillFences) {
  flotilla::v1::AgentVm ha;
  grpc::Status created = createVm(*host_, netVm("ha2", "10.77.0.7", /*ha=*/true), &ha);
  ASSERT_TRUE(created.ok()) << created.error_message();
  const pid_t ha_pid = static_cast<pid_t>(ha.vmm_pid());
  auto ha_stats = readProcessStats(ha_pid);
  ASSERT_TRUE(ha_stats.ok()) << ha_stats.status();
  // Let a report (and its renewal time) reach the disk, then lose the agent and etcd at once.
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE(host_->killAgent().ok());
  ASSERT_TRUE(etcd_->kill(0).ok());
  absl::Status restarted = host_->startAgent();
  ASSERT_TRUE(restarted.ok()) << restarted;
  bool fenced = false;
  for (int attempt = 0; attempt < 300 && !fenced; ++attempt) {
    absl::SleepFor(absl::Milliseconds(100));
    fenced = !stillRuns(ha_pid, ha_stats->start_time);
  }
  EXPECT_TRUE(fenced) << "the HA VM still runs on a host that cannot reach etcd";
  EXPECT_THAT(host_->agentLog(), HasSubstr("the previous agent's lease was last renewed"));
  EXPECT_THAT(host_->agentLog(), HasSubstr("self-fencing: killed 1 HA VM(s)"));
}

TEST_F(AgentTest, ReportsAVmmThatDies) {
  flotilla::v1::AgentVm vm;
  grpc::Status created = createVm(*host_, netVm("crash1", "10.77.0.6"), &vm);
  ASSERT_TRUE(created.ok()) << created.error_message();
  ASSERT_EQ(::kill(static_cast<pid_t>(vm.vmm_pid()), SIGKILL), 0);
  bool failed = false;
  for (int attempt = 0; attempt < 100 && !failed; ++attempt) {
    absl::SleepFor(absl::Milliseconds(50));
    failed = getVm(*host_, "crash1", &vm).ok() && vm.state() == flotilla::v1::VM_STATE_FAILED;
  }
  ASSERT_TRUE(failed) << vm.DebugString();
  EXPECT_EQ(vm.last_exit(), "killed by signal 9 (Killed)");
  EXPECT_EQ(vm.vmm_pid(), 0u);
  // It can be started again.
  grpc::ClientContext context;
  flotilla::v1::AgentVmRequest start;
  start.set_name("crash1");
  grpc::Status started = host_->api().StartVm(&context, start, &vm);
  ASSERT_TRUE(started.ok()) << started.error_message();
  EXPECT_EQ(vm.state(), flotilla::v1::VM_STATE_RUNNING);
}

}  // namespace
}  // namespace flotilla::agent
