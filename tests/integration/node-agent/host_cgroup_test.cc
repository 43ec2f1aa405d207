// CgroupManager on this machine's real cgroups (cgroup v1 on the hybrid build hosts, v2
// where the host has it): a parent group named after the test's pid, VM groups with CPU,
// memory and pids limits as the kernel stores them, a shell moved into a group before it
// does its work, its CPU time, throttling and memory as usage() reports them (checked
// against /proc through host_info), the memory limit killing a process that exceeds it,
// removal refused while a process is inside, and re-attaching after a restart. Needs root.
// Everything is removed by name (the parent group) and pid (the children), also on failure.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "common/process.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "fmt/ranges.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node-agent/host/cgroup.h"
#include "node-agent/host/host_info.h"
#include "tests/support/test_env.h"

namespace flotilla::agent {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kMiB = 1 << 20;
// Generous: the machine is shared; this bounds a wait, it measures nothing.
constexpr absl::Duration kPatience = absl::Seconds(60);

bool waitFor(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

std::string trimmed(const absl::StatusOr<std::string>& text) {
  if (!text.ok()) return fmt::format("<{}>", text.status());
  std::string out = *text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

bool isDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Removes `parent` and the groups in it from every cgroup hierarchy, by name, whatever state
// a failed test left. Processes still in a group are the test's own (the shells' children,
// which outlive a shell killed by the OOM killer for a moment): they are killed by pid.
void removeGroupsByName(const std::string& parent) {
  absl::StatusOr<std::string> mountinfo = readFileToString("/proc/self/mountinfo");
  if (!mountinfo.ok()) return;
  absl::StatusOr<std::vector<CgroupMount>> mounts = parseCgroupMounts(*mountinfo);
  if (!mounts.ok()) return;
  for (const CgroupMount& mount : *mounts) {
    const std::string dir = mount.mount_point + "/" + parent;
    if (!isDirectory(dir)) continue;
    for (const char* vm : {"vm1", "vm2", "oom1", "gone1"}) {
      const std::string group = fmt::format("{}/{}", dir, vm);
      if (!isDirectory(group)) continue;
      bool empty = waitFor([&] {
        absl::StatusOr<std::string> procs = readFileToString(group + "/cgroup.procs");
        if (!procs.ok() || procs->empty()) return true;
        for (absl::string_view pid : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
          ::kill(std::stoi(std::string(pid)), SIGKILL);
        }
        return false;
      });
      if (!empty) {
        ADD_FAILURE() << "cleanup: processes stay in " << group;
      } else if (::rmdir(group.c_str()) != 0) {
        ADD_FAILURE() << errnoStatus(errno, "cleanup: removing " + group);
      }
    }
    if (::rmdir(dir.c_str()) != 0) {
      ADD_FAILURE() << errnoStatus(errno, "cleanup: removing " + dir);
    }
  }
}

class HostCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u)
        << "this test needs root: it creates cgroups under /sys/fs/cgroup and moves processes "
           "into them (run it as root, as CI does)";
    for (const char* program : {"sh", "head", "tr"}) {
      auto found = testing::findProgram(program, program[0] == 's' ? "dash" : "coreutils");
      ASSERT_TRUE(found.ok()) << found.status();
    }
    parent_ = fmt::format("flotilla-test-{}", ::getpid());
    removeGroupsByName(parent_);  // a previous run with the same pid
    auto manager = CgroupManager::open(CgroupOptions{.parent = parent_});
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
    std::cout << "cgroup layout: " << manager_->layout().describe() << "\n";
  }

  void TearDown() override {
    children_.clear();  // kills (SIGKILL to each process group) and reaps what is left
    manager_.reset();
    removeGroupsByName(parent_);
  }

