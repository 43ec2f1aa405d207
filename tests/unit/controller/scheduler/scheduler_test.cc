// The scheduler on synthetic clusters: every filter with its reason text, spread and pack,
// overcommit, affinity groups, live-migration CPU compatibility, and the accounting that
// place() reads (load, assign, unassign, incoming migrations).
#include "controller/scheduler/scheduler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/controller/scheduler/cluster_builder.h"

namespace flotilla::controller {
namespace {

using testing::ClusterBuilder;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::kGiB;
using testing::kMiB;
using ::testing::Optional;

PlacementRequest request(const VmView& vm) {
  return PlacementRequest{.vm = vm.name, .record = &vm.record};
}

Scheduler loaded(const ClusterView& view, SchedulerOptions options = {}) {
  Scheduler scheduler(options);
  scheduler.load(view);
  return scheduler;
}

// The single reason line of one host when a VM fits nowhere else.
std::string reasonFor(const Scheduler& scheduler, const PlacementRequest& req,
                      const std::string& host) {
  absl::Status status = scheduler.check(req, host);
  return status.ok() ? "fits" : std::string(status.message());
}

TEST(SchedulerOptionsTest, ParsesStrategiesAndRejectsBadOvercommit) {
  ASSERT_TRUE(parseStrategy("spread").ok());
  EXPECT_EQ(*parseStrategy("spread"), SchedulerOptions::Strategy::kSpread);
  ASSERT_TRUE(parseStrategy("pack").ok());
  EXPECT_EQ(*parseStrategy("pack"), SchedulerOptions::Strategy::kPack);
  absl::StatusOr<SchedulerOptions::Strategy> bad = parseStrategy("binpack");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'binpack': use 'spread'"));
  EXPECT_STREQ(strategyName(SchedulerOptions::Strategy::kPack), "pack");

  EXPECT_TRUE(validateSchedulerOptions({}).ok());
  absl::Status zero = validateSchedulerOptions({.cpu_overcommit = 0});
  EXPECT_THAT(zero.message(),
              HasSubstr("scheduler.cpu_overcommit must be a number greater than 0"));
  absl::Status negative = validateSchedulerOptions({.memory_overcommit = -1});
  EXPECT_THAT(negative.message(), HasSubstr("scheduler.memory_overcommit"));
}

TEST(SchedulerTest, SpreadPicksTheHostWithTheMostFreeResources) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2");
  cluster.host("h3");
  cluster.vm("a", "h1", 4, 16384);
  cluster.vm("b", "h2", 1, 1024);
  cluster.vm("c", "h3", 2, 8192);
  const VmView& vm = cluster.vm("new", "");
  EXPECT_THAT(loaded(cluster.view()).place(request(vm)).host, Optional(std::string("h2")));
}

TEST(SchedulerTest, SpreadComparesSharesSoABigBusyHostCanBeatASmallEmptyOne) {
  ClusterBuilder cluster;
  cluster.host("big", 64, 512);
  cluster.host("small", 4, 8);
  cluster.vm("a", "big", 4, 16384);                   // big: ~97% of memory and ~98% of vCPUs free
  const VmView& vm = cluster.vm("new", "", 2, 2048);  // small: 75% and ~88% free after it
  EXPECT_THAT(loaded(cluster.view()).place(request(vm)).host, Optional(std::string("big")));
}

TEST(SchedulerTest, PackPicksTheFullestHostThatFits) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2");
  cluster.host("h3");
  cluster.vm("a", "h1", 4, 60 * 1024);  // too full for the new VM
  cluster.vm("b", "h2", 8, 32 * 1024);
  cluster.vm("c", "h3", 1, 1024);
  const VmView& vm = cluster.vm("new", "", 2, 8192);
  Scheduler pack = loaded(cluster.view(), {.strategy = SchedulerOptions::Strategy::kPack});
  EXPECT_THAT(pack.place(request(vm)).host, Optional(std::string("h2")));
  EXPECT_THAT(loaded(cluster.view()).place(request(vm)).host, Optional(std::string("h3")));
}

