// CgroupManager on cgroup v2, against a temporary directory that behaves like cgroupfs
// (fake_cgroupfs.h): the parent and its controllers, VM groups and their limit files,
// processes, usage, removal, listing, and the errors.
#include <cerrno>
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
using ::testing::IsEmpty;

class CgroupV2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(fs_.root().empty());
    fs_.initV2Root("cpuset cpu io memory hugetlb pids rdma misc");
  }

  CgroupOptions options(std::string parent = "flotilla") {
    return CgroupOptions{.parent = std::move(parent),
                         .root = fs_.root(),
                         .version = CgroupVersion::kV2,
                         .mountinfo_path = "",
                         .filesystem = &fs_};
  }

  std::unique_ptr<CgroupManager> open(std::string parent = "flotilla") {
    auto manager = CgroupManager::open(options(std::move(parent)));
    EXPECT_TRUE(manager.ok()) << manager.status();
    return manager.ok() ? std::move(*manager) : nullptr;
  }

  FakeCgroupFs fs_{FakeCgroupFs::Kind::kV2};
};

TEST_F(CgroupV2Test, OpenEnablesCpuMemoryAndPidsAtEveryLevelOfTheParent) {
  auto manager = open("flotilla.slice/vms");
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->version(), CgroupVersion::kV2);
  EXPECT_EQ(fs_.get("cgroup.subtree_control"), "cpu memory pids\n");
  EXPECT_EQ(fs_.get("flotilla.slice/cgroup.subtree_control"), "cpu memory pids\n");
  EXPECT_EQ(fs_.get("flotilla.slice/vms/cgroup.subtree_control"), "cpu memory pids\n");
  EXPECT_THAT(manager->parentPaths(), ElementsAre(fs_.root() + "/flotilla.slice/vms"));
  EXPECT_EQ(manager->layout().describe(), "cgroup v2 at " + fs_.root() + " (cpu memory pids)");
}

TEST_F(CgroupV2Test, OpeningAgainChangesNothing) {
  ASSERT_NE(open(), nullptr);
  size_t writes = fs_.writes().size();
  ASSERT_NE(open(), nullptr);
  EXPECT_EQ(fs_.writes().size(), writes);
}

TEST_F(CgroupV2Test, PidsIsOptional) {
  fs_.initV2Root("cpu memory");
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(fs_.get("flotilla/cgroup.subtree_control"), "cpu memory\n");
  auto group = manager->createVmGroup("web1", VmLimits{.pids_max = 64});
  ASSERT_FALSE(group.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(group.status()));
  EXPECT_THAT(group.status().message(), HasSubstr("no pids cgroup controller"));
  auto usage = [&] {
    EXPECT_TRUE(manager->createVmGroup("web1", {}).ok());
    return manager->usage("web1");
  }();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->tasks, std::nullopt);
}

TEST_F(CgroupV2Test, OpenFailsWithoutTheCpuControllerAndCreatesNothing) {
  fs_.initV2Root("memory pids");
  auto manager = CgroupManager::open(options());
  ASSERT_FALSE(manager.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(manager.status()));
  EXPECT_THAT(manager.status().message(), HasSubstr("needs cpu and memory"));
  EXPECT_FALSE(fs_.exists("flotilla"));
}

TEST_F(CgroupV2Test, OpenUndoesItsGroupsWhenAControllerCannotBeEnabled) {
  // A parent whose group has processes of its own cannot hand controllers down (EBUSY).
  fs_.failWrites("flotilla/vms/cgroup.subtree_control", EBUSY);
  auto manager = CgroupManager::open(options("flotilla/vms"));
  ASSERT_FALSE(manager.ok());
  EXPECT_THAT(manager.status().message(),
              HasSubstr(fs_.root() + "/flotilla/vms/cgroup.subtree_control"));
  EXPECT_THAT(manager.status().message(), HasSubstr("has processes of its own"));
  EXPECT_FALSE(fs_.exists("flotilla"));
}

TEST_F(CgroupV2Test, InvalidParentsAreRefused) {
  for (const char* parent : {"", "/flotilla", "flotilla/", "a//b", "a/../b", "fl otilla"}) {
    auto manager = CgroupManager::open(options(parent));
    ASSERT_FALSE(manager.ok()) << parent;
    EXPECT_TRUE(absl::IsInvalidArgument(manager.status())) << parent;
    EXPECT_THAT(manager.status().message(), HasSubstr("cgroup parent")) << parent;
  }
}

TEST_F(CgroupV2Test, CreateWritesEveryLimitFile) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  auto group = manager->createVmGroup("web1", VmLimits{.cpu_millicores = 1500,
                                                       .cpu_period_us = 100000,
                                                       .cpu_weight = 200,
                                                       .memory_max_bytes = 2ull << 30,
                                                       .memory_high_bytes = 1ull << 30,
                                                       .pids_max = 256});
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_TRUE(group->created);
  EXPECT_EQ(group->vm, "web1");
  EXPECT_THAT(group->paths, ElementsAre(fs_.root() + "/flotilla/web1"));
  EXPECT_EQ(fs_.get("flotilla/web1/cpu.max"), "150000 100000");
  EXPECT_EQ(fs_.get("flotilla/web1/cpu.weight"), "200");
  EXPECT_EQ(fs_.get("flotilla/web1/memory.max"), "2147483648");
  EXPECT_EQ(fs_.get("flotilla/web1/memory.high"), "1073741824");
  EXPECT_EQ(fs_.get("flotilla/web1/pids.max"), "256");
}

