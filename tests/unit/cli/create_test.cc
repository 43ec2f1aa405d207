// clusterctl create, delete, vm, host, migration and rebalance verbs: the requests the
// controller receives, and what clusterctl prints.
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/cli/clusterctl_fixture.h"

namespace flotilla::cli::testing {
namespace {

using ::testing::HasSubstr;

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST_F(ClusterctlTest, CreateVmFlagsBecomeTheRequest) {
  RunResult result = run({"create",
                          "vm",
                          "app1",
                          "--memory",
                          "1G",
                          "--vcpus",
                          "4",
                          "--kernel",
                          "/boot/guest.elf",
                          "--initrd",
                          "/boot/initrd",
                          "--cmdline",
                          "console=ttyS0 quiet",
                          "--cpu-model",
                          "baseline-v2",
                          "--disk",
                          "shared/app1",
                          "--disk",
                          "local/scratch,ro",
                          "--nic",
                          "net1,mac=52:54:00:12:34:56",
                          "--nic",
                          "net2,offload",
                          "--ha",
                          "--policy",
                          "live-or-cold",
                          "--label",
                          "app=shop",
                          "--label",
                          "tier=web",
                          "--host-label",
                          "zone=a",
                          "--affinity",
                          "shop",
                          "--anti-affinity",
                          "web",
                          "--pin",
                          "host-a",
                          "--no-start"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "vm/app1 created: Pending (not started: clusterctl vm start app1)\n");
  auto request = fake().lastRequest<v1::CreateVmClusterRequest>("CreateVm");
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->name(), "app1");
  EXPECT_FALSE(request->start());
  const v1::VmSpec& spec = request->spec();
  EXPECT_EQ(spec.memory_bytes(), uint64_t{1} << 30);
  EXPECT_EQ(spec.vcpus(), 4u);
  EXPECT_EQ(spec.cpu_model(), "baseline-v2");
  EXPECT_EQ(spec.boot().kernel(), "/boot/guest.elf");
  EXPECT_EQ(spec.boot().initrd(), "/boot/initrd");
  EXPECT_EQ(spec.boot().cmdline(), "console=ttyS0 quiet");
  ASSERT_EQ(spec.disks_size(), 2);
  EXPECT_EQ(spec.disks(0).pool(), "shared");
  EXPECT_EQ(spec.disks(0).volume(), "app1");
  EXPECT_FALSE(spec.disks(0).read_only());
  EXPECT_EQ(spec.disks(1).pool(), "local");
  EXPECT_EQ(spec.disks(1).volume(), "scratch");
  EXPECT_TRUE(spec.disks(1).read_only());
  ASSERT_EQ(spec.nics_size(), 2);
  EXPECT_EQ(spec.nics(0).network(), "net1");
  EXPECT_EQ(spec.nics(0).mac(), "52:54:00:12:34:56");
  EXPECT_EQ(spec.nics(1).network(), "net2");
  EXPECT_TRUE(spec.nics(1).offload());
  EXPECT_TRUE(spec.ha());
  EXPECT_EQ(spec.migration_policy(), v1::MIGRATION_POLICY_LIVE_OR_COLD);
  EXPECT_EQ(request->labels().at("app"), "shop");
  EXPECT_EQ(request->labels().at("tier"), "web");
  const v1::VmPlacement& placement = request->placement();
  EXPECT_EQ(placement.host_labels().at("zone"), "a");
  EXPECT_EQ(placement.affinity_group(), "shop");
  EXPECT_EQ(placement.anti_affinity_group(), "web");
  EXPECT_EQ(placement.host(), "host-a");
}

TEST_F(ClusterctlTest, CreateVmDefaultsAndMemoryUnits) {
  RunResult result = run({"create", "vm", "tiny", "--kernel", "/k"});
  ASSERT_EQ(result.code, 0) << result;
  auto request = fake().lastRequest<v1::CreateVmClusterRequest>("CreateVm");
  EXPECT_EQ(request->spec().vcpus(), 1u);
  EXPECT_EQ(request->spec().memory_bytes(), uint64_t{256} << 20);
  EXPECT_TRUE(request->start());
  EXPECT_EQ(request->spec().migration_policy(), v1::MIGRATION_POLICY_UNSPECIFIED);

  for (const auto& [text, bytes] :
       std::vector<std::pair<std::string, uint64_t>>{{"512M", uint64_t{512} << 20},
                                                     {"2GiB", uint64_t{2} << 30},
                                                     {"65536K", 65536ull << 10},
                                                     {"1073741824", uint64_t{1} << 30}}) {
    RunResult sized =
        run({"create", "vm", "m" + std::to_string(bytes), "--kernel", "/k", "--memory", text});
    ASSERT_EQ(sized.code, 0) << sized;
    EXPECT_EQ(fake().lastRequest<v1::CreateVmClusterRequest>("CreateVm")->spec().memory_bytes(),
              bytes)
        << text;
  }
}

TEST_F(ClusterctlTest, CreateVmBadFlagsAreUsageErrorsAndSendNothing) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--memory", "1.5G"}, "--memory: expected a byte size"},
      {{"--memory", "10MB"}, "--memory: expected a byte size"},
      {{"--disk", "novolume"}, "--disk novolume: expected POOL/VOLUME"},
      {{"--disk", "a/b,rw"}, "unknown setting 'rw'"},
      {{"--nic", "net1,mac=zz"}, "'zz' is not a MAC address"},
      {{"--nic", "mac=52:54:00:12:34:56"}, "the network's name first"},
      {{"--policy", "sometimes"}, "expected live, live-or-cold or cold"},
      {{"--label", "novalue"}, "--label novalue: expected KEY=VALUE"},
      {{"--vcpus", "0"}, "at least one vCPU"},
      {{"--vcpus", "many"}, "--vcpus"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"create", "vm", "bad", "--kernel", "/k"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    RunResult result = run(args);
    EXPECT_EQ(result.code, 2) << result;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << result;
    EXPECT_TRUE(result.err.starts_with("clusterctl: ")) << result;
  }
  RunResult no_kernel = run({"create", "vm", "bad"});
  EXPECT_EQ(no_kernel.code, 2) << no_kernel;
  EXPECT_THAT(no_kernel.err, HasSubstr("no kernel: give --kernel PATH"));
  RunResult no_name = run({"create", "vm", "--kernel", "/k"});
  EXPECT_EQ(no_name.code, 2) << no_name;
  EXPECT_THAT(no_name.err, HasSubstr("no name"));
  EXPECT_EQ(fake().callCount("CreateVm"), 0);
}

TEST_F(ClusterctlTest, CreateVmFromYamlFile) {
  const std::string path = dir_.file("vm.yaml");
  writeFile(path, R"(# a VM file
name: shop1
vcpus: 2
memory_bytes: 512M
cpu_model: host
boot:
  kernel: /var/lib/flotilla/guest.elf
  cmdline: console=ttyS0 workload=counter
disks:
  - {pool: shared, volume: shop1}
  - pool: shared
    volume: iso
    read_only: true
nics:
  - network: net1
    mac: "52:54:00:aa:bb:cc"
ha: true
migration_policy: live
placement:
  host_labels: {zone: a, ssd: "true"}
  anti_affinity_group: shop
labels:
  app: shop
start: false
)");
  RunResult result = run({"create", "vm", "-f", path});
  ASSERT_EQ(result.code, 0) << result;
  auto request = fake().lastRequest<v1::CreateVmClusterRequest>("CreateVm");
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->name(), "shop1");
  EXPECT_FALSE(request->start());
  EXPECT_EQ(request->spec().vcpus(), 2u);
  EXPECT_EQ(request->spec().memory_bytes(), uint64_t{512} << 20);
  EXPECT_EQ(request->spec().boot().cmdline(), "console=ttyS0 workload=counter");
  ASSERT_EQ(request->spec().disks_size(), 2);
  EXPECT_TRUE(request->spec().disks(1).read_only());
  EXPECT_EQ(request->spec().nics(0).mac(), "52:54:00:aa:bb:cc");
  EXPECT_TRUE(request->spec().ha());
  EXPECT_EQ(request->spec().migration_policy(), v1::MIGRATION_POLICY_LIVE);
  EXPECT_EQ(request->placement().host_labels().at("zone"), "a");
  EXPECT_EQ(request->placement().host_labels().at("ssd"), "true");
  EXPECT_EQ(request->placement().anti_affinity_group(), "shop");
  EXPECT_EQ(request->labels().at("app"), "shop");