TEST(SchedulerTest, TiesGoToTheFirstHostByName) {
  ClusterBuilder cluster;
  cluster.host("h3");
  cluster.host("h1");
  cluster.host("h2");
  const VmView& vm = cluster.vm("new", "");
  EXPECT_THAT(loaded(cluster.view()).place(request(vm)).host, Optional(std::string("h1")));
  Scheduler pack = loaded(cluster.view(), {.strategy = SchedulerOptions::Strategy::kPack});
  EXPECT_THAT(pack.place(request(vm)).host, Optional(std::string("h1")));
}

TEST(SchedulerTest, HostsThatAreNotReadyOrSchedulableSayWhy) {
  ClusterBuilder cluster;
  cluster.host("gone").status.reset();
  cluster.host("lost").record.set_state(v1::HOST_STATE_UNREACHABLE);
  cluster.host("fenced").record.set_state(v1::HOST_STATE_FENCED);
  cluster.host("maint");
  cluster.cordon("maint", "disk replacement");
  cluster.host("plain-cordon");
  cluster.cordon("plain-cordon");
  cluster.host("drained");
  cluster.drain("drained");
  const VmView& vm = cluster.vm("new", "");
  Scheduler scheduler = loaded(cluster.view());
  PlacementRequest req = request(vm);
  EXPECT_EQ(reasonFor(scheduler, req, "gone"), "gone: not ready (no agent report)");
  EXPECT_EQ(reasonFor(scheduler, req, "lost"), "lost: unreachable (its agent's lease expired)");
  EXPECT_EQ(reasonFor(scheduler, req, "fenced"), "fenced: fenced");
  EXPECT_EQ(reasonFor(scheduler, req, "maint"), "maint: cordoned (disk replacement)");
  EXPECT_EQ(reasonFor(scheduler, req, "plain-cordon"), "plain-cordon: cordoned");
  EXPECT_EQ(reasonFor(scheduler, req, "drained"), "drained: draining");
  EXPECT_FALSE(scheduler.place(req).host.has_value());
}

TEST(SchedulerTest, ExcludedHostsAreSkipped) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2");
  const VmView& vm = cluster.vm("new", "");
  Scheduler scheduler = loaded(cluster.view());
  PlacementRequest req = request(vm);
  req.exclude = {"h1"};
  EXPECT_THAT(scheduler.place(req).host, Optional(std::string("h2")));
  EXPECT_EQ(reasonFor(scheduler, req, "h1"), "h1: excluded by the request");
  req.source_host = "h1";
  EXPECT_EQ(reasonFor(scheduler, req, "h1"), "h1: excluded (the VM's source host)");
}

TEST(SchedulerTest, APinnedVmGoesToItsHostOnly) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2", 4, 16);  // the less attractive host for spread
  VmView& vm = cluster.vm("new", "");
  vm.record.mutable_placement()->set_host("h2");
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_THAT(scheduler.place(request(vm)).host, Optional(std::string("h2")));
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h1"), "h1: the VM is pinned to h2");

  vm.record.mutable_placement()->set_host("h9");
  PlacementResult result = scheduler.place(request(vm));
  EXPECT_FALSE(result.host.has_value());
  EXPECT_THAT(result.reasons,
              ElementsAre("new: pinned to host 'h9', which is not in the cluster (change "
                          "placement.host, or add the host)"));
}

TEST(SchedulerTest, HostLabelsMustAllMatch) {
  ClusterBuilder cluster;
  cluster.host("h1").record.mutable_meta()->mutable_labels()->insert({"zone", "a"});
  HostView& h2 = cluster.host("h2");
  h2.record.mutable_meta()->mutable_labels()->insert({"zone", "b"});
  h2.record.mutable_meta()->mutable_labels()->insert({"ssd", "yes"});
  cluster.host("h3");
  VmView& vm = cluster.vm("new", "");
  vm.record.mutable_placement()->mutable_host_labels()->insert({"zone", "b"});
  vm.record.mutable_placement()->mutable_host_labels()->insert({"ssd", "yes"});
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_THAT(scheduler.place(request(vm)).host, Optional(std::string("h2")));
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h1"), "h1: lacks label ssd=yes (not set)");
  (*vm.record.mutable_placement()->mutable_host_labels())["ssd"] = "no";
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h2"), "h2: lacks label ssd=no (has ssd=yes)");
}