  // The directory of VM `vm`'s group in the hierarchy carrying `controller`.
  std::string groupDir(const std::string& vm, const std::string& controller) const {
    const CgroupLayout& layout = manager_->layout();
    if (layout.version == CgroupVersion::kV2)
      return fmt::format("{}/{}/{}", layout.unified, parent_, vm);
    for (const CgroupLayout::Hierarchy& hierarchy : layout.hierarchies) {
      if (std::find(hierarchy.controllers.begin(), hierarchy.controllers.end(), controller) !=
          hierarchy.controllers.end()) {
        return fmt::format("{}/{}/{}", hierarchy.mount_point, parent_, vm);
      }
    }
    return "<no hierarchy carries " + controller + ">";
  }
  std::string limitFile(const std::string& vm, const std::string& controller,
                        const std::string& file) const {
    return trimmed(readFileToString(groupDir(vm, controller) + "/" + file));
  }

  // Starts `sh -c script` waiting for a line on its standard input; returns the pipe's write
  // end. The shell belongs to children_ (killed with its process group on teardown).
  absl::StatusOr<UniqueFd> startWaitingShell(const std::string& script) {
    ASSIGN_OR_RETURN(Pipe pipe, makePipe());
    ASSIGN_OR_RETURN(ChildProcess child,
                     ChildProcess::spawn(SpawnOptions{.argv = {"sh", "-c", "read go; " + script},
                                                      .env = {},
                                                      .cwd = "",
                                                      .fds = {{0, pipe.read.get()}},
                                                      .new_process_group = true}));
    children_.push_back(std::move(child));
    return std::move(pipe.write);
  }

  static absl::Status go(UniqueFd& start) {
    if (::write(start.get(), "go\n", 3) != 3) return errnoStatus(errno, "starting the shell");
    start.reset();
    return absl::OkStatus();
  }

  std::string parent_;
  std::unique_ptr<CgroupManager> manager_;
  std::vector<ChildProcess> children_;
};