  // Flags override the file: scalars replace, --disk replaces the disks, --label adds.
  RunResult overridden = run({"create", "vm", "shop2", "-f", path, "--memory", "1G", "--disk",
                              "shared/shop2", "--label", "tier=web"});
  EXPECT_EQ(overridden.code, 2) << overridden;  // the file names shop1
  EXPECT_THAT(overridden.err, HasSubstr("names the VM 'shop1'"));
  RunResult same_name = run({"create", "vm", "shop1", "-f", path, "--memory", "1G", "--disk",
                             "shared/other", "--label", "tier=web"});
  ASSERT_EQ(same_name.code, 5) << same_name;  // shop1 exists now: the server says so
  request = fake().lastRequest<v1::CreateVmClusterRequest>("CreateVm");
  EXPECT_EQ(request->spec().memory_bytes(), uint64_t{1} << 30);
  ASSERT_EQ(request->spec().disks_size(), 1);
  EXPECT_EQ(request->spec().disks(0).volume(), "other");
  EXPECT_EQ(request->labels().at("app"), "shop");
  EXPECT_EQ(request->labels().at("tier"), "web");
}

TEST_F(ClusterctlTest, BadVmFilesNameTheFileLineAndKey) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"name: x\nkernel: /k\n", ":2:1: unknown key 'kernel'"},
      {"name: x\nboot: {kernel: /k}\nmemory_bytes: lots\n", ":3:"},
      {"name: x\nboot: {kernel: /k}\nlabels: [a, b]\n", "key 'labels'"},
      {"name: x\nboot: {kernel: /k}\nmigration_policy: maybe\n", "expected live, live-or-cold"},
      {"name: x\nboot: {kernel: /k}\ndisks:\n  - pool: shared\n",
       "missing required key 'disks[0].volume'"},
      {"name: x\nboot: {kernel: /k}\nnics: [{network: n, mac: nope}]\n", "not a MAC address"},
      {"name: [x\n", "vm.yaml:"},
  };
  for (const Case& c : cases) {
    const std::string path = dir_.file("vm.yaml");
    writeFile(path, c.text);
    RunResult result = run({"create", "vm", "-f", path});
    EXPECT_EQ(result.code, 2) << c.text << result;
    EXPECT_THAT(result.err, HasSubstr(c.message)) << c.text << result;
  }
  RunResult missing = run({"create", "vm", "-f", dir_.file("absent.yaml")});
  EXPECT_EQ(missing.code, 2) << missing;
  EXPECT_THAT(missing.err, HasSubstr("absent.yaml"));
  EXPECT_EQ(fake().callCount("CreateVm"), 0);
}

