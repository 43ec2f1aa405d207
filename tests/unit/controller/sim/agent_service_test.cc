// The simulator's AgentService without etcd: VM lifecycle with the real agent's semantics
// through gRPC, dispatch by the x-flotilla-host metadata, memory accounting, the host report,
// volumes and a killed host.
#include <memory>

#include "common/testing/fake_clock.h"
#include "controller/sim/simulator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/controller/sim/sim_client.h"

namespace flotilla::sim {
namespace {

using flotilla::v1::VmState;
using ::testing::HasSubstr;
using testing::SimClient;
using testing::SimFixture;
using testing::Stub;

constexpr char kA[] = "sim-0001";
constexpr char kB[] = "sim-0002";

using SimAgentServiceTest = SimFixture;

TEST_F(SimAgentServiceTest, NamesItsHosts) {
  EXPECT_EQ(sim_->hostNames(), (std::vector<std::string>{"sim-0001", "sim-0002", "sim-0003"}));
  EXPECT_THAT(sim_->address(), HasSubstr("127.0.0.1:"));
}

TEST_F(SimAgentServiceTest, CreateStartStopDelete) {
  auto created = client_->createVm(kA, "web-1", 512, /*start=*/true);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), VmState::VM_STATE_RUNNING);
  EXPECT_EQ(created->uid(), "web-1");
  EXPECT_NE(created->vmm_pid(), 0u);
  EXPECT_FALSE(created->incoming());

  auto got = client_->getVm(kA, "web-1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), VmState::VM_STATE_RUNNING);
  EXPECT_GT(got->usage().cpu_cores(), 0.0);

  auto stopped = client_->stopVm(kA, "web-1");
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->state(), VmState::VM_STATE_STOPPED);
  EXPECT_EQ(stopped->vmm_pid(), 0u);
  EXPECT_EQ(client_->stopVm(kA, "web-1")->state(), VmState::VM_STATE_STOPPED);  // again: OK

  auto started = client_->startVm(kA, "web-1");
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->state(), VmState::VM_STATE_RUNNING);

  auto list = client_->call<flotilla::v1::ListAgentVmsResponse>(
      kA, &Stub::ListVms, flotilla::v1::ListAgentVmsRequest());
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->vms_size(), 1);
  EXPECT_EQ(list->vms(0).name(), "web-1");

  ASSERT_TRUE(client_->deleteVm(kA, "web-1").ok());
  EXPECT_EQ(client_->getVm(kA, "web-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->deleteVm(kA, "web-1").ok());  // NotFound is OK
  // The VM was on host A only.
  EXPECT_EQ(client_->getVm(kB, "web-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SimAgentServiceTest, CreateWithoutStartIsStopped) {
  auto created = client_->createVm(kA, "db-1", 512, /*start=*/false);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), VmState::VM_STATE_STOPPED);
  EXPECT_EQ(created->message(), "created");
  EXPECT_EQ(sim_->host(kA)->memoryInUse(), 0u);
}

TEST_F(SimAgentServiceTest, CreateIsIdempotentByNameUidAndSpec) {
  ASSERT_TRUE(client_->createVm(kA, "web-1", 512, true, "uid-1").ok());
  auto again = client_->createVm(kA, "web-1", 512, true, "uid-1");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->uid(), "uid-1");
  auto other_uid = client_->createVm(kA, "web-1", 512, true, "uid-2");
  EXPECT_EQ(other_uid.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(other_uid.status().message()), HasSubstr("web-1"));
  auto other_spec = client_->createVm(kA, "web-1", 1024, true, "uid-1");
  EXPECT_EQ(other_spec.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(SimAgentServiceTest, CallsWithoutHostMetadataAreInvalid) {
  auto result = client_->createVm("", "web-1", 512, true);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("x-flotilla-host"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("sim-0001 to sim-0003"));
}

// Simulated hosts have no DRBD pools: the migration driver's PrepareOutgoing is a no-op.
TEST_F(SimAgentServiceTest, PrepareOutgoingIsANoOp) {
  flotilla::v1::AgentVmRequest request;
  request.set_name("web-1");
  auto readied =
      client_->call<flotilla::v1::PrepareOutgoingResponse>(kA, &Stub::PrepareOutgoing, request);
  EXPECT_TRUE(readied.ok()) << readied.status();
  auto unknown = client_->call<flotilla::v1::PrepareOutgoingResponse>(
      "sim-0042", &Stub::PrepareOutgoing, request);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SimAgentServiceTest, CallsForUnknownHostsAreNotFound) {
  auto result = client_->getHost("sim-0042");
  ASSERT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("sim-0042"));
}

TEST_F(SimAgentServiceTest, RefusesBadSpecsNamingTheField) {
  flotilla::v1::CreateVmRequest request;
  request.set_name("Bad_Name");
  *request.mutable_spec() = SimClient::spec(512);
  auto bad_name = client_->call<flotilla::v1::AgentVm>(kA, &Stub::CreateVm, request);
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_name.status().message()), HasSubstr("Bad_Name"));

  request.set_name("vm-1");
  request.mutable_spec()->set_vcpus(0);
  EXPECT_THAT(
      std::string(
          client_->call<flotilla::v1::AgentVm>(kA, &Stub::CreateVm, request).status().message()),
      HasSubstr("vcpus"));

  request.mutable_spec()->set_vcpus(1);
  request.mutable_spec()->set_cpu_model("x86-64-v4");
  auto model = client_->call<flotilla::v1::AgentVm>(kA, &Stub::CreateVm, request);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("x86-64-v4"));

  request.mutable_spec()->set_cpu_model("x86-64-v3");
  request.mutable_spec()->add_nics()->set_network("blue");
  auto nic = client_->call<flotilla::v1::AgentVm>(kA, &Stub::CreateVm, request);
  EXPECT_EQ(nic.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nic.status().message()), HasSubstr("'blue'"));

  flotilla::v1::NetworkBinding* binding = request.add_networks();
  binding->set_name("blue");
  binding->set_vlan(100);
  flotilla::v1::DiskSpec* disk = request.mutable_spec()->add_disks();
  disk->set_pool("local");
  disk->set_volume("root");
  auto pool = client_->call<flotilla::v1::AgentVm>(kA, &Stub::CreateVm, request);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(pool.status().message()), HasSubstr("pool 'local'"));

  disk->set_pool("shared");
  auto created = client_->call<flotilla::v1::AgentVm>(kA, &Stub::CreateVm, request);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_EQ(created->nics_size(), 1);
  EXPECT_EQ(created->nics(0).vlan(), 100u);
  EXPECT_THAT(created->nics(0).mac(), HasSubstr("02:f1:"));
  EXPECT_EQ(created->nics(0).tap().size(), 13u);
  ASSERT_EQ(created->disks_size(), 1);
  EXPECT_EQ(created->disks(0).volume(), "root");
}

