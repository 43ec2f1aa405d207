// flotilla-controller's configuration and the request checks that need no cluster state.
#include "controller/config.h"

#include "controller/api/validation.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::controller {
namespace {

using ::testing::HasSubstr;

TEST(ControllerConfigTest, MinimalFileTakesTheDefaults) {
  auto config = parseControllerConfig(
      "name: ctl-1\nplaintext: true\netcd:\n  endpoints: [127.0.0.1:2379]\n"
      "agents:\n  plaintext: true\n",
      "controller.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "0.0.0.0:7000");
  EXPECT_EQ(config->election_ttl, absl::Seconds(5));
  EXPECT_EQ(config->scheduler.strategy, "spread");
  EXPECT_EQ(config->migrations.per_cluster, 8u);
  EXPECT_FALSE(config->rebalance.automatic);
}

TEST(ControllerConfigTest, TheExampleFileIsValid) {
  auto config = loadControllerConfig(FLOTILLA_SOURCE_DIR "/deploy/controller.example.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "ctl-1");
  EXPECT_EQ(config->etcd_endpoints.size(), 3u);
  EXPECT_EQ(config->agents_tls.cert_file, "/etc/flotilla/pki/ctl-1.pem");
  EXPECT_EQ(config->host_fence_timeout, absl::Seconds(10));
}

TEST(ControllerConfigTest, ErrorsNameTheKeyAndTheFix) {
  auto config = parseControllerConfig("name: ctl-1\nlisten: 1\n", "c.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("etcd.endpoints is empty"));
  EXPECT_THAT(config.status().message(), HasSubstr("tls.ca, tls.cert and tls.key are required"));
  config = parseControllerConfig(
      "plaintext: true\netcd: {endpoints: [a:1]}\nagents: {plaintext: true}\n"
      "election_ttl: 1s\nscheduler: {strategy: random}\nunknown_key: 1\n",
      "c.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("unknown_key"));
}

TEST(ControllerConfigTest, CrossKeyChecks) {
  auto config = parseControllerConfig(
      "plaintext: true\netcd: {endpoints: [a:1]}\nagents: {plaintext: true}\n"
      "election_ttl: 1500ms\nscheduler: {strategy: random}\nmigrations: {per_source: 0}\n",
      "c.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("election_ttl must be whole seconds"));
  EXPECT_THAT(config.status().message(), HasSubstr("scheduler.strategy 'random'"));
  EXPECT_THAT(config.status().message(), HasSubstr("per_source"));
}

v1::CreateVmClusterRequest goodVm() {
  v1::CreateVmClusterRequest request;
  request.set_name("web-1");
  request.mutable_spec()->set_vcpus(2);
  request.mutable_spec()->set_memory_bytes(256 << 20);
  request.mutable_spec()->mutable_boot()->set_kernel("/boot/guest.elf");
  return request;
}

TEST(ControllerValidationTest, VmRequests) {
  EXPECT_TRUE(validateVmRequest(goodVm()).ok());
  auto request = goodVm();
  request.mutable_spec()->set_memory_bytes((256 << 20) + 1);
  EXPECT_THAT(validateVmRequest(request).message(), HasSubstr("whole number of MiB"));
  request = goodVm();
  request.mutable_spec()->mutable_boot()->clear_kernel();
  EXPECT_THAT(validateVmRequest(request).message(), HasSubstr("spec.boot.kernel is empty"));
  request = goodVm();
  for (int i = 0; i < 2; ++i) {
    v1::DiskSpec* disk = request.mutable_spec()->add_disks();
    disk->set_pool("san");
    disk->set_volume("d");
  }
  EXPECT_THAT(validateVmRequest(request).message(), HasSubstr("san/d is given twice"));
  request = goodVm();
  request.mutable_placement()->set_affinity_group("g");
  request.mutable_placement()->set_anti_affinity_group("g");
  EXPECT_THAT(validateVmRequest(request).message(), HasSubstr("cannot be in both"));
}

TEST(ControllerValidationTest, NetworksPoolsVolumes) {
  v1::NetworkRecord network;
  network.mutable_meta()->set_name("blue");
  network.set_vlan(0);
  EXPECT_THAT(validateNetwork(network).message(), HasSubstr("1 to 4094"));
  v1::PoolRecord pool;
  pool.mutable_meta()->set_name("local");
  pool.set_type(v1::POOL_TYPE_DIR);
  pool.set_shared(true);
  EXPECT_THAT(validatePool(pool).message(), HasSubstr("cannot be shared"));
  v1::CreateVolumeRequest volume;
  volume.set_pool("san");
  volume.set_name("v");
  volume.set_size_bytes(1000);
  EXPECT_THAT(validateVolumeRequest(volume).message(), HasSubstr("at least 1 MiB"));
}

TEST(ControllerStoreTest, KeysFollowTheDocumentedLayout) {
  EXPECT_EQ(vmKey("web"), "/flotilla/v1/vms/web");
  EXPECT_EQ(vmStatusKey("web"), "/flotilla/v1/vms-status/web");
  EXPECT_EQ(hostStatusKey("h"), "/flotilla/v1/hosts-status/h");
  EXPECT_EQ(volumeKey("san", "d"), "/flotilla/v1/volumes/san/d");
  EXPECT_EQ(keyName("/flotilla/v1/drains/host-a"), "host-a");
}

}  // namespace
}  // namespace flotilla::controller