TEST(SchedulerTest, ANamedCpuModelNeedsAHostThatRunsIt) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2").status->mutable_inventory()->add_cpu_models("skylake-v4");
  VmView& vm = cluster.vm("new", "");
  vm.record.mutable_spec()->set_cpu_model("skylake-v4");
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_THAT(scheduler.place(request(vm)).host, Optional(std::string("h2")));
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h1"),
            "h1: cannot run cpu model 'skylake-v4' (runs: baseline-v1, host)");
  // "host" and empty fit any host for a fresh placement.
  vm.record.mutable_spec()->set_cpu_model("");
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h1"), "fits");
}

TEST(SchedulerTest, EveryDiskPoolMustBeReachable) {
  ClusterBuilder cluster;
  cluster.pool("fast", v1::POOL_TYPE_ISCSI, true);
  cluster.host("h1");
  cluster.host("h2", 4, 16).status->mutable_inventory()->add_pools("fast");
  VmView& vm = cluster.vm("new", "");
  v1::DiskSpec& data = *vm.record.mutable_spec()->add_disks();
  data.set_pool("fast");
  data.set_volume("new-data");
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_THAT(scheduler.place(request(vm)).host, Optional(std::string("h2")));
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h1"), "h1: does not reach pool 'fast'");
}

TEST(SchedulerTest, EveryNicNetworkMustBeDefined) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2");
  VmView& vm = cluster.vm("new", "");
  vm.record.mutable_spec()->add_nics()->set_network("net-missing");
  PlacementResult result = loaded(cluster.view()).place(request(vm));
  EXPECT_FALSE(result.host.has_value());
  EXPECT_THAT(result.reasons,
              ElementsAre("new: network 'net-missing' of NIC 1 is not defined (create the "
                          "network, or change the VM's NIC)"));
}

TEST(SchedulerTest, MemoryAndVcpusMustFitWithOvercommit) {
  ClusterBuilder cluster;
  cluster.host("h2", 4, 4);
  cluster.vm("a", "h2", 1, 3584);
  const VmView& vm = cluster.vm("new", "", 2, 2048);
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_EQ(reasonFor(scheduler, request(vm), "h2"),
            "h2: needs 2048 MiB, 512 MiB free (memory overcommit 1.0)");
  // 1.5 x 4 GiB = 6 GiB: room for 2 GiB more.
  Scheduler overcommitted = loaded(cluster.view(), {.memory_overcommit = 1.5});
  EXPECT_THAT(overcommitted.place(request(vm)).host, Optional(std::string("h2")));
  // A reserve for the host comes off before the overcommit.
  Scheduler reserved =
      loaded(cluster.view(), {.memory_overcommit = 1.5, .memory_reserve_bytes = 1 * kGiB});
  EXPECT_EQ(reasonFor(reserved, request(vm), "h2"),
            "h2: needs 2048 MiB, 1024 MiB free (memory overcommit 1.5)");

  // 4 CPUs x 1.5 = 6 vCPUs; 1 used; 6 more do not fit, 5 do.
  const VmView& wide = cluster.vm("wide", "", 6, 128);
  Scheduler cpu = loaded(cluster.view(), {.cpu_overcommit = 1.5});
  EXPECT_EQ(reasonFor(cpu, request(wide), "h2"),
            "h2: needs 6 vCPUs, 5 free (4 CPUs, cpu overcommit 1.5)");
  cluster.view().vms.at("wide").record.mutable_spec()->set_vcpus(5);
  EXPECT_EQ(reasonFor(cpu, request(cluster.view().vms.at("wide")), "h2"), "fits");
  // The default overcommit of 4: 16 vCPUs on 4 CPUs.
  cluster.view().vms.at("wide").record.mutable_spec()->set_vcpus(15);
  EXPECT_EQ(reasonFor(scheduler, request(cluster.view().vms.at("wide")), "h2"), "fits");
}