TEST_F(SimAgentServiceTest, MemoryBeyondTheHostIsResourceExhausted) {
  ASSERT_TRUE(client_->createVm(kA, "big", 3072, true).ok());
  auto second = client_->createVm(kA, "more", 2048, true);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("sim-0001"));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("'more'"));
  // Nothing was left of it.
  EXPECT_EQ(client_->getVm(kA, "more").status().code(), absl::StatusCode::kNotFound);
  // Another host has room.
  EXPECT_TRUE(client_->createVm(kB, "more", 2048, true).ok());

  // Defined stopped it takes no memory; starting it needs the memory.
  ASSERT_TRUE(client_->createVm(kA, "later", 2048, false).ok());
  EXPECT_EQ(client_->startVm(kA, "later").status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(client_->stopVm(kA, "big").ok());
  EXPECT_TRUE(client_->startVm(kA, "later").ok());
  EXPECT_EQ(sim_->host(kA)->memoryInUse(), uint64_t{2048} << 20);
}

TEST_F(SimAgentServiceTest, HostReportsInventoryLoadAndVms) {
  ASSERT_TRUE(client_->createVm(kA, "web-1", 1024, true).ok());
  ASSERT_TRUE(client_->createVm(kA, "web-2", 512, true).ok());
  ASSERT_TRUE(client_->createVm(kA, "idle", 512, false).ok());
  auto host = client_->getHost(kA);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->name(), kA);
  EXPECT_EQ(host->agent_address(), sim_->address());
  EXPECT_EQ(host->migration_address(), "127.0.0.1");
  EXPECT_EQ(host->inventory().cpus(), 8u);
  EXPECT_EQ(host->inventory().memory_bytes(), uint64_t{4} << 30);
  EXPECT_THAT(host->inventory().cpu_models(), ::testing::Contains("host"));
  EXPECT_THAT(host->inventory().pools(), ::testing::ElementsAre("shared"));
  EXPECT_EQ(host->load().vms_running(), 2u);
  EXPECT_EQ(host->load().vm_memory_bytes(), uint64_t{1536} << 20);
  ASSERT_EQ(host->vms_size(), 3);
  double cores = 0;
  SimulatorOptions defaults;
  for (const flotilla::v1::HostVm& vm : host->vms()) {
    if (vm.name() == "idle") {
      EXPECT_EQ(vm.usage().cpu_cores(), 0.0);
      continue;
    }
    // Each VM uses its fixed share of its vCPUs.
    EXPECT_DOUBLE_EQ(vm.usage().cpu_cores(), vmCpuFraction(defaults, vm.name()) * vm.vcpus());
    cores += vm.usage().cpu_cores();
  }
  EXPECT_DOUBLE_EQ(host->load().cpu_busy(), cores / 8);
  EXPECT_EQ(host->updated_unix_ms(), absl::ToUnixMillis(clock_.now()));

  // CPU time accumulates with (simulated) time.
  clock_.advance(absl::Seconds(10));
  auto later = client_->getVm(kA, "web-1");
  ASSERT_TRUE(later.ok());
  EXPECT_NEAR(static_cast<double>(later->usage().cpu_time_ns()), later->usage().cpu_cores() * 10e9,
              1e3);
}

