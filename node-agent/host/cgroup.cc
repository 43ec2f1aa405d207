// CgroupManager (see cgroup.h): the parent group, VM groups, their limits and accounting on
// cgroup v2 and v1 (the layout comes from cgroup_layout.h).
#include "node-agent/host/cgroup.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <utility>

#include "absl/strings/str_split.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::agent {
namespace {

constexpr uint64_t kDefaultWeight = 100;
constexpr uint64_t kMinQuotaUs = 1000;  // the kernel's minimum (sched-bwc.rst)
constexpr uint64_t kMinPeriodUs = 1000;
constexpr uint64_t kMaxPeriodUs = 1000000;
constexpr uint64_t kMaxMillicores = 100'000'000;  // 100k cores: anything above is a unit mistake
constexpr uint64_t kMinMemoryBytes = 1 << 20;

const Logger& log() {
  static const Logger logger("agent-cgroup");
  return logger;
}

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::vector<std::string> splitWords(std::string_view text) {
  return absl::StrSplit(absl::string_view(text.data(), text.size()), absl::ByAnyChar(" \t\n"),
                        absl::SkipEmpty());
}

std::optional<uint64_t> parseU64(std::string_view text) {
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

absl::Status validateParent(std::string_view parent) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format(
        "cgroup parent '{}' is invalid: {}; use '/'-separated components of letters, digits, "
        "'.', '_' and '-', relative to the hierarchy root (e.g. 'flotilla')",
        parent, why));
  };
  if (parent.empty()) return invalid("it is empty");
  if (parent.front() == '/' || parent.back() == '/') return invalid("it starts or ends with '/'");
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(parent.data(), parent.size()), '/')) {
    if (part.empty()) return invalid("it has an empty component");
    if (part == "." || part == "..") return invalid("it has a '.' or '..' component");
    for (char c : part) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
      if (!ok) return invalid(fmt::format("it contains the character '{}'", c));
    }
  }
  return absl::OkStatus();
}

absl::Status validateLimits(std::string_view vm, const VmLimits& limits, bool have_pids) {
  auto invalid = [&](std::string message) {
    return absl::InvalidArgumentError(fmt::format("VM {}: {}", vm, message));
  };
  if (limits.cpu_period_us < kMinPeriodUs || limits.cpu_period_us > kMaxPeriodUs) {
    return invalid(fmt::format("cpu_period_us {} is out of range: use {} .. {} µs",
                               limits.cpu_period_us, kMinPeriodUs, kMaxPeriodUs));
  }
  if (limits.cpu_millicores > kMaxMillicores) {
    return invalid(
        fmt::format("cpu_millicores {} is too large: 1000 is one core", limits.cpu_millicores));
  }
  if (limits.cpu_millicores != 0 &&
      limits.cpu_millicores * limits.cpu_period_us / 1000 < kMinQuotaUs) {
    return invalid(fmt::format(
        "cpu_millicores {} gives a quota below {} µs per {} µs period: raise the limit or the "
        "period",
        limits.cpu_millicores, kMinQuotaUs, limits.cpu_period_us));
  }
  if (limits.cpu_weight > 10000) {
    return invalid(fmt::format("cpu_weight {} is out of range: use 1 .. 10000 (default 100)",
                               limits.cpu_weight));
  }
  if (limits.memory_max_bytes != 0 && limits.memory_max_bytes < kMinMemoryBytes) {
    return invalid(fmt::format("memory_max_bytes {} is below 1 MiB: the value is in bytes",
                               limits.memory_max_bytes));
  }
  if (limits.memory_high_bytes != 0 && limits.memory_high_bytes < kMinMemoryBytes) {
    return invalid(fmt::format("memory_high_bytes {} is below 1 MiB: the value is in bytes",
                               limits.memory_high_bytes));
  }
  if (limits.memory_high_bytes != 0 && limits.memory_max_bytes != 0 &&
      limits.memory_high_bytes > limits.memory_max_bytes) {
    return invalid(fmt::format("memory_high_bytes {} is above memory_max_bytes {}",
                               limits.memory_high_bytes, limits.memory_max_bytes));
  }
  if (limits.pids_max != 0 && !have_pids) {
    return absl::FailedPreconditionError(fmt::format(
        "VM {}: pids_max is set but this host has no pids cgroup controller: leave it at 0", vm));
  }
  return absl::OkStatus();
}