TEST(SchedulerTest, AntiAffinitySpreadsAGroupEvenWhenPacking) {
  ClusterBuilder cluster;
  cluster.host("h1");
  cluster.host("h2");
  cluster.host("h3");
  Scheduler scheduler = loaded(cluster.view(), {.strategy = SchedulerOptions::Strategy::kPack});
  std::set<std::string> used;
  for (int i = 0; i < 4; ++i) {
    VmView& vm = cluster.vm("db-" + std::to_string(i), "");
    vm.record.mutable_placement()->set_anti_affinity_group("db");
    PlacementResult result = scheduler.place(request(vm));
    if (i < 3) {
      ASSERT_TRUE(result.host.has_value()) << i;
      EXPECT_TRUE(used.insert(*result.host).second) << *result.host << " used twice";
      ASSERT_TRUE(scheduler.assign(vm.name, vm.record, *result.host).ok());
    } else {
      EXPECT_FALSE(result.host.has_value());
      EXPECT_THAT(result.reasons,
                  ElementsAre("h1: already runs 1 VM of anti-affinity group 'db'",
                              "h2: already runs 1 VM of anti-affinity group 'db'",
                              "h3: already runs 1 VM of anti-affinity group 'db'",
                              "db-3 (1 vCPU, 1024 MiB) fits none of 3 hosts: anti-affinity 3"));
    }
  }
  // Once a member leaves, its host is free for the group again.
  scheduler.unassign("db-1");
  EXPECT_THAT(scheduler.place(request(cluster.view().vms.at("db-3"))).host,
              Optional(std::string("h2")));
}

TEST(SchedulerTest, AffinityCoLocatesAGroupUntilItsHostIsFull) {
  ClusterBuilder cluster;
  cluster.host("h1", 16, 8);
  cluster.host("h2", 16, 8);
  cluster.host("h3", 16, 8);
  Scheduler scheduler = loaded(cluster.view());  // spread would use every host
  std::vector<std::string> hosts;
  for (int i = 0; i < 5; ++i) {
    VmView& vm = cluster.vm("web-" + std::to_string(i), "", 1, 2048);
    vm.record.mutable_placement()->set_affinity_group("web");
    PlacementResult result = scheduler.place(request(vm));
    ASSERT_TRUE(result.host.has_value());
    hosts.push_back(*result.host);
    ASSERT_TRUE(scheduler.assign(vm.name, vm.record, *result.host).ok());
  }
  // 8 GiB hosts hold four 2 GiB VMs; the fifth goes to the next host by spread.
  EXPECT_THAT(hosts, ElementsAre("h1", "h1", "h1", "h1", "h2"));
  // A VM outside the group still spreads.
  const VmView& other = cluster.vm("other", "", 1, 2048);
  EXPECT_THAT(scheduler.place(request(other)).host, Optional(std::string("h3")));
}

TEST(SchedulerTest, LiveMigrationWithCpuModelHostNeedsTheSameCpuAndItsFlags) {
  ClusterBuilder cluster;
  HostView& source = cluster.host("src");
  source.status->mutable_inventory()->add_cpu_flags("avx512f");
  HostView& same = cluster.host("same", 8, 32);  // smaller: spread's last choice
  same.status->mutable_inventory()->add_cpu_flags("avx512f");
  same.status->mutable_inventory()->add_cpu_flags("amx");  // a superset is fine
  cluster.host("older");                                   // no avx512f
  cluster.host("other-vendor").status->mutable_inventory()->set_cpu_model_name("EPYC");
  const VmView& vm = cluster.vm("vm", "src");
  Scheduler scheduler = loaded(cluster.view());

  PlacementRequest req{.vm = "vm",
                       .record = &vm.record,
                       .exclude = {"src"},
                       .live_migration = true,
                       .source_host = "src"};
  EXPECT_THAT(scheduler.place(req).host, Optional(std::string("same")));
  EXPECT_EQ(reasonFor(scheduler, req, "older"),
            "older: lacks CPU flags avx512f of the source src (cpu model 'host')");
  EXPECT_EQ(reasonFor(scheduler, req, "other-vendor"),
            "other-vendor: CPU 'EPYC' differs from 'Xeon' of the source src (cpu model 'host' "
            "moves live only to the same CPU)");
  // A fresh placement of the same VM does not care.
  EXPECT_EQ(reasonFor(scheduler, request(vm), "other-vendor"), "fits");

  // A named model moves wherever it runs.
  cluster.view().vms.at("vm").record.mutable_spec()->set_cpu_model("baseline-v1");
  req.record = &cluster.view().vms.at("vm").record;
  EXPECT_EQ(reasonFor(scheduler, req, "older"), "fits");

  // No report from the source: no CPU to compare with.
  cluster.view().vms.at("vm").record.mutable_spec()->set_cpu_model("host");
  cluster.view().hosts.at("src").status.reset();
  Scheduler blind = loaded(cluster.view());
  PlacementResult result = blind.place(req);
  EXPECT_FALSE(result.host.has_value());
  EXPECT_THAT(result.reasons, ElementsAre(HasSubstr("the source host 'src' has no agent report")));
}