TEST_F(ClusterctlTest, CreateAndDeleteNetworksPoolsAndVolumes) {
  RunResult network = run({"create", "network", "net2", "--vlan", "200", "--description", "db"});
  ASSERT_EQ(network.code, 0) << network;
  EXPECT_EQ(network.out, "network/net2 created (vlan 200)\n");
  auto network_request = fake().lastRequest<v1::NetworkRecord>("CreateNetwork");
  EXPECT_EQ(network_request->meta().name(), "net2");
  EXPECT_EQ(network_request->vlan(), 200u);
  EXPECT_EQ(network_request->description(), "db");

  RunResult pool =
      run({"create", "pool", "san", "--type", "iscsi", "--shared", "--manager", "storage"});
  ASSERT_EQ(pool.code, 0) << pool;
  EXPECT_EQ(pool.out, "pool/san created (iscsi, shared)\n");
  auto pool_request = fake().lastRequest<v1::PoolRecord>("CreatePool");
  EXPECT_EQ(pool_request->type(), v1::POOL_TYPE_ISCSI);
  EXPECT_TRUE(pool_request->shared());
  EXPECT_EQ(pool_request->manager_host(), "storage");

  RunResult volume = run({"create", "volume", "san/disk1", "--size", "10G"});
  ASSERT_EQ(volume.code, 0) << volume;
  EXPECT_EQ(volume.out, "volume/san/disk1 created (10G)\n");
  auto volume_request = fake().lastRequest<v1::CreateVolumeRequest>("CreateVolume");
  EXPECT_EQ(volume_request->pool(), "san");
  EXPECT_EQ(volume_request->name(), "disk1");
  EXPECT_EQ(volume_request->size_bytes(), uint64_t{10} << 30);

  RunResult delete_volume = run({"delete", "volume", "san/disk1"});
  ASSERT_EQ(delete_volume.code, 0) << delete_volume;
  EXPECT_EQ(delete_volume.out, "volume/san/disk1 deleted\n");
  RunResult delete_pool = run({"delete", "pool", "san"});
  ASSERT_EQ(delete_pool.code, 0) << delete_pool;
  RunResult delete_network = run({"delete", "network", "net2", "-o", "name"});
  ASSERT_EQ(delete_network.code, 0) << delete_network;
  EXPECT_EQ(delete_network.out, "network/net2\n");
}