TEST_F(HostCgroupTest, LimitsUsageAndRemovalOfAVmGroup) {
  const VmLimits limits{.cpu_millicores = 200,
                        .cpu_period_us = 100000,
                        .cpu_weight = 200,
                        .memory_max_bytes = 64 * kMiB,
                        .memory_high_bytes = 48 * kMiB,
                        .pids_max = 32};
  auto group = manager_->createVmGroup("vm1", limits);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_TRUE(group->created);
  for (const std::string& path : group->paths) EXPECT_TRUE(isDirectory(path)) << path;

  // The limits as the kernel holds them.
  if (manager_->version() == CgroupVersion::kV2) {
    EXPECT_EQ(limitFile("vm1", "cpu", "cpu.max"), "20000 100000");
    EXPECT_EQ(limitFile("vm1", "cpu", "cpu.weight"), "200");
    EXPECT_EQ(limitFile("vm1", "memory", "memory.max"), "67108864");
    EXPECT_EQ(limitFile("vm1", "memory", "memory.high"), "50331648");
  } else {
    EXPECT_EQ(limitFile("vm1", "cpu", "cpu.cfs_quota_us"), "20000");
    EXPECT_EQ(limitFile("vm1", "cpu", "cpu.cfs_period_us"), "100000");
    EXPECT_EQ(limitFile("vm1", "cpu", "cpu.shares"), "2048");
    EXPECT_EQ(limitFile("vm1", "memory", "memory.limit_in_bytes"), "67108864");
    EXPECT_EQ(limitFile("vm1", "memory", "memory.soft_limit_in_bytes"), "50331648");
  }
  const bool have_pids = groupDir("vm1", "pids").front() == '/';
  if (have_pids) {
    EXPECT_EQ(limitFile("vm1", "pids", "pids.max"), "32");
  }

  // A shell that, once in the group, holds 8 MiB in a variable and then spins.
  auto start =
      startWaitingShell("x=$(head -c 8388608 /dev/zero | tr '\\0' a); while :; do :; done");
  ASSERT_TRUE(start.ok()) << start.status();
  const pid_t shell = children_.back().pid();
  ASSERT_TRUE(manager_->addProcess("vm1", shell).ok());
  ASSERT_TRUE(go(*start).ok());

  CgroupUsage first;
  ASSERT_TRUE(waitFor([&] {
    auto usage = manager_->usage("vm1");
    if (!usage.ok()) return false;
    first = *usage;
    return first.memory_bytes >= 8 * kMiB && first.cpu_ns > 0 && first.cpu_throttled_periods > 0;
  })) << "usage never showed 8 MiB, CPU time and throttling: memory "
      << first.memory_bytes << ", cpu " << first.cpu_ns << " ns, throttled "
      << first.cpu_throttled_periods;
  EXPECT_THAT(first.pids, Contains(shell));
  EXPECT_LE(first.memory_bytes, limits.memory_max_bytes);
  if (first.memory_peak_bytes) {
    EXPECT_GE(*first.memory_peak_bytes, 8 * kMiB);
  }
  if (have_pids) {
    EXPECT_GE(first.tasks.value_or(0), 1u);
  }

  // The shell's own CPU time (from /proc, whole ticks) is part of the group's (exact).
  auto process = readProcessStats(shell);
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_GT(process->rss_bytes, 8 * kMiB);
  auto later = manager_->usage("vm1");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_GE(later->cpu_ns, process->cpu_ns);
  ASSERT_TRUE(waitFor([&] {
    auto usage = manager_->usage("vm1");
    return usage.ok() && usage->cpu_ns > later->cpu_ns;
  })) << "the group's CPU time stopped growing";

  // The group cannot go while the shell is in it; the error names it.
  absl::Status busy = manager_->removeVmGroup("vm1");
  EXPECT_TRUE(absl::IsFailedPrecondition(busy)) << busy;
  EXPECT_THAT(busy.message(), HasSubstr(std::to_string(shell)));
  for (const std::string& path : group->paths) EXPECT_TRUE(isDirectory(path)) << path;

  auto exit = children_.back().terminate(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(waitFor([&] {
    auto usage = manager_->usage("vm1");
    return usage.ok() && usage->pids.empty();
  }));
  ASSERT_TRUE(manager_->removeVmGroup("vm1").ok());
  for (const std::string& path : group->paths) EXPECT_FALSE(isDirectory(path)) << path;
  EXPECT_TRUE(manager_->removeVmGroup("vm1").ok());
  EXPECT_TRUE(absl::IsNotFound(manager_->usage("vm1").status()));
}

TEST_F(HostCgroupTest, TheMemoryLimitKillsAProcessThatExceedsIt) {
  ASSERT_TRUE(manager_->createVmGroup("oom1", VmLimits{.memory_max_bytes = 16 * kMiB}).ok());
  auto start = startWaitingShell("x=$(head -c 67108864 /dev/zero | tr '\\0' a); exit 0");
  ASSERT_TRUE(start.ok()) << start.status();
  ASSERT_TRUE(manager_->addProcess("oom1", children_.back().pid()).ok());
  ASSERT_TRUE(go(*start).ok());
  auto exit = children_.back().wait(kPatience);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal, SIGKILL) << "the shell " << exit->describe();
  // Its pipeline (head, tr) ends once the shell is gone.
  CgroupUsage usage;
  ASSERT_TRUE(waitFor([&] {
    auto current = manager_->usage("oom1");
    if (current.ok()) usage = *current;
    return current.ok() && current->pids.empty();
  })) << "processes stayed in the group: "
      << fmt::format("{}", fmt::join(usage.pids, " "));
  if (usage.memory_peak_bytes) {
    EXPECT_LE(*usage.memory_peak_bytes, 16 * kMiB);
  }
  EXPECT_TRUE(manager_->removeVmGroup("oom1").ok());
}

