// flotilla-controller against the real thing: 3 replicas, a 3-member etcd, agents on
// simulated hosts (namespaces with their own OVS, VXLAN between them), VMs with iSCSI disks
// on tgtd. The leader is killed with SIGKILL during a drain and an etcd member dies: the
// drain still completes, and every VM still answers UDP echo from a client on its network.
// A host whose agent and VMMs die has its HA VM restarted elsewhere, under a new generation.
#include <signal.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "common/etcd/client.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/controller/controller_cluster.h"
#include "tests/support/netns.h"
#include "tests/support/vmm_process.h"

namespace flotilla::controller {
namespace {

using ::flotilla::controller::testing::ControllerCluster;
using ::flotilla::controller::testing::testVm;
using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::VethPair;
using ::testing::HasSubstr;

using Stub = v1::ClusterService::Stub;

// Creates network "blue" (VLAN 100), pool "san" (managed by host 0) and one volume per VM.
void createNetworkAndStorage(ControllerCluster& cluster, const std::vector<std::string>& volumes) {
  v1::NetworkRecord blue;
  blue.mutable_meta()->set_name("blue");
  blue.set_vlan(100);
  v1::NetworkRecord made_network;
  grpc::Status status = cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreateNetwork(&context, blue, &made_network);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::PoolRecord san;
  san.mutable_meta()->set_name("san");
  san.set_type(v1::POOL_TYPE_ISCSI);
  san.set_manager_host(cluster.host(0).name());
  v1::PoolRecord made_pool;
  status = cluster.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreatePool(&context, san, &made_pool);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(made_pool.shared());
  for (const std::string& volume : volumes) {
    v1::CreateVolumeRequest request;
    request.set_pool("san");
    request.set_name(volume);
    request.set_size_bytes(uint64_t{16} << 20);
    v1::VolumeRecord made;
    // The pool's host must have reported first: retry while it has not.
    for (int attempt = 0; attempt < 100; ++attempt) {
      status = cluster.call([&](Stub& stub, grpc::ClientContext& context) {
        return stub.CreateVolume(&context, request, &made);
      });
      if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_TRUE(status.ok()) << volume << ": " << status.error_message();
  }
}

bool running(const v1::Vm& vm) {
  return vm.status().state() == v1::VM_STATE_RUNNING && !vm.status().host().empty();
}

// A client namespace on VLAN 100 of `host`'s integration bridge.
struct Client {
  std::unique_ptr<NetNamespace> ns;
  std::optional<VethPair> veth;
  UniqueFd socket;
};

absl::StatusOr<Client> attachClient(agent::testing::AgentHost& host) {
  Client client;
  ASSIGN_OR_RETURN(client.ns, NetNamespace::create("ctlc"));
  ASSIGN_OR_RETURN(client.veth,
                   VethPair::create({.ns = client.ns.get(), .name = "eth0", .cidr = "10.78.0.1/24"},
                                    {.ns = &host.ns(), .name = "client0", .cidr = ""}));
  RETURN_IF_ERROR(::flotilla::testing::disableInterfaceOffloads(client.ns.get(), "eth0"));
  RETURN_IF_ERROR(::flotilla::testing::disableInterfaceOffloads(&host.ns(), "client0"));
  RETURN_IF_ERROR(host.ovs().addPort("br-int", "client0", 100));
  ASSIGN_OR_RETURN(client.socket, client.ns->udpSocket());
  return client;
}

bool answers(Client& client, const std::string& ip, int sequence) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::flotilla::testing::udpEchoed(client.socket.get(), ip, sequence * 100 + attempt,
                                       absl::Milliseconds(200))) {
      return true;
    }
  }
  return false;
}