TEST_F(ClusterctlTest, CreateUsageErrors) {
  EXPECT_EQ(run({"create", "network", "n", "--vlan", "5000"}).code, 2);
  EXPECT_EQ(run({"create", "network", "n"}).code, 2);  // --vlan is required
  EXPECT_EQ(run({"create", "pool", "p", "--type", "nfs"}).code, 2);
  EXPECT_EQ(run({"create", "pool", "p", "--type", "dir", "--shared"}).code, 2);
  EXPECT_EQ(run({"create", "volume", "novolume", "--size", "1G"}).code, 2);
  EXPECT_EQ(run({"create", "volume", "p/v", "--size", "big"}).code, 2);
  EXPECT_EQ(run({"delete", "host", "host-a"}).code, 2);
  EXPECT_EQ(run({"delete", "volume", "justname"}).code, 2);
  EXPECT_EQ(fake().callCount("CreateNetwork") + fake().callCount("CreatePool") +
                fake().callCount("CreateVolume") + fake().callCount("DeleteVolume"),
            0);
}

TEST_F(ClusterctlTest, VmStartStopRestart) {
  RunResult stop = run({"vm", "stop", "web1"});
  ASSERT_EQ(stop.code, 0) << stop;
  EXPECT_EQ(stop.out, "vm/web1: stop requested (Running on host-a)\n");
  EXPECT_EQ(fake().lastRequest<v1::NameRequest>("StopVm")->name(), "web1");
  EXPECT_EQ(run({"vm", "start", "web1"}).code, 0);
  EXPECT_EQ(run({"vm", "restart", "web1"}).code, 0);
  EXPECT_EQ(fake().callCount("StartVm"), 1);
  EXPECT_EQ(fake().callCount("RestartVm"), 1);
  RunResult json = run({"vm", "stop", "web2", "-o", "json"});
  ASSERT_EQ(json.code, 0) << json;
  EXPECT_EQ(nlohmann::json::parse(json.out).at("record").at("want_running"), false);
}