TEST_F(CgroupV2Test, CreatingAnExistingGroupUpdatesItAndZeroMeansNoLimit) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager
                  ->createVmGroup("web1", VmLimits{.cpu_millicores = 500,
                                                   .cpu_weight = 50,
                                                   .memory_max_bytes = 1 << 30})
                  .ok());
  auto group = manager->createVmGroup("web1", VmLimits{.cpu_period_us = 50000});
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_FALSE(group->created);
  EXPECT_EQ(fs_.get("flotilla/web1/cpu.max"), "max 50000");
  EXPECT_EQ(fs_.get("flotilla/web1/cpu.weight"), "100");
  EXPECT_EQ(fs_.get("flotilla/web1/memory.max"), "max");
  EXPECT_EQ(fs_.get("flotilla/web1/memory.high"), "max");
  EXPECT_EQ(fs_.get("flotilla/web1/pids.max"), "max");
}

TEST_F(CgroupV2Test, BadNamesAndLimitsAreRefusedBeforeAnythingIsCreated) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  struct Case {
    const char* vm;
    VmLimits limits;
    const char* message;
  };
  const Case cases[] = {
      {"Web_1", {}, "vm name 'Web_1' is invalid"},
      {"../etc", {}, "vm name '../etc' is invalid"},
      {"web1", {.cpu_period_us = 500}, "cpu_period_us 500 is out of range"},
      {"web1", {.cpu_period_us = 2000000}, "cpu_period_us 2000000 is out of range"},
      {"web1", {.cpu_millicores = 5, .cpu_period_us = 100000}, "quota below 1000 µs"},
      {"web1", {.cpu_millicores = 1ull << 40}, "cpu_millicores 1099511627776 is too large"},
      {"web1", {.cpu_weight = 10001}, "cpu_weight 10001 is out of range"},
      {"web1", {.memory_max_bytes = 512}, "memory_max_bytes 512 is below 1 MiB"},
      {"web1", {.memory_high_bytes = 4096}, "memory_high_bytes 4096 is below 1 MiB"},
      {"web1",
       {.memory_max_bytes = 1 << 30, .memory_high_bytes = 2ull << 30},
       "memory_high_bytes 2147483648 is above memory_max_bytes 1073741824"},
  };
  for (const Case& c : cases) {
    auto group = manager->createVmGroup(c.vm, c.limits);
    ASSERT_FALSE(group.ok()) << c.message;
    EXPECT_TRUE(absl::IsInvalidArgument(group.status())) << group.status();
    EXPECT_THAT(group.status().message(), HasSubstr(c.message));
  }
  EXPECT_THAT(*manager->listVmGroups(), IsEmpty());
}

TEST_F(CgroupV2Test, AFailedLimitRemovesTheGroupItCreatedAndNamesTheFile) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  fs_.failWrites("/memory.max", EINVAL);
  auto group = manager->createVmGroup("web1", VmLimits{.memory_max_bytes = 1 << 30});
  ASSERT_FALSE(group.ok());
  EXPECT_THAT(group.status().message(), HasSubstr("VM web1"));
  EXPECT_THAT(group.status().message(),
              HasSubstr("writing '1073741824' to " + fs_.root() + "/flotilla/web1/memory.max"));
  EXPECT_FALSE(fs_.exists("flotilla/web1"));
}

TEST_F(CgroupV2Test, AFailedUpdateKeepsTheExistingGroup) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  fs_.failWrites("/cpu.max", EINVAL);
  EXPECT_FALSE(manager->createVmGroup("web1", VmLimits{.cpu_millicores = 1000}).ok());
  EXPECT_TRUE(fs_.exists("flotilla/web1"));
}

TEST_F(CgroupV2Test, AMissingControllerFileIsNamedWithAHint) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  // As if someone disabled memory in the parent after the agent started.
  fs_.set("flotilla/cgroup.subtree_control", "cpu pids\n");
  auto group = manager->createVmGroup("web1", {});
  ASSERT_FALSE(group.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(group.status()));
  EXPECT_THAT(group.status().message(), HasSubstr("/flotilla/web1/memory.high"));
  EXPECT_THAT(group.status().message(), HasSubstr("is its controller enabled"));
  EXPECT_FALSE(fs_.exists("flotilla/web1"));
}

TEST_F(CgroupV2Test, AddProcessWritesCgroupProcs) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  ASSERT_TRUE(manager->addProcess("web1", 4242).ok());
  EXPECT_EQ(fs_.get("flotilla/web1/cgroup.procs"), "4242\n");
}

