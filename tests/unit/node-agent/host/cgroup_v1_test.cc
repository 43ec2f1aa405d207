// CgroupManager on cgroup v1, against a temporary directory that behaves like cgroupfs
// (fake_cgroupfs.h): a group in each of the cpu, cpuacct, memory and pids hierarchies, the
// v1 limit files, processes in every hierarchy, usage from cpuacct/memory/pids, removal of
// partly removed groups.
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node-agent/host/cgroup.h"
#include "tests/unit/node-agent/host/fake_cgroupfs.h"

namespace flotilla::agent {
namespace {

using ::testing::ElementsAre;
using testing::FakeCgroupFs;
using ::testing::HasSubstr;

class CgroupV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(fs_.root().empty());
    fs_.initV1Root({"cpu", "cpuacct", "memory", "pids"});
  }

  std::unique_ptr<CgroupManager> open() {
    auto manager = CgroupManager::open(CgroupOptions{.parent = "flotilla-test-1",
                                                     .root = fs_.root(),
                                                     .version = CgroupVersion::kV1,
                                                     .mountinfo_path = "",
                                                     .filesystem = &fs_});
    EXPECT_TRUE(manager.ok()) << manager.status();
    return manager.ok() ? std::move(*manager) : nullptr;
  }

  FakeCgroupFs fs_{FakeCgroupFs::Kind::kV1};
};

TEST_F(CgroupV1Test, OpenCreatesTheParentInEveryHierarchy) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->version(), CgroupVersion::kV1);
  for (const char* hierarchy : {"cpu", "cpuacct", "memory", "pids"}) {
    EXPECT_TRUE(fs_.exists(std::string(hierarchy) + "/flotilla-test-1")) << hierarchy;
  }
  EXPECT_EQ(manager->parentPaths().size(), 4u);
}

TEST_F(CgroupV1Test, CreateWritesTheV1LimitFiles) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  auto group = manager->createVmGroup("web1", VmLimits{.cpu_millicores = 250,
                                                       .cpu_period_us = 20000,
                                                       .cpu_weight = 200,
                                                       .memory_max_bytes = 512 << 20,
                                                       .memory_high_bytes = 256 << 20,
                                                       .pids_max = 100});
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_TRUE(group->created);
  EXPECT_EQ(group->paths.size(), 4u);
  const std::string g = "/flotilla-test-1/web1/";
  EXPECT_EQ(fs_.get("cpu" + g + "cpu.cfs_period_us"), "20000");
  EXPECT_EQ(fs_.get("cpu" + g + "cpu.cfs_quota_us"), "5000");
  EXPECT_EQ(fs_.get("cpu" + g + "cpu.shares"), "2048");
  EXPECT_EQ(fs_.get("memory" + g + "memory.limit_in_bytes"), "536870912");
  EXPECT_EQ(fs_.get("memory" + g + "memory.soft_limit_in_bytes"), "268435456");
  EXPECT_EQ(fs_.get("pids" + g + "pids.max"), "100");
}

TEST_F(CgroupV1Test, NoLimitIsMinusOneAndDefaultSharesAre1024) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(
      manager->createVmGroup("web1", VmLimits{.cpu_millicores = 2000, .memory_max_bytes = 1 << 30})
          .ok());
  auto group = manager->createVmGroup("web1", {});
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_FALSE(group->created);
  const std::string g = "/flotilla-test-1/web1/";
  EXPECT_EQ(fs_.get("cpu" + g + "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(fs_.get("cpu" + g + "cpu.cfs_quota_us"), "-1");
  EXPECT_EQ(fs_.get("cpu" + g + "cpu.shares"), "1024");
  EXPECT_EQ(fs_.get("memory" + g + "memory.limit_in_bytes"), "-1");
  EXPECT_EQ(fs_.get("memory" + g + "memory.soft_limit_in_bytes"), "-1");
  EXPECT_EQ(fs_.get("pids" + g + "pids.max"), "max");
}

TEST_F(CgroupV1Test, TheSmallestWeightStillGivesValidShares) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", VmLimits{.cpu_weight = 1}).ok());
  EXPECT_EQ(fs_.get("cpu/flotilla-test-1/web1/cpu.shares"), "10");
  ASSERT_TRUE(manager->createVmGroup("web1", VmLimits{.cpu_weight = 10000}).ok());
  EXPECT_EQ(fs_.get("cpu/flotilla-test-1/web1/cpu.shares"), "102400");
}

TEST_F(CgroupV1Test, AFailureInALaterHierarchyRemovesTheGroupEverywhere) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  fs_.failWrites("/memory.limit_in_bytes", EBUSY);
  auto group = manager->createVmGroup("web1", VmLimits{.memory_max_bytes = 64 << 20});
  ASSERT_FALSE(group.ok());
  EXPECT_THAT(group.status().message(),
              HasSubstr("memory/flotilla-test-1/web1/memory.limit_in_bytes"));
  for (const char* hierarchy : {"cpu", "cpuacct", "memory", "pids"}) {
    EXPECT_FALSE(fs_.exists(std::string(hierarchy) + "/flotilla-test-1/web1")) << hierarchy;
  }
}