TEST(ControllerTest, DrainCompletesAlthoughTheLeaderIsKilledAndAnEtcdMemberDies) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  auto cluster = ControllerCluster::start({});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ControllerCluster& c = **cluster;
  auto first_leader = c.waitForLeader(absl::Seconds(30));
  ASSERT_TRUE(first_leader.ok()) << first_leader.status();

  const std::vector<std::string> names = {"vm-1", "vm-2", "vm-3", "vm-4"};
  std::vector<std::string> volumes;
  for (const std::string& name : names) volumes.push_back(name + "-disk");
  createNetworkAndStorage(c, volumes);
  if (HasFatalFailure()) return;
  for (size_t i = 0; i < names.size(); ++i) {
    v1::CreateVmClusterRequest request =
        testVm(names[i], fmt::format("10.78.0.{}", 10 + i), volumes[i], false);
    v1::Vm created;
    grpc::Status status = c.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.CreateVm(&context, request, &created);
    });
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  std::map<std::string, std::string> placed;
  for (const std::string& name : names) {
    auto vm = c.waitForVm(name, running, absl::Seconds(90));
    ASSERT_TRUE(vm.ok()) << vm.status();
    placed[name] = vm->status().host();
  }
  // Spread: 4 VMs over 3 hosts use every host.
  std::set<std::string> used;
  for (const auto& [name, host] : placed) used.insert(host);
  EXPECT_EQ(used.size(), 3u);

  auto client = attachClient(c.host(0));
  ASSERT_TRUE(client.ok()) << client.status();
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_TRUE(answers(*client, fmt::format("10.78.0.{}", 10 + i), 1)) << names[i];
  }

  // Drain the host of vm-1; kill the leader with SIGKILL at once, then an etcd member.
  const std::string drained = placed["vm-1"];
  v1::DrainHostRequest drain;
  drain.set_name(drained);
  v1::DrainRecord started;
  grpc::Status status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.DrainHost(&context, drain, &started);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(started.phase(), v1::DRAIN_PHASE_RUNNING);
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(c.killController(*first_leader).ok());
  auto second_leader = c.waitForLeader(absl::Seconds(30), *first_leader);
  ASSERT_TRUE(second_leader.ok()) << second_leader.status();
  std::printf("new leader ctl-%d %.0f ms after SIGKILL of ctl-%d\n", *second_leader + 1,
              absl::ToDoubleMilliseconds(absl::Now() - killed), *first_leader + 1);
  ASSERT_TRUE(c.etcd().kill(0).ok());

  v1::DrainRecord record;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (absl::Now() < deadline) {
    v1::NameRequest request;
    request.set_name(drained);
    status = c.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.GetDrain(&context, request, &record);
    });
    if (status.ok() && record.phase() != v1::DRAIN_PHASE_RUNNING) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(record.phase(), v1::DRAIN_PHASE_SUCCEEDED) << record.ShortDebugString() << c.logs();
  std::printf("drain of %s: %s\n", drained.c_str(), record.message().c_str());

  // Nothing is left on the drained host; every VM runs elsewhere and still answers.
  for (size_t i = 0; i < names.size(); ++i) {
    auto vm = c.waitForVm(names[i], running, absl::Seconds(30));
    ASSERT_TRUE(vm.ok()) << vm.status();
    EXPECT_NE(vm->status().host(), drained) << names[i];
    EXPECT_TRUE(answers(*client, fmt::format("10.78.0.{}", 10 + i), 2)) << names[i];
  }
  for (int index = 0; index < c.hostCount(); ++index) {
    if (c.host(index).name() != drained) continue;
    grpc::ClientContext context;
    v1::ListAgentVmsResponse on_host;
    ASSERT_TRUE(c.host(index).api().ListVms(&context, v1::ListAgentVmsRequest(), &on_host).ok());
    EXPECT_EQ(on_host.vms_size(), 0) << on_host.ShortDebugString();
  }
  v1::NameRequest host_request;
  host_request.set_name(drained);
  v1::Host host;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.GetHost(&context, host_request, &host);
  });
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(host.record().cordoned());
}

