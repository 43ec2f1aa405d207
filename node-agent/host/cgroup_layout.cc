// Finding the cgroup layout (see cgroup_layout.h): the cgroup mounts of /proc/self/mountinfo
// and the choice between cgroup v2 and the v1 hierarchies.
#include "node-agent/host/cgroup_layout.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_split.h"
#include "common/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::agent {
namespace {

// The v1 controllers the manager uses; the first three are required.
constexpr const char* kV1Controllers[] = {"cpu", "cpuacct", "memory", "pids"};
constexpr size_t kV1RequiredControllers = 3;

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::vector<std::string> splitWords(std::string_view text) {
  return absl::StrSplit(absl::string_view(text.data(), text.size()), absl::ByAnyChar(" \t\n"),
                        absl::SkipEmpty());
}

// Decodes mountinfo's octal escapes ("\040" is a space).
std::string unescapeMountField(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '7' &&
        field[i + 2] >= '0' && field[i + 2] <= '7' && field[i + 3] >= '0' && field[i + 3] <= '7') {
      out.push_back(static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

bool isUnder(std::string_view path, std::string_view root) {
  if (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  if (path == root) return true;
  return path.size() > root.size() && path.substr(0, root.size()) == root &&
         (root == "/" || path[root.size()] == '/');
}

}  // namespace

std::string_view cgroupVersionName(CgroupVersion version) {
  switch (version) {
    case CgroupVersion::kAuto:
      return "auto";
    case CgroupVersion::kV1:
      return "v1";
    case CgroupVersion::kV2:
      return "v2";
  }
  return "?";
}

absl::StatusOr<std::vector<CgroupMount>> parseCgroupMounts(std::string_view mountinfo) {
  std::vector<CgroupMount> mounts;
  size_t number = 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(mountinfo.data(), mountinfo.size()), '\n')) {
    ++number;
    std::vector<std::string> fields = splitWords(std::string_view(line.data(), line.size()));
    if (fields.empty()) continue;
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    auto separator = std::find(fields.begin(), fields.end(), "-");
    size_t before = static_cast<size_t>(separator - fields.begin());
    if (separator == fields.end() || before < 6 || fields.end() - separator < 3) {
      return absl::InvalidArgumentError(
          fmt::format("mountinfo line {} is malformed: '{}'", number, line));
    }
    const std::string& fstype = *(separator + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount mount;
    mount.mount_point = unescapeMountField(fields[4]);
    mount.unified = fstype == "cgroup2";
    if (!mount.unified) {
      for (absl::string_view option : absl::StrSplit(*(separator + 3), ',')) {
        for (const char* controller : kV1Controllers) {
          if (option == controller) mount.controllers.emplace_back(controller);
        }
      }
    }
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

std::string CgroupLayout::describe() const {
  if (version == CgroupVersion::kV2) {
    return fmt::format("cgroup v2 at {} ({})", unified, fmt::join(unified_controllers, " "));
  }
  std::vector<std::string> parts;
  for (const Hierarchy& hierarchy : hierarchies) {
    parts.push_back(
        fmt::format("{} at {}", fmt::join(hierarchy.controllers, ","), hierarchy.mount_point));
  }
  return fmt::format("cgroup v1: {}", fmt::join(parts, ", "));
}

namespace {

// The controllers of a v2 group (its cgroup.controllers), or an error naming the file.
absl::StatusOr<std::vector<std::string>> readControllers(CgroupFilesystem& fs,
                                                         const std::string& group) {
  std::string path = group + "/cgroup.controllers";
  std::string content;
  if (int error = fs.readFile(path, &content); error != 0) {
    return errnoStatus(error, fmt::format("reading {}", path));
  }
  return splitWords(content);
}

absl::StatusOr<CgroupLayout> v2Layout(CgroupFilesystem& fs, const std::string& mount_point) {
  ASSIGN_OR_RETURN(std::vector<std::string> available, readControllers(fs, mount_point));
  CgroupLayout layout;
  layout.version = CgroupVersion::kV2;
  layout.unified = mount_point;
  for (const char* controller : {"cpu", "memory", "pids"}) {
    if (contains(available, controller)) layout.unified_controllers.emplace_back(controller);
  }
  if (!contains(available, "cpu") || !contains(available, "memory")) {
    return absl::FailedPreconditionError(fmt::format(
        "cgroup v2 at {} offers the controllers '{}' but Flotilla needs cpu and memory (they "
        "are bound to cgroup v1 hierarchies here: boot with systemd.unified_cgroup_hierarchy=1 "
        "or use cgroup v1)",
        mount_point, fmt::join(available, " ")));
  }
  return layout;
}

}  // namespace

absl::StatusOr<CgroupLayout> detectCgroupLayout(CgroupFilesystem& fs, CgroupVersion version,
                                                const std::string& root,
                                                const std::string& mountinfo_path) {
  if (version == CgroupVersion::kV2) return v2Layout(fs, root);
  CgroupLayout layout;
  layout.version = CgroupVersion::kV1;
  if (version == CgroupVersion::kV1) {
    for (const char* controller : kV1Controllers) {
      std::string path = fmt::format("{}/{}", root, controller);
      UniqueFd fd;
      if (fs.openDirectory(path, &fd) == 0) {
        layout.hierarchies.push_back({path, {controller}});
      }
    }
  } else {
    std::string mountinfo;
    if (int error = fs.readFile(mountinfo_path, &mountinfo); error != 0) {
      return errnoStatus(error, fmt::format("reading {}", mountinfo_path));
    }
    ASSIGN_OR_RETURN(std::vector<CgroupMount> mounts, parseCgroupMounts(mountinfo));
    std::vector<std::string> v2_notes;
    for (const CgroupMount& mount : mounts) {
      if (!mount.unified || !isUnder(mount.mount_point, root)) continue;
      absl::StatusOr<CgroupLayout> v2 = v2Layout(fs, mount.mount_point);
      if (v2.ok()) return v2;
      v2_notes.push_back(std::string(v2.status().message()));
    }
    for (const CgroupMount& mount : mounts) {
      if (mount.unified || mount.controllers.empty() || !isUnder(mount.mount_point, root)) {
        continue;
      }
      bool known = std::any_of(layout.hierarchies.begin(), layout.hierarchies.end(),
                               [&](const auto& h) { return h.mount_point == mount.mount_point; });
      if (!known) layout.hierarchies.push_back({mount.mount_point, mount.controllers});
    }
    if (layout.hierarchies.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "no usable cgroup hierarchy under {} (from {}): {}{}mount cgroup2 (with cpu and "
          "memory) or the cgroup v1 cpu, cpuacct and memory hierarchies there",
          root, mountinfo_path, fmt::join(v2_notes, "; "), v2_notes.empty() ? "" : "; "));
    }
  }
  std::vector<std::string> missing;
  for (size_t i = 0; i < kV1RequiredControllers; ++i) {
    bool found =
        std::any_of(layout.hierarchies.begin(), layout.hierarchies.end(),
                    [&](const auto& h) { return contains(h.controllers, kV1Controllers[i]); });
    if (!found) missing.emplace_back(kV1Controllers[i]);
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "cgroup v1 under {}: no hierarchy carries {}: mount them (e.g. mount -t cgroup -o {} "
        "cgroup {}/{})",
        root, fmt::join(missing, ", "), missing.front(), root, missing.front()));
  }
  return layout;
}

}  // namespace flotilla::agent