TEST_F(HostCgroupTest, AnUpdateChangesTheLimitsOfAnExistingGroup) {
  ASSERT_TRUE(manager_->createVmGroup("vm2", VmLimits{.cpu_millicores = 1000}).ok());
  auto group = manager_->createVmGroup(
      "vm2", VmLimits{.cpu_millicores = 2500, .memory_max_bytes = 128 * kMiB});
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_FALSE(group->created);
  if (manager_->version() == CgroupVersion::kV2) {
    EXPECT_EQ(limitFile("vm2", "cpu", "cpu.max"), "250000 100000");
    EXPECT_EQ(limitFile("vm2", "memory", "memory.max"), "134217728");
    EXPECT_EQ(limitFile("vm2", "memory", "memory.high"), "max");
  } else {
    EXPECT_EQ(limitFile("vm2", "cpu", "cpu.cfs_quota_us"), "250000");
    EXPECT_EQ(limitFile("vm2", "memory", "memory.limit_in_bytes"), "134217728");
  }
  ASSERT_TRUE(manager_->createVmGroup("vm2", {}).ok());
  if (manager_->version() == CgroupVersion::kV1) {
    EXPECT_EQ(limitFile("vm2", "cpu", "cpu.cfs_quota_us"), "-1");
    // The kernel shows "no limit" as the largest page-aligned value.
    EXPECT_NE(limitFile("vm2", "memory", "memory.limit_in_bytes"), "134217728");
  }
  EXPECT_TRUE(manager_->removeVmGroup("vm2").ok());
}

TEST_F(HostCgroupTest, ARestartedAgentFindsItsGroupsAgain) {
  ASSERT_TRUE(manager_->createVmGroup("vm1", {}).ok());
  ASSERT_TRUE(manager_->createVmGroup("vm2", {}).ok());
  auto restarted = CgroupManager::open(CgroupOptions{.parent = parent_});
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  auto vms = (*restarted)->listVmGroups();
  ASSERT_TRUE(vms.ok()) << vms.status();
  EXPECT_THAT(*vms, ElementsAre("vm1", "vm2"));
  absl::Status parent_busy = (*restarted)->removeParentGroup();
  EXPECT_TRUE(absl::IsFailedPrecondition(parent_busy)) << parent_busy;
  EXPECT_TRUE((*restarted)->removeVmGroup("vm1").ok());
  EXPECT_TRUE((*restarted)->removeVmGroup("vm2").ok());
  EXPECT_THAT(*(*restarted)->listVmGroups(), IsEmpty());
  EXPECT_TRUE((*restarted)->removeParentGroup().ok());
  for (const std::string& path : (*restarted)->parentPaths()) EXPECT_FALSE(isDirectory(path));
}

TEST_F(HostCgroupTest, ProcessesAndGroupsThatDoNotExist) {
  ASSERT_TRUE(manager_->createVmGroup("gone1", {}).ok());
  // A pid that is free: a reaped child's (pids are handed out in increasing order).
  SpawnOptions options;
  options.argv = {"true"};
  auto child = ChildProcess::spawn(options);
  ASSERT_TRUE(child.ok()) << child.status();
  const pid_t pid = child->pid();
  ASSERT_TRUE(child->wait(kPatience).ok());
  absl::Status no_process = manager_->addProcess("gone1", pid);
  EXPECT_TRUE(absl::IsNotFound(no_process)) << no_process;
  absl::Status no_group = manager_->addProcess("nosuchvm", ::getpid());
  EXPECT_TRUE(absl::IsNotFound(no_group)) << no_group;
  EXPECT_THAT(no_group.message(), HasSubstr("create the group first"));
  auto fd = manager_->openGroupFd("gone1");
  if (manager_->version() == CgroupVersion::kV2) {
    EXPECT_TRUE(fd.ok()) << fd.status();
  } else {
    EXPECT_TRUE(absl::IsFailedPrecondition(fd.status())) << fd.status();
  }
  EXPECT_TRUE(manager_->removeVmGroup("gone1").ok());
}

}  // namespace
}  // namespace flotilla::agent