TEST(SchedulerTest, ADiskOnALocalPoolCannotMoveLive) {
  ClusterBuilder cluster;
  cluster.pool("local", v1::POOL_TYPE_DIR, false);
  cluster.host("h1").status->mutable_inventory()->add_pools("local");
  cluster.host("h2").status->mutable_inventory()->add_pools("local");
  VmView& vm = cluster.vm("vm", "h1");
  vm.record.mutable_spec()->mutable_disks(0)->set_pool("local");
  Scheduler scheduler = loaded(cluster.view());
  PlacementRequest req{.vm = "vm",
                       .record = &vm.record,
                       .exclude = {"h1"},
                       .live_migration = true,
                       .source_host = "h1"};
  PlacementResult result = scheduler.place(req);
  EXPECT_FALSE(result.host.has_value());
  EXPECT_THAT(result.reasons, ElementsAre("vm: disk 'vm-root' is on pool 'local', a local (dir) "
                                          "pool: its volume cannot move live (use a shared pool, "
                                          "or a cold migration)"));
  req.live_migration = false;
  EXPECT_THAT(scheduler.place(req).host, Optional(std::string("h2")));
}

TEST(SchedulerTest, CannotPlaceListsOneReasonPerHostSortedThenASummary) {
  ClusterBuilder cluster;
  cluster.host("h4", 2, 2);
  cluster.host("h1");
  cluster.cordon("h1", "maintenance");
  cluster.host("h3", 2, 64);
  cluster.host("h2", 16, 2);
  cluster.host("h5").status.reset();
  const VmView& vm = cluster.vm("big", "", 16, 4096);
  PlacementResult result = loaded(cluster.view()).place(request(vm));
  EXPECT_FALSE(result.host.has_value());
  EXPECT_THAT(result.reasons,
              ElementsAre("h1: cordoned (maintenance)",
                          "h2: needs 4096 MiB, 2048 MiB free (memory overcommit 1.0)",
                          "h3: needs 16 vCPUs, 8 free (2 CPUs, cpu overcommit 4.0)",
                          "h4: needs 4096 MiB, 2048 MiB free (memory overcommit 1.0)",
                          "h5: not ready (no agent report)",
                          "big (16 vCPUs, 4096 MiB) fits none of 5 hosts: memory 2, cordoned 1, "
                          "not ready 1, vcpus 1"));

  ClusterBuilder empty;
  const VmView& lonely = empty.vm("lonely", "");
  EXPECT_THAT(loaded(empty.view()).place(request(lonely)).reasons,
              ElementsAre("lonely (1 vCPU, 1024 MiB) fits none of 0 hosts: the cluster has no "
                          "hosts"));
}

TEST(SchedulerTest, AssignAndUnassignKeepTheCounters) {
  ClusterBuilder cluster;
  cluster.host("h1", 4, 8);
  cluster.vm("a", "h1", 2, 2048);
  cluster.vm("stopped", "h1", 1, 1024).status.set_state(v1::VM_STATE_STOPPED);
  const VmView& vm = cluster.vm("new", "", 1, 4096);
  Scheduler scheduler = loaded(cluster.view());
  // A stopped VM keeps its room: starting it again must not fail.
  std::optional<HostUsage> usage = scheduler.usage("h1");
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(usage->memory_used, 3 * kGiB);
  EXPECT_EQ(usage->vcpus_used, 3u);
  EXPECT_EQ(usage->vms, 2u);
  EXPECT_DOUBLE_EQ(usage->vcpu_capacity, 16);
  EXPECT_DOUBLE_EQ(usage->memory_capacity, static_cast<double>(8 * kGiB));

  ASSERT_TRUE(scheduler.assign("new", vm.record, "h1").ok());
  EXPECT_EQ(scheduler.usage("h1")->memory_used, 7 * kGiB);
  EXPECT_THAT(scheduler.hostOf("new"), Optional(std::string("h1")));
  // Assigning again moves, it does not count twice.
  ASSERT_TRUE(scheduler.assign("new", vm.record, "h1").ok());
  EXPECT_EQ(scheduler.usage("h1")->memory_used, 7 * kGiB);
  // Placing a VM already accounted on a host does not count it against itself.
  EXPECT_THAT(scheduler.place(request(vm)).host, Optional(std::string("h1")));
  scheduler.unassign("new");
  scheduler.unassign("never-placed");
  EXPECT_EQ(scheduler.usage("h1")->memory_used, 3 * kGiB);
  EXPECT_FALSE(scheduler.hostOf("new").has_value());

  absl::Status unknown = scheduler.assign("new", vm.record, "h9");
  EXPECT_TRUE(absl::IsNotFound(unknown));
  EXPECT_THAT(std::string(unknown.message()),
              HasSubstr("on host h9: the host is not in the scheduler's view"));
  EXPECT_TRUE(absl::IsNotFound(scheduler.check(request(vm), "h9")));
  EXPECT_FALSE(scheduler.usage("h9").has_value());
}