TEST(ControllerTest, RestartsTheHaVmsOfALostHostElsewhere) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  auto cluster = ControllerCluster::start({.hosts = 2, .controllers = 1, .etcd_members = 1});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ControllerCluster& c = **cluster;
  ASSERT_TRUE(c.waitForLeader(absl::Seconds(30)).ok());
  createNetworkAndStorage(c, {"ha-disk", "plain-disk"});
  if (HasFatalFailure()) return;
  // Both VMs on host 1: host 0 (the storage manager) is cordoned while they are placed.
  v1::CordonHostRequest cordon;
  cordon.set_name(c.host(0).name());
  v1::Host ignored;
  grpc::Status status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CordonHost(&context, cordon, &ignored);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  uint64_t first_generation = 0;
  for (auto [name, volume, ha] :
       {std::tuple{"ha", "ha-disk", true}, std::tuple{"plain", "plain-disk", false}}) {
    v1::CreateVmClusterRequest request = testVm(name, ha ? "10.78.0.20" : "10.78.0.21", volume, ha);
    v1::Vm created;
    status = c.call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.CreateVm(&context, request, &created);
    });
    ASSERT_TRUE(status.ok()) << status.error_message();
    auto vm = c.waitForVm(name, running, absl::Seconds(90));
    ASSERT_TRUE(vm.ok()) << vm.status();
    ASSERT_EQ(vm->status().host(), c.host(1).name());
    if (ha) first_generation = vm->status().generation();
  }
  // A new VM's generation is at least the Unix time (a volume's reservation keeps the newest
  // generation it saw, also after its VM was deleted).
  EXPECT_GE(first_generation, static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now()) - 600));
  v1::NameRequest uncordon;
  uncordon.set_name(c.host(0).name());
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.UncordonHost(&context, uncordon, &ignored);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();

  // Host 1 dies: its agent and its VMMs.
  const absl::Time lost = absl::Now();
  ASSERT_TRUE(c.host(1).killAgent().ok());
  c.host(1).killVmms();
  auto ha = c.waitForVm(
      "ha", [&](const v1::Vm& vm) { return running(vm) && vm.status().host() == c.host(0).name(); },
      absl::Seconds(60));
  ASSERT_TRUE(ha.ok()) << ha.status();
  std::printf("HA vm running on %s %.1f s after its host died (lease TTL 4 s, fence timeout 2 s)\n",
              ha->status().host().c_str(), absl::ToDoubleSeconds(absl::Now() - lost));
  EXPECT_GT(ha->status().generation(), first_generation);
  EXPECT_EQ(ha->status().restarts(), 1u);
  auto client = attachClient(c.host(0));
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE(answers(*client, "10.78.0.20", 1));
  auto plain = c.waitForVm(
      "plain", [](const v1::Vm& vm) { return vm.status().state() == v1::VM_STATE_FAILED; },
      absl::Seconds(30));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->status().host(), c.host(1).name());
  EXPECT_THAT(plain->status().message(), HasSubstr("not HA"));

  v1::NameRequest host_request;
  host_request.set_name(c.host(1).name());
  v1::Host host;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.GetHost(&context, host_request, &host);
  });
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(host.record().state(), v1::HOST_STATE_FENCED);
  EXPECT_FALSE(host.reporting());
}

}  // namespace
}  // namespace flotilla::controller

namespace flotilla::controller {
namespace {

grpc::Status createVm(ControllerCluster& c, const v1::CreateVmClusterRequest& request) {
  v1::Vm vm;
  return c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreateVm(&context, request, &vm);
  });
}

