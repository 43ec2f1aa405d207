// Live migration through two agents, as the controller drives it: two simulated hosts whose
// integration bridges are joined by VXLAN over their underlay (each host's OVS, br-phy
// pattern), a storage host (tgtd on the cluster network) serving the VM's disk as an iSCSI
// LUN, and a client on VLAN "blue" of host A probing the VM with UDP echo every millisecond
// while it moves from A to B. Reports the longest gap between echoes and the probes lost. The
// VM runs as generation 3 (as after HA restarts): both VMMs hold the LUN's reservation for it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/command.h"
#include "common/rpc/channel.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "storage/iscsi_pool.h"
#include "tests/integration/node-agent/agent_host.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/leftovers.h"
#include "tests/support/netns.h"
#include "tests/support/tgt_target.h"
#include "tests/support/vmm_process.h"

namespace flotilla::agent {
namespace {

using ::flotilla::agent::testing::AgentHost;
using ::flotilla::agent::testing::ClusterNetwork;
using ::flotilla::testing::EtcdCluster;
using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::TgtDaemon;
using ::flotilla::testing::VethPair;
using ::testing::HasSubstr;

constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kIqnPrefix[] = "iqn.2026-01.org.flotilla:san";
constexpr char kVmIp[] = "10.78.0.2";

// Sends a UDP probe to the guest's echo port every millisecond and records when each echo
// came back.
class Prober {
 public:
  explicit Prober(int socket) : socket_(socket) {}
  ~Prober() { stop(); }

  void start() {
    sender_ = std::thread([this] {
      sockaddr_in guest{};
      guest.sin_family = AF_INET;
      guest.sin_port = htons(7);
      ::inet_pton(AF_INET, kVmIp, &guest.sin_addr);
      for (uint32_t sequence = 0; !stopping_.load(); ++sequence) {
        ::sendto(socket_, &sequence, sizeof(sequence), 0, reinterpret_cast<const sockaddr*>(&guest),
                 sizeof(guest));
        sent_.store(sequence + 1);
        absl::SleepFor(absl::Milliseconds(1));
      }
    });
    receiver_ = std::thread([this] {
      while (!stopping_.load()) {
        pollfd readable{socket_, POLLIN, 0};
        if (::poll(&readable, 1, 50) != 1) continue;
        uint32_t sequence = 0;
        if (::recv(socket_, &sequence, sizeof(sequence), 0) != sizeof(sequence)) continue;
        std::lock_guard<std::mutex> lock(mu_);
        replies_.push_back(absl::Now());
      }
    });
  }

  void stop() {
    stopping_.store(true);
    if (sender_.joinable()) sender_.join();
    if (receiver_.joinable()) receiver_.join();
  }

  uint32_t sent() const { return sent_.load(); }
  std::vector<absl::Time> replies() {
    std::lock_guard<std::mutex> lock(mu_);
    return replies_;
  }

 private:
  const int socket_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint32_t> sent_{0};
  std::mutex mu_;
  std::vector<absl::Time> replies_;
  std::thread sender_;
  std::thread receiver_;
};

bool tunnelsUp(AgentHost& host) {
  auto ports = host.ovs().vsctl({"list-ports", "br-int"});
  return ports.ok() && ports->find("vx-") != std::string::npos;
}

// The whole scenario; everything it makes is gone when it returns, and named in `traces`.
void liveMigrateWhileAClientProbes(::flotilla::testing::Traces& traces) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  auto network = ClusterNetwork::create();
  ASSERT_TRUE(network.ok()) << network.status();
  traces.links.push_back((*network)->bridge());
  auto etcd = EtcdCluster::start(1, (*network)->gateway());
  ASSERT_TRUE(etcd.ok()) << etcd.status();