TEST(SchedulerTest, TheTargetOfAnActiveMigrationHoldsTheVmsRoom) {
  ClusterBuilder cluster;
  cluster.host("h1", 4, 8);
  cluster.host("h2", 4, 8);
  VmView& moving = cluster.vm("moving", "h1", 1, 6144);
  moving.record.mutable_placement()->set_anti_affinity_group("g");
  cluster.migration("m1", "moving", "h1", "h2", v1::MIGRATION_PHASE_TRANSFERRING);
  cluster.migration("old", "moving", "h1", "h1", v1::MIGRATION_PHASE_SUCCEEDED);
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_EQ(scheduler.usage("h2")->memory_used, 6 * kGiB);
  EXPECT_EQ(scheduler.usage("h1")->memory_used, 6 * kGiB);
  VmView& other = cluster.vm("other", "", 1, 4096);
  other.record.mutable_placement()->set_anti_affinity_group("g");
  EXPECT_THAT(scheduler.place(request(other)).reasons,
              ElementsAre("h1: already runs 1 VM of anti-affinity group 'g'",
                          "h2: already runs 1 VM of anti-affinity group 'g'",
                          "other (1 vCPU, 4096 MiB) fits none of 2 hosts: anti-affinity 2"));

  // Once it ended, the target holds nothing more than what the VM's status says.
  cluster.view().migrations.at("m1").set_phase(v1::MIGRATION_PHASE_FAILED);
  scheduler.load(cluster.view());
  EXPECT_EQ(scheduler.usage("h2")->memory_used, 0u);
  EXPECT_THAT(scheduler.place(request(other)).host, Optional(std::string("h2")));
}

TEST(SchedulerTest, AVmsOwnMigrationTargetDoesNotCountAgainstItself) {
  ClusterBuilder cluster;
  cluster.host("h1", 4, 8);
  cluster.host("h2", 4, 8);
  cluster.vm("filler", "h2", 1, 2048);
  VmView& moving = cluster.vm("moving", "h1", 1, 6144);
  moving.record.mutable_placement()->set_anti_affinity_group("g");
  cluster.migration("m1", "moving", "h1", "h2", v1::MIGRATION_PHASE_PENDING);
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_EQ(scheduler.usage("h2")->memory_used, 8 * kGiB);
  // The migration driver checks the target it recorded: 2 + 6 GiB of 8 fit, and the VM is
  // not in its own anti-affinity group's way.
  PlacementRequest req{.vm = "moving",
                       .record = &moving.record,
                       .exclude = {"h1"},
                       .live_migration = true,
                       .source_host = "h1"};
  EXPECT_TRUE(scheduler.check(req, "h2").ok()) << scheduler.check(req, "h2");
  // Assigning it there turns the reservation into the placement: counted once.
  ASSERT_TRUE(scheduler.assign("moving", moving.record, "h2").ok());
  EXPECT_EQ(scheduler.usage("h2")->memory_used, 8 * kGiB);
  EXPECT_EQ(scheduler.usage("h1")->memory_used, 0u);
}

TEST(SchedulerTest, AVmOnAHostThatIsGoneHoldsNothing) {
  ClusterBuilder cluster;
  cluster.host("h1", 4, 8);
  cluster.vm("a", "h1", 1, 1024).status.set_host("h-removed");
  Scheduler scheduler = loaded(cluster.view());
  EXPECT_EQ(scheduler.usage("h1")->memory_used, 0u);
  EXPECT_FALSE(scheduler.hostOf("a").has_value());
}

}  // namespace
}  // namespace flotilla::controller
