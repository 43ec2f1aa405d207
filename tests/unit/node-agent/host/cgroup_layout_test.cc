// Finding the cgroup layout from the mount table: parseCgroupMounts on mountinfo files of a
// hybrid host (this build machine: v1 controllers, cgroup2 without controllers at
// /sys/fs/cgroup/unified) and a unified one (Debian 12 with systemd), and
// CgroupManager::open(kAuto) with those tables pointed at a fake cgroupfs.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
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

std::string readTestdata(const std::string& name) {
  std::ifstream in(std::string(FLOTILLA_HOST_TESTDATA) + "/" + name);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Writes `mountinfo` with /sys/fs/cgroup replaced by the fake's root next to it.
std::string writeMountinfo(const FakeCgroupFs& fs, const std::string& mountinfo) {
  std::string path = fs.root() + "/mountinfo";
  std::ofstream(path) << absl::StrReplaceAll(mountinfo, {{"/sys/fs/cgroup", fs.root()}});
  return path;
}

TEST(ParseCgroupMountsTest, HybridHost) {
  auto mounts = parseCgroupMounts(readTestdata("mountinfo-hybrid"));
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 10u);  // nine v1 hierarchies and the unified one; not the tmpfs
  EXPECT_EQ((*mounts)[0].mount_point, "/sys/fs/cgroup/cpu");
  EXPECT_FALSE((*mounts)[0].unified);
  EXPECT_THAT((*mounts)[0].controllers, ElementsAre("cpu"));
  EXPECT_EQ((*mounts)[3].mount_point, "/sys/fs/cgroup/memory");
  EXPECT_THAT((*mounts)[3].controllers, ElementsAre("memory"));
  EXPECT_THAT((*mounts)[2].controllers, IsEmpty()) << "cpuset is not used";
  EXPECT_EQ((*mounts)[9].mount_point, "/sys/fs/cgroup/unified");
  EXPECT_TRUE((*mounts)[9].unified);
}

TEST(ParseCgroupMountsTest, UnifiedHost) {
  auto mounts = parseCgroupMounts(readTestdata("mountinfo-unified"));
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 1u);
  EXPECT_EQ((*mounts)[0].mount_point, "/sys/fs/cgroup");
  EXPECT_TRUE((*mounts)[0].unified);
}

TEST(ParseCgroupMountsTest, CoMountedControllersAndEscapedSpaces) {
  auto mounts = parseCgroupMounts(
      "40 31 0:37 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 master:2 - cgroup cgroup "
      "rw,cpu,cpuacct\n"
      "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw\n");
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 2u);
  EXPECT_THAT((*mounts)[0].controllers, ElementsAre("cpu", "cpuacct"));
  EXPECT_EQ((*mounts)[1].mount_point, "/mnt/my cgroups");
}

TEST(ParseCgroupMountsTest, AMalformedLineIsAnError) {
  auto mounts = parseCgroupMounts("22 1 254:1 / /\n");
  ASSERT_FALSE(mounts.ok());
  EXPECT_THAT(mounts.status().message(), HasSubstr("mountinfo line 1 is malformed"));
}

TEST(CgroupAutoLayoutTest, AHybridHostUsesTheV1Hierarchies) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV1);
  fs.initV1Root({"cpu", "cpuacct", "cpuset", "memory", "pids", "unified"});
  fs.set("unified/cgroup.controllers", "hugetlb\n");
  auto manager = CgroupManager::open(
      CgroupOptions{.parent = "flotilla",
                    .root = fs.root(),
                    .version = CgroupVersion::kAuto,
                    .mountinfo_path = writeMountinfo(fs, readTestdata("mountinfo-hybrid")),
                    .filesystem = &fs});
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_EQ((*manager)->version(), CgroupVersion::kV1);
  const std::string& r = fs.root();
  EXPECT_EQ((*manager)->layout().describe(), "cgroup v1: cpu at " + r + "/cpu, cpuacct at " + r +
                                                 "/cpuacct, memory at " + r + "/memory, pids at " +
                                                 r + "/pids");
  EXPECT_TRUE(fs.exists("memory/flotilla"));
  EXPECT_FALSE(fs.exists("cpuset/flotilla"));
  EXPECT_FALSE(fs.exists("unified/flotilla"));
}