  // The storage host: tgtd on the cluster network, and the volume made by the pool code the
  // storage host's agent runs.
  auto tgtd = TgtDaemon::start((*network)->gateway());
  ASSERT_TRUE(tgtd.ok()) << tgtd.status();
  ::flotilla::testing::TempDir storage_dir;
  traces.paths.push_back(storage_dir.path());
  SystemCommandRunner runner;
  storage::IscsiPoolOptions pool_options;
  pool_options.name = "san";
  pool_options.directory = storage_dir.file("san");
  pool_options.create_directory = true;
  pool_options.portal = (*tgtd)->portal();
  pool_options.iqn_prefix = kIqnPrefix;
  pool_options.tgt_control = (*tgtd)->control();
  pool_options.tgtadm = (*tgtd)->tgtadmPath();
  auto pool = storage::IscsiPool::open(runner, pool_options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto volume = (*pool)->create("vm1-disk", uint64_t{16} << 20);
  ASSERT_TRUE(volume.ok()) << volume.status();

  const std::string san =
      fmt::format("  - name: san\n    type: iscsi\n    portal: '{}'\n    iqn_prefix: '{}'\n",
                  (*tgtd)->portal(), kIqnPrefix);
  std::vector<std::unique_ptr<AgentHost>> hosts;
  for (int index = 0; index < 2; ++index) {
    auto host = AgentHost::create(**network, {.index = index,
                                              .etcd_endpoint = (*etcd)->clientEndpoint(0),
                                              .tunnels = true,
                                              .extra_config = san});
    ASSERT_TRUE(host.ok()) << host.status();
    const ::flotilla::testing::Traces host_traces = (*host)->traces();
    for (auto [from, to] : {std::pair{&host_traces.namespaces, &traces.namespaces},
                            std::pair{&host_traces.links, &traces.links},
                            std::pair{&host_traces.paths, &traces.paths},
                            std::pair{&host_traces.cgroups, &traces.cgroups},
                            std::pair{&host_traces.command_lines, &traces.command_lines}}) {
      to->insert(to->end(), from->begin(), from->end());
    }
    absl::Status started = (*host)->startAgent();
    ASSERT_TRUE(started.ok()) << started;
    hosts.push_back(std::move(*host));
  }
  AgentHost& a = *hosts[0];
  AgentHost& b = *hosts[1];
  for (int attempt = 0; attempt < 200 && !(tunnelsUp(a) && tunnelsUp(b)); ++attempt) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(tunnelsUp(a) && tunnelsUp(b)) << a.agentLog() << b.agentLog();

  // The VM on host A, with its disk on the SAN and a NIC on "blue".
  flotilla::v1::CreateVmRequest create;
  create.set_name("vm1");
  create.set_uid("uid-vm1");
  create.set_start(true);
  create.set_generation(3);
  flotilla::v1::VmSpec& spec = *create.mutable_spec();
  spec.set_vcpus(1);
  spec.set_memory_bytes(uint64_t{128} << 20);
  spec.mutable_boot()->set_kernel(kGuest);
  spec.mutable_boot()->set_cmdline(
      fmt::format("workload=net net.ip={}/24 virtio.irq=1 virtio.event_idx=1", kVmIp));
  flotilla::v1::NicSpec& nic = *spec.add_nics();
  nic.set_network("blue");
  nic.set_offload(false);
  flotilla::v1::DiskSpec& disk = *spec.add_disks();
  disk.set_pool("san");
  disk.set_volume("vm1-disk");
  flotilla::v1::NetworkBinding& blue = *create.add_networks();
  blue.set_name("blue");
  blue.set_vlan(100);
  flotilla::v1::AgentVm vm;
  {
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Minutes(1)));
    grpc::Status created = a.api().CreateVm(&context, create, &vm);
    ASSERT_TRUE(created.ok()) << created.error_message() << a.agentLog();
  }
  EXPECT_THAT(vm.disks(0).disk_option(), HasSubstr("iscsi://" + (*tgtd)->portal()));
  EXPECT_THAT(vm.disks(0).disk_option(), HasSubstr(",generation=3"));

  // The client on host A's VLAN 100.
  auto client_ns = NetNamespace::create("agmc");
  ASSERT_TRUE(client_ns.ok()) << client_ns.status();
  traces.namespaces.push_back((*client_ns)->name());
  auto veth = VethPair::create({.ns = client_ns->get(), .name = "eth0", .cidr = "10.78.0.1/24"},
                               {.ns = &a.ns(), .name = "client0", .cidr = ""});
  ASSERT_TRUE(veth.ok()) << veth.status();
  ASSERT_TRUE(::flotilla::testing::disableInterfaceOffloads(client_ns->get(), "eth0").ok());
  ASSERT_TRUE(::flotilla::testing::disableInterfaceOffloads(&a.ns(), "client0").ok());
  ASSERT_TRUE(a.ovs().addPort("br-int", "client0", 100).ok());
  auto socket = (*client_ns)->udpSocket();
  ASSERT_TRUE(socket.ok()) << socket.status();
  Prober prober(socket->get());
  prober.start();
  bool answering = false;
  for (int attempt = 0; attempt < 600 && !answering; ++attempt) {
    absl::SleepFor(absl::Milliseconds(100));
    answering = !prober.replies().empty();
  }
  ASSERT_TRUE(answering) << "the VM does not answer on host A";
  auto ping = (*client_ns)->exec({"ping", "-c", "3", "-i", "0.2", "-W", "2", kVmIp});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_TRUE(ping->status.success()) << "no ping answer on host A: " << ping->out;