TEST_F(SimAgentServiceTest, VolumesAreSharedByEveryHost) {
  flotilla::v1::VolumeRequest request;
  request.set_pool("shared");
  request.set_volume("disk-1");
  request.set_size_bytes(uint64_t{1} << 30);
  auto created = client_->call<flotilla::v1::Volume>(kA, &Stub::CreateVolume, request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(client_->call<flotilla::v1::Volume>(kA, &Stub::CreateVolume, request).status().code(),
            absl::StatusCode::kAlreadyExists);

  flotilla::v1::ListVolumesRequest list;
  list.set_pool("shared");
  auto listed = client_->call<flotilla::v1::ListVolumesResponse>(kB, &Stub::ListVolumes, list);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->volumes_size(), 1);
  EXPECT_EQ(listed->volumes(0).name(), "disk-1");

  request.set_size_bytes(uint64_t{2} << 30);
  auto resized = client_->call<flotilla::v1::Volume>(kB, &Stub::ResizeVolume, request);
  ASSERT_TRUE(resized.ok()) << resized.status();
  EXPECT_EQ(resized->size_bytes(), uint64_t{2} << 30);
  request.set_size_bytes(1);
  EXPECT_EQ(client_->call<flotilla::v1::Volume>(kB, &Stub::ResizeVolume, request).status().code(),
            absl::StatusCode::kFailedPrecondition);

  flotilla::v1::CloneVolumeRequest clone;
  clone.set_pool("shared");
  clone.set_source("disk-1");
  clone.set_target("disk-2");
  ASSERT_TRUE(client_->call<flotilla::v1::Volume>(kA, &Stub::CloneVolume, clone).ok());

  ASSERT_TRUE(
      client_->call<flotilla::v1::DeleteVolumeResponse>(kA, &Stub::DeleteVolume, request).ok());
  EXPECT_TRUE(client_->call<flotilla::v1::DeleteVolumeResponse>(kA, &Stub::DeleteVolume, request)
                  .ok());  // absent: OK
  listed = client_->call<flotilla::v1::ListVolumesResponse>(kA, &Stub::ListVolumes, list);
  ASSERT_EQ(listed->volumes_size(), 1);
  EXPECT_EQ(listed->volumes(0).name(), "disk-2");

  request.set_pool("local");
  auto unknown = client_->call<flotilla::v1::Volume>(kA, &Stub::CreateVolume, request);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("pool 'local'"));
}

TEST_F(SimAgentServiceTest, KilledHostIsUnavailableAndComesBackWithItsVmsFailed) {
  ASSERT_TRUE(client_->createVm(kA, "web-1", 512, true).ok());
  ASSERT_TRUE(client_->createVm(kA, "off", 512, false).ok());
  ASSERT_TRUE(sim_->killHost(kA).ok());
  auto down = client_->getVm(kA, "web-1");
  ASSERT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(down.status().message()), HasSubstr("sim-0001"));
  EXPECT_TRUE(client_->getHost(kB).ok());  // the others serve on

  ASSERT_TRUE(sim_->reviveHost(kA).ok());
  auto failed = client_->getVm(kA, "web-1");
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->state(), VmState::VM_STATE_FAILED);
  EXPECT_EQ(failed->vmm_pid(), 0u);
  EXPECT_EQ(client_->getVm(kA, "off")->state(), VmState::VM_STATE_STOPPED);
  EXPECT_EQ(sim_->host(kA)->memoryInUse(), 0u);
  // It can be started again.
  EXPECT_EQ(client_->startVm(kA, "web-1")->state(), VmState::VM_STATE_RUNNING);
  EXPECT_EQ(sim_->killHost("sim-0099").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace flotilla::sim