TEST_F(CgroupV1Test, AddProcessJoinsEveryHierarchy) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  ASSERT_TRUE(manager->addProcess("web1", 4242).ok());
  for (const char* hierarchy : {"cpu", "cpuacct", "memory", "pids"}) {
    EXPECT_EQ(fs_.get(std::string(hierarchy) + "/flotilla-test-1/web1/cgroup.procs"), "4242\n")
        << hierarchy;
  }
}

TEST_F(CgroupV1Test, UsageReadsCpuacctCpuStatMemoryAndPids) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  const std::string g = "/flotilla-test-1/web1/";
  fs_.set("cpuacct" + g + "cpuacct.usage", "123456789\n");
  fs_.set("cpu" + g + "cpu.stat",
          "nr_periods 20\nnr_throttled 4\nthrottled_time 5000000\nnr_bursts 0\nburst_time 0\n");
  fs_.set("memory" + g + "memory.usage_in_bytes", "8388608\n");
  fs_.set("memory" + g + "memory.max_usage_in_bytes", "16777216\n");
  fs_.set("pids" + g + "pids.current", "3\n");
  fs_.set("cpu" + g + "cgroup.procs", "10\n11\n");
  fs_.set("memory" + g + "cgroup.procs", "11\n10\n12\n");
  auto usage = manager->usage("web1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->cpu_ns, 123456789u);
  EXPECT_EQ(usage->cpu_throttled_periods, 4u);
  EXPECT_EQ(usage->cpu_throttled_ns, 5000000u);
  EXPECT_EQ(usage->memory_bytes, 8388608u);
  EXPECT_EQ(usage->memory_peak_bytes, 16777216u);
  EXPECT_EQ(usage->tasks, 3u);
  EXPECT_THAT(usage->pids, ElementsAre(10, 11, 12));
}

TEST_F(CgroupV1Test, RemoveNamesProcessesOfAnyHierarchy) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  fs_.set("pids/flotilla-test-1/web1/cgroup.procs", "4242\n");
  absl::Status busy = manager->removeVmGroup("web1");
  EXPECT_TRUE(absl::IsFailedPrecondition(busy)) << busy;
  EXPECT_THAT(busy.message(), HasSubstr("process 4242 still in it"));
  EXPECT_TRUE(fs_.exists("cpu/flotilla-test-1/web1")) << "nothing is removed while busy";
  fs_.set("pids/flotilla-test-1/web1/cgroup.procs", "");
  ASSERT_TRUE(manager->removeVmGroup("web1").ok());
  for (const char* hierarchy : {"cpu", "cpuacct", "memory", "pids"}) {
    EXPECT_FALSE(fs_.exists(std::string(hierarchy) + "/flotilla-test-1/web1")) << hierarchy;
  }
}

TEST_F(CgroupV1Test, AHalfRemovedGroupIsListedAndCanBeRemoved) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  ASSERT_TRUE(manager->createVmGroup("web2", {}).ok());
  // As if the agent died between two rmdirs.
  for (const char* hierarchy : {"cpu", "cpuacct", "pids"}) {
    ASSERT_EQ(fs_.removeDirectory(fs_.root() + "/" + hierarchy + "/flotilla-test-1/web1"), 0);
  }
  auto vms = manager->listVmGroups();
  ASSERT_TRUE(vms.ok()) << vms.status();
  EXPECT_THAT(*vms, ElementsAre("web1", "web2"));
  ASSERT_TRUE(manager->removeVmGroup("web1").ok());
  EXPECT_FALSE(fs_.exists("memory/flotilla-test-1/web1"));
  EXPECT_THAT(*manager->listVmGroups(), ElementsAre("web2"));
}

TEST_F(CgroupV1Test, GroupFdNeedsCgroupV2) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  auto fd = manager->openGroupFd("web1");
  EXPECT_TRUE(absl::IsFailedPrecondition(fd.status())) << fd.status();
  EXPECT_THAT(fd.status().message(), HasSubstr("addProcess"));
}

TEST(CgroupV1LayoutTest, WithoutAMemoryHierarchyOpenFailsNamingIt) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV1);
  fs.initV1Root({"cpu", "cpuacct"});
  auto manager = CgroupManager::open(CgroupOptions{.parent = "flotilla",
                                                   .root = fs.root(),
                                                   .version = CgroupVersion::kV1,
                                                   .mountinfo_path = "",
                                                   .filesystem = &fs});
  ASSERT_FALSE(manager.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(manager.status()));
  EXPECT_THAT(manager.status().message(), HasSubstr("no hierarchy carries memory"));
  EXPECT_FALSE(fs.exists("cpu/flotilla"));
}

TEST(CgroupV1LayoutTest, WithoutPidsThereIsNoTaskCountAndNoPidsLimit) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV1);
  fs.initV1Root({"cpu", "cpuacct", "memory"});
  auto manager = CgroupManager::open(CgroupOptions{.parent = "flotilla",
                                                   .root = fs.root(),
                                                   .version = CgroupVersion::kV1,
                                                   .mountinfo_path = "",
                                                   .filesystem = &fs});
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(
      (*manager)->createVmGroup("web1", VmLimits{.pids_max = 10}).status()));
  ASSERT_TRUE((*manager)->createVmGroup("web1", {}).ok());
  auto usage = (*manager)->usage("web1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->tasks, std::nullopt);
}

}  // namespace
}  // namespace flotilla::agent