// Values of "key value" lines (cpu.stat).
absl::StatusOr<uint64_t> keyedValue(std::string_view text, std::string_view key,
                                    const std::string& path) {
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    std::vector<std::string> words = splitWords(std::string_view(line.data(), line.size()));
    if (words.size() == 2 && words[0] == key) {
      if (std::optional<uint64_t> value = parseU64(words[1])) return *value;
      break;
    }
  }
  return absl::InternalError(
      fmt::format("{}: no numeric '{}' line in '{}'", path, key, text.substr(0, 200)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CgroupManager>> CgroupManager::open(const CgroupOptions& options) {
  RETURN_IF_ERROR(validateParent(options.parent));
  std::unique_ptr<CgroupFilesystem> owned;
  CgroupFilesystem* fs = options.filesystem;
  if (fs == nullptr) {
    owned = std::make_unique<SystemCgroupFilesystem>();
    fs = owned.get();
  }
  ASSIGN_OR_RETURN(CgroupLayout layout,
                   detectCgroupLayout(*fs, options.version, options.root, options.mountinfo_path));
  std::unique_ptr<CgroupManager> manager(
      new CgroupManager(std::move(layout), options.parent, fs, std::move(owned)));
  RETURN_IF_ERROR(manager->createParent());
  log().info("VM groups under '{}' in {}", manager->parent_, manager->layout_.describe());
  return manager;
}

std::vector<std::string> CgroupManager::mountPoints() const {
  if (layout_.version == CgroupVersion::kV2) return {layout_.unified};
  std::vector<std::string> points;
  for (const CgroupLayout::Hierarchy& hierarchy : layout_.hierarchies) {
    points.push_back(hierarchy.mount_point);
  }
  return points;
}

std::vector<std::string> CgroupManager::parentPaths() const {
  std::vector<std::string> paths;
  for (const std::string& mount_point : mountPoints()) {
    paths.push_back(fmt::format("{}/{}", mount_point, parent_));
  }
  return paths;
}

std::string CgroupManager::hierarchyOf(std::string_view controller) const {
  if (layout_.version == CgroupVersion::kV2) {
    return contains(layout_.unified_controllers, controller) ? layout_.unified : "";
  }
  for (const CgroupLayout::Hierarchy& hierarchy : layout_.hierarchies) {
    if (contains(hierarchy.controllers, controller)) return hierarchy.mount_point;
  }
  return "";
}

std::string CgroupManager::groupPath(const std::string& mount_point, std::string_view vm) const {
  return fmt::format("{}/{}/{}", mount_point, parent_, vm);
}

absl::StatusOr<std::string> CgroupManager::readFile(const std::string& path) {
  std::string content;
  if (int error = fs_->readFile(path, &content); error != 0) {
    return errnoStatus(error, fmt::format("reading {}", path));
  }
  return content;
}

absl::StatusOr<uint64_t> CgroupManager::readNumber(const std::string& path) {
  ASSIGN_OR_RETURN(std::string content, readFile(path));
  std::vector<std::string> words = splitWords(content);
  std::optional<uint64_t> value = words.size() == 1 ? parseU64(words[0]) : std::nullopt;
  if (!value) {
    return absl::InternalError(fmt::format("{}: expected a number, found '{}'", path, content));
  }
  return *value;
}

absl::StatusOr<std::optional<uint64_t>> CgroupManager::readOptionalNumber(const std::string& path) {
  absl::StatusOr<uint64_t> value = readNumber(path);
  if (absl::IsNotFound(value.status())) return std::nullopt;
  if (!value.ok()) return value.status();
  return *value;
}

absl::Status CgroupManager::writeFile(const std::string& path, std::string_view value) {
  int error = fs_->writeFile(path, value);
  if (error == 0) return absl::OkStatus();
  std::string what = fmt::format("writing '{}' to {}", value, path);
  if (error == ENOENT) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: the file does not exist (is its controller enabled for this group?)", what));
  }
  return errnoStatus(error, what);
}

absl::Status CgroupManager::enableControllers(const std::string& group) {
  std::string path = group + "/cgroup.subtree_control";
  ASSIGN_OR_RETURN(std::string content, readFile(path));
  std::vector<std::string> enabled = splitWords(content);
  for (const std::string& controller : layout_.unified_controllers) {
    if (contains(enabled, controller)) continue;
    int error = fs_->writeFile(path, "+" + controller);
    if (error == 0) continue;
    std::string what = fmt::format("enabling the {} controller in {}", controller, path);
    if (error == EBUSY) {
      return absl::FailedPreconditionError(fmt::format(
          "{}: the group has processes of its own (cgroup v2 lets only groups without "
          "processes hand controllers to children): choose a parent below an empty group",
          what));
    }
    if (error == ENOENT) {
      return absl::FailedPreconditionError(fmt::format(
          "{}: it is not in {}/cgroup.controllers (enable it in the group above, or have it "
          "delegated)",
          what, group));
    }
    return errnoStatus(error, what);
  }
  return absl::OkStatus();
}

absl::Status CgroupManager::createParent() {
  std::vector<std::string> created;
  auto undo = [&](absl::Status status) {
    for (auto it = created.rbegin(); it != created.rend(); ++it) fs_->removeDirectory(*it);
    return status;
  };
  std::vector<absl::string_view> parts = absl::StrSplit(parent_, '/');
  for (const std::string& mount_point : mountPoints()) {
    std::string group = mount_point;
    if (layout_.version == CgroupVersion::kV2) {
      if (absl::Status status = enableControllers(group); !status.ok()) return undo(status);
    }
    for (absl::string_view part : parts) {
      group = fmt::format("{}/{}", group, part);
      int error = fs_->makeDirectory(group);
      if (error == 0) {
        created.push_back(group);
      } else if (error != EEXIST) {
        return undo(errnoStatus(error, fmt::format("creating cgroup {}", group)));
      }
      if (layout_.version == CgroupVersion::kV2) {
        if (absl::Status status = enableControllers(group); !status.ok()) return undo(status);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CgroupManager::writeLimits(std::string_view vm, const VmLimits& limits) {
  const uint64_t quota_us = limits.cpu_millicores * limits.cpu_period_us / 1000;
  const uint64_t weight = limits.cpu_weight == 0 ? kDefaultWeight : limits.cpu_weight;
  auto bytesOr = [](uint64_t bytes, std::string_view none) {
    return bytes == 0 ? std::string(none) : std::to_string(bytes);
  };
  const std::string pids_max = bytesOr(limits.pids_max, "max");
  if (layout_.version == CgroupVersion::kV2) {
    const std::string group = groupPath(layout_.unified, vm);
    RETURN_IF_ERROR(writeFile(
        group + "/cpu.max", fmt::format("{} {}", bytesOr(quota_us, "max"), limits.cpu_period_us)));
    RETURN_IF_ERROR(writeFile(group + "/cpu.weight", std::to_string(weight)));
    RETURN_IF_ERROR(writeFile(group + "/memory.high", bytesOr(limits.memory_high_bytes, "max")));
    RETURN_IF_ERROR(writeFile(group + "/memory.max", bytesOr(limits.memory_max_bytes, "max")));
    if (contains(layout_.unified_controllers, "pids")) {
      RETURN_IF_ERROR(writeFile(group + "/pids.max", pids_max));
    }
    return absl::OkStatus();
  }
  const std::string cpu = groupPath(hierarchyOf("cpu"), vm);
  RETURN_IF_ERROR(writeFile(cpu + "/cpu.cfs_period_us", std::to_string(limits.cpu_period_us)));
  RETURN_IF_ERROR(writeFile(cpu + "/cpu.cfs_quota_us", bytesOr(quota_us, "-1")));
  // cpu.weight = 1 + (shares - 2) * 9999 / 262142 in the kernel's v1 → v2 conversion; for
  // the other direction systemd (and this) use shares = weight * 1024 / 100.
  RETURN_IF_ERROR(writeFile(cpu + "/cpu.shares",
                            std::to_string(std::max<uint64_t>(2, weight * 1024 / kDefaultWeight))));
  const std::string memory = groupPath(hierarchyOf("memory"), vm);
  RETURN_IF_ERROR(
      writeFile(memory + "/memory.limit_in_bytes", bytesOr(limits.memory_max_bytes, "-1")));
  RETURN_IF_ERROR(
      writeFile(memory + "/memory.soft_limit_in_bytes", bytesOr(limits.memory_high_bytes, "-1")));
  if (std::string pids = hierarchyOf("pids"); !pids.empty()) {
    RETURN_IF_ERROR(writeFile(groupPath(pids, vm) + "/pids.max", pids_max));
  }
  return absl::OkStatus();
}

absl::StatusOr<VmCgroup> CgroupManager::createVmGroup(std::string_view vm, const VmLimits& limits) {
  RETURN_IF_ERROR(validateName("vm", vm));
  RETURN_IF_ERROR(validateLimits(vm, limits, !hierarchyOf("pids").empty()));
  VmCgroup group{.vm = std::string(vm), .paths = {}, .created = false};
  std::vector<std::string> created;
  auto undo = [&](const absl::Status& status) {
    for (auto it = created.rbegin(); it != created.rend(); ++it) fs_->removeDirectory(*it);
    return annotate(status, fmt::format("setting up the cgroup of VM {}", vm));
  };
  for (const std::string& mount_point : mountPoints()) {
    std::string path = groupPath(mount_point, vm);
    int error = fs_->makeDirectory(path);
    if (error == 0) {
      created.push_back(path);
    } else if (error == ENOENT) {
      return undo(absl::FailedPreconditionError(
          fmt::format("creating cgroup {}: its parent {}/{} does not exist (removed since the "
                      "agent started?): restart the agent to recreate it",
                      path, mount_point, parent_)));
    } else if (error != EEXIST) {
      return undo(errnoStatus(error, fmt::format("creating cgroup {}", path)));
    }
    group.paths.push_back(std::move(path));
  }
  if (absl::Status status = writeLimits(vm, limits); !status.ok()) return undo(status);
  group.created = !created.empty();
  log()
      .with("vm", std::string(vm))
      .info("{} cgroup (cpu {} millicores per {} µs, weight {}, memory max {} high {}, pids {})",
            group.created ? "created" : "updated", limits.cpu_millicores, limits.cpu_period_us,
            limits.cpu_weight, limits.memory_max_bytes, limits.memory_high_bytes, limits.pids_max);
  return group;
}

absl::Status CgroupManager::addProcess(std::string_view vm, pid_t pid) {
  RETURN_IF_ERROR(validateName("vm", vm));
  if (pid <= 0) {
    return absl::InvalidArgumentError(fmt::format("VM {}: process id {} is invalid", vm, pid));
  }
  for (const std::string& mount_point : mountPoints()) {
    std::string path = groupPath(mount_point, vm) + "/cgroup.procs";
    int error = fs_->writeFile(path, std::to_string(pid));
    if (error == ENOENT) {
      return absl::NotFoundError(fmt::format(
          "adding process {} to VM {}: its cgroup {} does not exist: create the group first", pid,
          vm, groupPath(mount_point, vm)));
    }
    if (error == ESRCH) {
      return absl::NotFoundError(
          fmt::format("adding process {} to VM {} ({}): no such process", pid, vm, path));
    }
    if (error != 0) {
      return errnoStatus(error,
                         fmt::format("adding process {} to VM {}: writing {}", pid, vm, path));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> CgroupManager::openGroupFd(std::string_view vm) {
  RETURN_IF_ERROR(validateName("vm", vm));
  if (layout_.version != CgroupVersion::kV2) {
    return absl::FailedPreconditionError(fmt::format(
        "VM {}: spawning into a cgroup (CLONE_INTO_CGROUP) needs cgroup v2; this host uses "
        "cgroup v1: spawn, then addProcess()",
        vm));
  }
  std::string path = groupPath(layout_.unified, vm);
  UniqueFd fd;
  if (int error = fs_->openDirectory(path, &fd); error != 0) {
    return errnoStatus(error, fmt::format("opening cgroup {} of VM {}", path, vm));
  }
  return fd;
}

absl::StatusOr<std::vector<pid_t>> CgroupManager::readProcs(const std::string& group) {
  std::string path = group + "/cgroup.procs";
  ASSIGN_OR_RETURN(std::string content, readFile(path));
  std::vector<pid_t> pids;
  for (const std::string& word : splitWords(content)) {
    std::optional<uint64_t> pid = parseU64(word);
    if (!pid || *pid == 0 || *pid > 0x7fffffff) {
      return absl::InternalError(fmt::format("{}: '{}' is not a process id", path, word));
    }
    pids.push_back(static_cast<pid_t>(*pid));
  }
  return pids;
}

absl::StatusOr<CgroupUsage> CgroupManager::usage(std::string_view vm) {
  RETURN_IF_ERROR(validateName("vm", vm));
  auto context = [&](const absl::Status& status) {
    if (absl::IsNotFound(status)) {
      return absl::NotFoundError(fmt::format("VM {} has no cgroup: {}", vm, status.message()));
    }
    return annotate(status, fmt::format("reading the usage of VM {}", vm));
  };
  CgroupUsage usage;
  auto collect = [&]() -> absl::Status {
    for (const std::string& mount_point : mountPoints()) {
      ASSIGN_OR_RETURN(std::vector<pid_t> pids, readProcs(groupPath(mount_point, vm)));
      usage.pids.insert(usage.pids.end(), pids.begin(), pids.end());
    }
    std::sort(usage.pids.begin(), usage.pids.end());
    usage.pids.erase(std::unique(usage.pids.begin(), usage.pids.end()), usage.pids.end());
    if (std::string pids = hierarchyOf("pids"); !pids.empty()) {
      ASSIGN_OR_RETURN(usage.tasks, readOptionalNumber(groupPath(pids, vm) + "/pids.current"));
    }
    if (layout_.version == CgroupVersion::kV2) {
      const std::string group = groupPath(layout_.unified, vm);
      const std::string stat_path = group + "/cpu.stat";
      ASSIGN_OR_RETURN(std::string stat, readFile(stat_path));
      ASSIGN_OR_RETURN(uint64_t usage_us, keyedValue(stat, "usage_usec", stat_path));
      ASSIGN_OR_RETURN(usage.cpu_throttled_periods, keyedValue(stat, "nr_throttled", stat_path));
      ASSIGN_OR_RETURN(uint64_t throttled_us, keyedValue(stat, "throttled_usec", stat_path));
      usage.cpu_ns = usage_us * 1000;
      usage.cpu_throttled_ns = throttled_us * 1000;
      ASSIGN_OR_RETURN(usage.memory_bytes, readNumber(group + "/memory.current"));
      ASSIGN_OR_RETURN(usage.memory_peak_bytes, readOptionalNumber(group + "/memory.peak"));
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(usage.cpu_ns,
                     readNumber(groupPath(hierarchyOf("cpuacct"), vm) + "/cpuacct.usage"));
    const std::string stat_path = groupPath(hierarchyOf("cpu"), vm) + "/cpu.stat";
    ASSIGN_OR_RETURN(std::string stat, readFile(stat_path));
    ASSIGN_OR_RETURN(usage.cpu_throttled_periods, keyedValue(stat, "nr_throttled", stat_path));
    ASSIGN_OR_RETURN(usage.cpu_throttled_ns, keyedValue(stat, "throttled_time", stat_path));
    const std::string memory = groupPath(hierarchyOf("memory"), vm);
    ASSIGN_OR_RETURN(usage.memory_bytes, readNumber(memory + "/memory.usage_in_bytes"));
    ASSIGN_OR_RETURN(usage.memory_peak_bytes,
                     readOptionalNumber(memory + "/memory.max_usage_in_bytes"));
    return absl::OkStatus();
  };
  if (absl::Status status = collect(); !status.ok()) return context(status);
  return usage;
}

absl::Status CgroupManager::removeVmGroup(std::string_view vm) {
  RETURN_IF_ERROR(validateName("vm", vm));
  std::vector<std::string> existing;
  std::vector<pid_t> pids;
  for (const std::string& mount_point : mountPoints()) {
    std::string path = groupPath(mount_point, vm);
    absl::StatusOr<std::vector<pid_t>> procs = readProcs(path);
    if (absl::IsNotFound(procs.status())) continue;
    if (!procs.ok()) return annotate(procs.status(), fmt::format("removing VM {}'s cgroup", vm));
    pids.insert(pids.end(), procs->begin(), procs->end());
    existing.push_back(std::move(path));
  }
  if (!pids.empty()) {
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    return absl::FailedPreconditionError(fmt::format(
        "cannot remove the cgroup of VM {} ({}): process{} {} still in it: stop the VM's "
        "processes first (the agent never kills them to remove a group)",
        vm, fmt::join(existing, ", "), pids.size() == 1 ? "" : "es", fmt::join(pids, ", ")));
  }
  for (const std::string& path : existing) {
    int error = fs_->removeDirectory(path);
    if (error == 0 || error == ENOENT) continue;
    if (error == EBUSY) {
      return absl::FailedPreconditionError(fmt::format(
          "removing cgroup {} of VM {}: busy (a process joined meanwhile, or it has child "
          "groups): stop them and retry",
          path, vm));
    }
    return errnoStatus(error, fmt::format("removing cgroup {} of VM {}", path, vm));
  }
  if (!existing.empty()) log().with("vm", std::string(vm)).info("removed cgroup");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> CgroupManager::listVmGroups() {
  std::vector<std::string> vms;
  for (const std::string& parent : parentPaths()) {
    std::vector<std::string> names;
    if (int error = fs_->listDirectories(parent, &names); error != 0) {
      return errnoStatus(error, fmt::format("listing the VM cgroups in {}", parent));
    }
    for (std::string& name : names) {
      if (!validateName("vm", name).ok()) {
        log().warn("{}/{} is not a VM group (not a VM name): ignored", parent, name);
        continue;
      }
      vms.push_back(std::move(name));
    }
  }
  std::sort(vms.begin(), vms.end());
  vms.erase(std::unique(vms.begin(), vms.end()), vms.end());
  return vms;
}

absl::Status CgroupManager::removeParentGroup() {
  for (const std::string& path : parentPaths()) {
    std::vector<std::string> children;
    int error = fs_->listDirectories(path, &children);
    if (error == ENOENT) continue;
    if (error != 0) return errnoStatus(error, fmt::format("listing cgroup {}", path));
    if (!children.empty()) {
      std::sort(children.begin(), children.end());
      return absl::FailedPreconditionError(
          fmt::format("cannot remove the cgroup parent {}: groups {} remain in it: remove "
                      "their VMs first",
                      path, fmt::join(children, ", ")));
    }
    error = fs_->removeDirectory(path);
    if (error != 0 && error != ENOENT) {
      return errnoStatus(error, fmt::format("removing cgroup {}", path));
    }
  }
  return absl::OkStatus();
}

}  // namespace flotilla::agent