  // The migration, step by step as the controller drives it.
  const absl::Time begin = absl::Now();
  flotilla::v1::PrepareIncomingResponse incoming;
  {
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Minutes(1)));
    flotilla::v1::PrepareIncomingRequest prepare;
    prepare.set_name("vm1");
    prepare.set_uid("uid-vm1");
    *prepare.mutable_spec() = spec;
    *prepare.mutable_networks() = create.networks();
    prepare.add_macs(vm.nics(0).mac());
    prepare.set_generation(3);  // the source's: an older one would be refused by the LUN
    grpc::Status prepared = b.api().PrepareIncoming(&context, prepare, &incoming);
    ASSERT_TRUE(prepared.ok()) << prepared.error_message() << b.agentLog();
  }
  EXPECT_THAT(incoming.address(), HasSubstr(b.address()));
  {
    grpc::ClientContext context;
    flotilla::v1::StartMigrationRequest start;
    start.set_name("vm1");
    start.set_address(incoming.address());
    start.set_token(incoming.token());
    start.mutable_options()->set_downtime_limit_ms(50);
    flotilla::v1::StartMigrationResponse response;
    grpc::Status started = a.api().StartMigration(&context, start, &response);
    ASSERT_TRUE(started.ok()) << started.error_message() << a.agentLog();
  }
  // No GetMigration until the source VMM has exited (the VM is Stopped on A): the final
  // figures must come from what the VMM left behind, not from a poll that caught it alive.
  for (int attempt = 0; attempt < 1200; ++attempt) {
    grpc::ClientContext context;
    flotilla::v1::AgentVmRequest request;
    request.set_name("vm1");
    flotilla::v1::AgentVm source;
    ASSERT_TRUE(a.api().GetVm(&context, request, &source).ok());
    if (source.state() == flotilla::v1::VM_STATE_STOPPED ||
        source.state() == flotilla::v1::VM_STATE_FAILED) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  flotilla::v1::MigrationStatus status;
  {
    grpc::ClientContext context;
    flotilla::v1::AgentVmRequest request;
    request.set_name("vm1");
    ASSERT_TRUE(a.api().GetMigration(&context, request, &status).ok());
  }
  ASSERT_EQ(status.phase(), "completed") << status.DebugString() << a.agentLog() << b.agentLog();
  EXPECT_GT(status.downtime_us(), 0U) << status.DebugString();
  EXPECT_GT(status.bytes_sent(), 0U) << status.DebugString();
  EXPECT_GT(status.total_time_us(), 0U) << status.DebugString();
  for (auto [host, role] : {std::pair{&b, flotilla::v1::MigrationEndRequest::ROLE_TARGET},
                            std::pair{&a, flotilla::v1::MigrationEndRequest::ROLE_SOURCE}}) {
    grpc::ClientContext context;
    flotilla::v1::MigrationEndRequest finish;
    finish.set_name("vm1");
    finish.set_role(role);
    grpc::Status finished = host->api().FinishMigration(&context, finish, &vm);
    ASSERT_TRUE(finished.ok()) << finished.error_message() << host->agentLog();
  }
  const absl::Time end = absl::Now();
  absl::SleepFor(absl::Seconds(1));
  prober.stop();

  // The VM runs on B only, and answers there, through the tunnel from A's VLAN.
  {
    grpc::ClientContext context;
    flotilla::v1::AgentVmRequest request;
    request.set_name("vm1");
    ASSERT_TRUE(b.api().GetVm(&context, request, &vm).ok());
    EXPECT_EQ(vm.state(), flotilla::v1::VM_STATE_RUNNING) << vm.message();
    EXPECT_FALSE(vm.incoming());
  }
  {
    grpc::ClientContext context;
    flotilla::v1::ListAgentVmsResponse list;
    ASSERT_TRUE(a.api().ListVms(&context, flotilla::v1::ListAgentVmsRequest(), &list).ok());
    EXPECT_EQ(list.vms_size(), 0) << "the source still holds the VM";
  }
  ping = (*client_ns)->exec({"ping", "-c", "3", "-i", "0.2", "-W", "2", kVmIp});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_TRUE(ping->status.success()) << "no ping answer from host B: " << ping->out;
  std::vector<absl::Time> replies = prober.replies();
  ASSERT_FALSE(replies.empty());
  EXPECT_GT(replies.back(), end) << "no echo from host B after the migration";
  absl::Duration longest_gap;
  for (size_t i = 1; i < replies.size(); ++i) {
    if (replies[i] < begin) continue;
    longest_gap = std::max(longest_gap, replies[i] - replies[i - 1]);
  }
  const uint32_t lost = prober.sent() - static_cast<uint32_t>(replies.size());
  std::printf(
      "migration A -> B: %.1f ms from PrepareIncoming to both FinishMigration, longest "
      "echo gap %.2f ms, %u of %u probes lost\n",
      absl::ToDoubleMilliseconds(end - begin), absl::ToDoubleMilliseconds(longest_gap), lost,
      prober.sent());
  ::testing::Test::RecordProperty("longest_echo_gap_us",
                                  std::to_string(absl::ToInt64Microseconds(longest_gap)));
  ::testing::Test::RecordProperty("lost_probes", std::to_string(lost));
}

TEST(AgentMigrationTest, LiveMigratesAVmWithAnIscsiDiskToAnotherHostWhileAClientProbesIt) {
  ::flotilla::testing::Traces traces;
  liveMigrateWhileAClientProbes(traces);
  // Nothing of the test is left on the machine: no namespace, link, process, file or cgroup.
  EXPECT_THAT(::flotilla::testing::findLeftovers(traces), ::testing::IsEmpty());
}

}  // namespace
}  // namespace flotilla::agent