TEST_F(CgroupV2Test, AddProcessErrors) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  absl::Status missing = manager->addProcess("web1", 4242);
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_THAT(missing.message(), HasSubstr("create the group first"));

  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  fs_.failWrites("web1/cgroup.procs", ESRCH);
  absl::Status gone = manager->addProcess("web1", 4242);
  EXPECT_TRUE(absl::IsNotFound(gone)) << gone;
  EXPECT_THAT(gone.message(), HasSubstr("no such process"));
  EXPECT_TRUE(absl::IsInvalidArgument(manager->addProcess("web1", 0)));
}

TEST_F(CgroupV2Test, UsageReadsCpuStatMemoryAndProcesses) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  fs_.set("flotilla/web1/cpu.stat",
          "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\n"
          "throttled_usec 700\nnr_bursts 0\nburst_usec 0\n");
  fs_.set("flotilla/web1/memory.current", "104857600\n");
  fs_.set("flotilla/web1/memory.peak", "209715200\n");
  fs_.set("flotilla/web1/pids.current", "9\n");
  fs_.set("flotilla/web1/cgroup.procs", "77\n42\n");
  auto usage = manager->usage("web1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->cpu_ns, 2'500'000u);
  EXPECT_EQ(usage->cpu_throttled_periods, 3u);
  EXPECT_EQ(usage->cpu_throttled_ns, 700'000u);
  EXPECT_EQ(usage->memory_bytes, 104857600u);
  EXPECT_EQ(usage->memory_peak_bytes, 209715200u);
  EXPECT_EQ(usage->tasks, 9u);
  EXPECT_THAT(usage->pids, ElementsAre(42, 77));
}

TEST_F(CgroupV2Test, MemoryPeakIsOptional) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  std::filesystem::remove(fs_.root() + "/flotilla/web1/memory.peak");  // Linux < 5.19
  auto usage = manager->usage("web1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_peak_bytes, std::nullopt);
}

TEST_F(CgroupV2Test, UsageErrors) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  auto missing = manager->usage("web1");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(missing.status().message(), HasSubstr("VM web1 has no cgroup"));

  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  fs_.set("flotilla/web1/memory.current", "lots\n");
  auto garbled = manager->usage("web1");
  ASSERT_FALSE(garbled.ok());
  EXPECT_THAT(garbled.status().message(), HasSubstr("/flotilla/web1/memory.current"));
  EXPECT_THAT(garbled.status().message(), HasSubstr("expected a number, found 'lots"));
}

TEST_F(CgroupV2Test, RemoveRefusesWhileProcessesRemainAndNamesThem) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  fs_.set("flotilla/web1/cgroup.procs", "4242\n4250\n");
  absl::Status busy = manager->removeVmGroup("web1");
  EXPECT_TRUE(absl::IsFailedPrecondition(busy)) << busy;
  EXPECT_THAT(busy.message(), HasSubstr("processes 4242, 4250 still in it"));
  EXPECT_THAT(busy.message(), HasSubstr(fs_.root() + "/flotilla/web1"));
  EXPECT_TRUE(fs_.exists("flotilla/web1"));

  fs_.set("flotilla/web1/cgroup.procs", "");
  EXPECT_TRUE(manager->removeVmGroup("web1").ok());
  EXPECT_FALSE(fs_.exists("flotilla/web1"));
  EXPECT_TRUE(manager->removeVmGroup("web1").ok()) << "removing an absent group is OK";
}

TEST_F(CgroupV2Test, ListFindsTheVmGroupsAndSkipsOtherDirectories) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web2", {}).ok());
  ASSERT_TRUE(manager->createVmGroup("db1", {}).ok());
  ASSERT_EQ(fs_.makeDirectory(fs_.root() + "/flotilla/Not_A_VM"), 0);
  auto vms = manager->listVmGroups();
  ASSERT_TRUE(vms.ok()) << vms.status();
  EXPECT_THAT(*vms, ElementsAre("db1", "web2"));
}

TEST_F(CgroupV2Test, GroupFdIsADescriptorOfTheGroupDirectory) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  EXPECT_TRUE(absl::IsNotFound(manager->openGroupFd("web1").status()));
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  auto fd = manager->openGroupFd("web1");
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(fd->valid());
}

TEST_F(CgroupV2Test, TheParentIsRemovedOnlyWhenItHasNoVmGroups) {
  auto manager = open();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->createVmGroup("web1", {}).ok());
  absl::Status busy = manager->removeParentGroup();
  EXPECT_TRUE(absl::IsFailedPrecondition(busy)) << busy;
  EXPECT_THAT(busy.message(), HasSubstr("groups web1 remain"));
  ASSERT_TRUE(manager->removeVmGroup("web1").ok());
  EXPECT_TRUE(manager->removeParentGroup().ok());
  EXPECT_FALSE(fs_.exists("flotilla"));
  EXPECT_TRUE(manager->removeParentGroup().ok());
}

}  // namespace
}  // namespace flotilla::agent