TEST_F(ClusterctlTest, VmMigrateRequest) {
  RunResult result = run({"vm", "migrate", "web1", "--to", "host-b", "--downtime-ms", "50"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "migration/web1-1 created: vm web1 from host-a to host-b (live)\n");
  auto request = fake().lastRequest<v1::MigrateVmRequest>("MigrateVm");
  EXPECT_EQ(request->target(), "host-b");
  EXPECT_EQ(request->mode(), v1::MIGRATION_MODE_LIVE);
  EXPECT_EQ(request->downtime_limit_ms(), 50u);

  RunResult cold = run({"vm", "migrate", "web2", "--cold"});
  ASSERT_EQ(cold.code, 0) << cold;
  EXPECT_EQ(fake().lastRequest<v1::MigrateVmRequest>("MigrateVm")->mode(), v1::MIGRATION_MODE_COLD);
  EXPECT_THAT(cold.out, HasSubstr("to a host the scheduler picks (cold)"));

  EXPECT_EQ(run({"vm", "migrate", "web2", "--cold", "--downtime-ms", "10"}).code, 2);
}

TEST_F(ClusterctlTest, HostCordonUncordonAndLabels) {
  RunResult cordon = run({"host", "cordon", "host-a", "--reason", "firmware"});
  ASSERT_EQ(cordon.code, 0) << cordon;
  EXPECT_EQ(cordon.out, "host/host-a cordoned\n");
  EXPECT_EQ(fake().lastRequest<v1::CordonHostRequest>("CordonHost")->reason(), "firmware");
  EXPECT_EQ(run({"host", "uncordon", "host-a"}).code, 0);

  RunResult label = run({"host", "label", "host-a", "ssd=yes", "zone-"});
  ASSERT_EQ(label.code, 0) << label;
  EXPECT_EQ(label.out, "host/host-a labeled: ssd=yes\n");
  auto request = fake().lastRequest<v1::SetLabelsRequest>("SetHostLabels");
  EXPECT_EQ(request->set().at("ssd"), "yes");
  ASSERT_EQ(request->remove_size(), 1);
  EXPECT_EQ(request->remove(0), "zone");

  EXPECT_EQ(run({"host", "label", "host-a", "=x"}).code, 2);
  EXPECT_EQ(run({"host", "label", "host-a", "a=1", "a-"}).code, 2);
  EXPECT_EQ(run({"host", "label", "host-a"}).code, 2);
}

TEST_F(ClusterctlTest, MigrationCancel) {
  fake().addMigration([] {
    v1::MigrationRecord migration;
    migration.mutable_meta()->set_name("web2-9");
    migration.set_vm("web2");
    migration.set_phase(v1::MIGRATION_PHASE_TRANSFERRING);
    return migration;
  }());
  RunResult result = run({"migration", "cancel", "web2-9"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "migration/web2-9: cancel requested (Transferring)\n");
  RunResult done = run({"migration", "cancel", "web1-old"});
  EXPECT_EQ(done.code, 5) << done;
  EXPECT_EQ(done.err, "clusterctl: migration web1-old has succeeded already\n");
}

TEST_F(ClusterctlTest, RebalancePlanAndApply) {
  v1::RebalancePlan plan;
  plan.set_score_before(0.31);
  plan.set_score_after(0.08);
  v1::RebalanceMove* move = plan.add_moves();
  move->set_vm("web2");
  move->set_source("host-a");
  move->set_target("host-b");
  move->set_gain(0.2);
  move->set_cost(0.01);
  fake().setPlan(plan);

  RunResult result = run({"rebalance", "plan", "--threshold", "0.1", "--max-moves", "3"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out,
            "VM     SOURCE   TARGET   GAIN    COST\n"
            "web2   host-a   host-b   0.200   0.010\n"
            "Imbalance: 0.310 now, 0.080 after 1 move(s)\n");
  auto request = fake().lastRequest<v1::PlanRebalanceRequest>("PlanRebalance");
  EXPECT_DOUBLE_EQ(request->threshold(), 0.1);
  EXPECT_EQ(request->max_moves(), 3u);

  RunResult apply = run({"rebalance", "apply"});
  ASSERT_EQ(apply.code, 0) << apply;
  EXPECT_THAT(apply.out, HasSubstr("web2-rebalance"));
  EXPECT_THAT(apply.out, HasSubstr("Migrations started"));

  fake().setPlan([] {
    v1::RebalancePlan balanced;
    balanced.set_score_before(0.02);
    balanced.set_score_after(0.02);
    balanced.set_message("imbalance 0.02 is below the threshold 0.1");
    return balanced;
  }());
  RunResult nothing = run({"rebalance", "plan"});
  ASSERT_EQ(nothing.code, 0) << nothing;
  EXPECT_THAT(nothing.out, HasSubstr("No moves: imbalance 0.02 is below the threshold 0.1"));
  EXPECT_EQ(run({"rebalance", "plan", "--threshold", "2"}).code, 2);
}

}  // namespace
}  // namespace flotilla::cli::testing