TEST(ControllerApiTest, BadRequestsGetClearErrorsAndLeaveNothingBehind) {
  auto cluster =
      ControllerCluster::start({.hosts = 0, .controllers = 2, .etcd_members = 1, .storage = false});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ControllerCluster& c = **cluster;
  ASSERT_TRUE(c.waitForLeader(absl::Seconds(30)).ok());

  v1::CreateVmClusterRequest bad = testVm("vm-a", "10.78.0.2", "a-disk", false);
  bad.mutable_spec()->set_vcpus(0);
  grpc::Status status = createVm(c, bad);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.vcpus"));
  status = createVm(c, testVm("Web_1", "10.78.0.2", "", false));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("Web_1"));

  status = createVm(c, testVm("vm-a", "10.78.0.2", "a-disk", false));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("network blue does not exist"));

  // A client watching networks (through the other replica) sees the one created next.
  grpc::ClientContext watch_context;
  watch_context.set_deadline(deadlineAfter(absl::Seconds(30)));
  v1::WatchRequest watch_request;
  watch_request.add_kinds(v1::OBJECT_KIND_NETWORK);
  auto watch = c.api(1).Watch(&watch_context, watch_request);
  v1::NetworkRecord blue;
  blue.mutable_meta()->set_name("blue");
  blue.set_vlan(100);
  v1::NetworkRecord network;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreateNetwork(&context, blue, &network);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::WatchEvent change;
  ASSERT_TRUE(watch->Read(&change)) << "the watch ended before any change";
  EXPECT_EQ(change.type(), v1::WatchEvent::TYPE_PUT);
  EXPECT_EQ(change.kind(), v1::OBJECT_KIND_NETWORK);
  EXPECT_EQ(change.network().vlan(), 100u);
  watch_context.TryCancel();
  status = createVm(c, testVm("vm-a", "10.78.0.2", "a-disk", false));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("pool san does not exist"));

  v1::PoolRecord san;
  san.mutable_meta()->set_name("san");
  san.set_type(v1::POOL_TYPE_ISCSI);
  v1::PoolRecord pool;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreatePool(&context, san, &pool);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  status = createVm(c, testVm("vm-a", "10.78.0.2", "a-disk", false));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("volume san/a-disk does not exist"));
  // A volume in the pool, as CreateVolume records it (there is no storage host here).
  v1::VolumeRecord volume;
  volume.mutable_meta()->set_name("a-disk");
  volume.set_pool("san");
  volume.set_size_bytes(16 << 20);
  {
    etcd::ClientOptions options;
    options.endpoints = {c.etcd().clientEndpoint(0)};
    auto etcd = etcd::EtcdClient::connect(options);
    ASSERT_TRUE(etcd.ok());
    ASSERT_TRUE((*etcd)->put("/flotilla/v1/volumes/san/a-disk", volume.SerializeAsString()).ok());
  }

  ASSERT_TRUE(createVm(c, testVm("vm-a", "10.78.0.2", "a-disk", false)).ok());
  status = createVm(c, testVm("vm-a", "10.78.0.2", "", false));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  status = createVm(c, testVm("vm-b", "10.78.0.3", "a-disk", false));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("already in use by vm vm-a"));
  v1::NameRequest vm_b;
  vm_b.set_name("vm-b");
  v1::Vm got;
  status = c.call(
      [&](Stub& stub, grpc::ClientContext& context) { return stub.GetVm(&context, vm_b, &got); });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << "half-created vm-b";

  // No host at all: the scheduler says why, instead of leaving it pending silently.
  auto pending = c.waitForVm(
      "vm-a", [](const v1::Vm& vm) { return vm.status().unschedulable_reasons_size() > 0; },
      absl::Seconds(20));
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(pending->status().state(), v1::VM_STATE_PENDING);

  v1::MigrateVmRequest migrate;
  migrate.set_name("vm-a");
  v1::MigrationRecord migration;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.MigrateVm(&context, migrate, &migration);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("only a running VM migrates"));
  v1::DrainHostRequest drain;
  drain.set_name("host-z");
  v1::DrainRecord drain_record;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.DrainHost(&context, drain, &drain_record);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("host host-z does not exist"));

  v1::NetworkRecord clash;
  clash.mutable_meta()->set_name("red");
  clash.set_vlan(100);
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreateNetwork(&context, clash, &network);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("already used by network blue"));
  clash.set_vlan(5000);
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.CreateNetwork(&context, clash, &network);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::NameRequest blue_name;
  blue_name.set_name("blue");
  v1::DeleteResponse deleted;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.DeleteNetwork(&context, blue_name, &deleted);
  });
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("used by vm vm-a"));

  // Conflicting concurrent writes through both replicas: eight networks want VLAN 200 at
  // once; exactly one gets it, the others are told why.
  std::vector<std::thread> writers;
  std::atomic<int> created{0};
  std::vector<grpc::StatusCode> codes(8);
  for (int i = 0; i < 8; ++i) {
    writers.emplace_back([&, i] {
      v1::NetworkRecord wanted;
      wanted.mutable_meta()->set_name(fmt::format("net-{}", i));
      wanted.set_vlan(200);
      v1::NetworkRecord made;
      grpc::ClientContext context;
      context.set_deadline(deadlineAfter(absl::Seconds(20)));
      grpc::Status result = c.api(i % 2).CreateNetwork(&context, wanted, &made);
      codes[static_cast<size_t>(i)] = result.error_code();
      if (result.ok()) created.fetch_add(1);
    });
  }
  for (std::thread& writer : writers) writer.join();
  EXPECT_EQ(created.load(), 1);
  for (grpc::StatusCode code : codes) {
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::ALREADY_EXISTS ||
                code == grpc::StatusCode::ABORTED)
        << code;
  }

  // A VM that was never placed is deleted at once, and its volume is free again.
  v1::NameRequest vm_a;
  vm_a.set_name("vm-a");
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.DeleteVm(&context, vm_a, &deleted);
  });
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::ListVolumesClusterRequest list;
  v1::ListVolumesClusterResponse volumes;
  status = c.call([&](Stub& stub, grpc::ClientContext& context) {
    return stub.ListVolumes(&context, list, &volumes);
  });
  ASSERT_TRUE(status.ok());
  ASSERT_EQ(volumes.volumes_size(), 1);
  EXPECT_EQ(volumes.volumes(0).attached_to(), "");
}

}  // namespace
}  // namespace flotilla::controller