TEST(CgroupAutoLayoutTest, AUnifiedHostUsesCgroupV2) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV2);
  fs.initV2Root("cpuset cpu io memory pids");
  auto manager = CgroupManager::open(
      CgroupOptions{.parent = "flotilla",
                    .root = fs.root(),
                    .version = CgroupVersion::kAuto,
                    .mountinfo_path = writeMountinfo(fs, readTestdata("mountinfo-unified")),
                    .filesystem = &fs});
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_EQ((*manager)->version(), CgroupVersion::kV2);
  EXPECT_EQ(fs.get("flotilla/cgroup.subtree_control"), "cpu memory pids\n");
}

TEST(CgroupAutoLayoutTest, CoMountedCpuAndCpuacctAreOneHierarchy) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV1);
  fs.initV1Root({"cpu,cpuacct", "memory"});
  const std::string mountinfo =
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  auto manager = CgroupManager::open(CgroupOptions{.parent = "flotilla",
                                                   .root = fs.root(),
                                                   .version = CgroupVersion::kAuto,
                                                   .mountinfo_path = writeMountinfo(fs, mountinfo),
                                                   .filesystem = &fs});
  ASSERT_TRUE(manager.ok()) << manager.status();
  ASSERT_TRUE((*manager)->createVmGroup("web1", VmLimits{.cpu_millicores = 1000}).ok());
  EXPECT_EQ(fs.get("cpu,cpuacct/flotilla/web1/cpu.cfs_quota_us"), "100000");
  fs.set("cpu,cpuacct/flotilla/web1/cpuacct.usage", "42\n");
  auto usage = (*manager)->usage("web1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->cpu_ns, 42u);
  ASSERT_TRUE((*manager)->addProcess("web1", 7).ok());
  EXPECT_EQ(fs.get("cpu,cpuacct/flotilla/web1/cgroup.procs"), "7\n") << "written once";
}

TEST(CgroupAutoLayoutTest, NoUsableHierarchyIsAnErrorThatSaysWhy) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV2);
  fs.initV2Root("hugetlb");
  // The only cgroup2 mount lacks cpu and memory; a v1 mount outside the root does not count.
  const std::string mountinfo =
      "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
      "35 31 0:32 / /elsewhere/memory rw - cgroup cgroup rw,memory\n";
  auto manager = CgroupManager::open(CgroupOptions{.parent = "flotilla",
                                                   .root = fs.root(),
                                                   .version = CgroupVersion::kAuto,
                                                   .mountinfo_path = writeMountinfo(fs, mountinfo),
                                                   .filesystem = &fs});
  ASSERT_FALSE(manager.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(manager.status()));
  EXPECT_THAT(manager.status().message(), HasSubstr("no usable cgroup hierarchy under"));
  EXPECT_THAT(manager.status().message(), HasSubstr("offers the controllers 'hugetlb'"));
}

TEST(CgroupAutoLayoutTest, AMissingMountTableIsNamed) {
  FakeCgroupFs fs(FakeCgroupFs::Kind::kV2);
  auto manager = CgroupManager::open(CgroupOptions{.parent = "flotilla",
                                                   .root = fs.root(),
                                                   .version = CgroupVersion::kAuto,
                                                   .mountinfo_path = fs.root() + "/nope",
                                                   .filesystem = &fs});
  ASSERT_FALSE(manager.ok());
  EXPECT_TRUE(absl::IsNotFound(manager.status()));
  EXPECT_THAT(manager.status().message(), HasSubstr("reading " + fs.root() + "/nope"));
}

}  // namespace
}  // namespace flotilla::agent
