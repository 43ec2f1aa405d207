// A temporary directory that behaves like cgroupfs for CgroupManager's unit tests: a new
// group directory gets the interface files of its controllers (v2: those enabled in the
// parent's cgroup.subtree_control; v1: those of its hierarchy), a file that does not exist
// cannot be written, cgroup.subtree_control accepts only "+controller" listed in
// cgroup.controllers, rmdir removes a group with its files but fails with EBUSY while
// cgroup.procs lists a process or a child group exists, and writes can be made to fail.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "node-agent/host/cgroup_fs.h"

namespace flotilla::agent::testing {

class FakeCgroupFs : public SystemCgroupFilesystem {
 public:
  enum class Kind { kV1, kV2 };

  // Creates a fresh temporary root directory (removed on destruction).
  explicit FakeCgroupFs(Kind kind) : kind_(kind) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "fake-cgroupfs-XXXXXX").string();
    root_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : "";
  }
  ~FakeCgroupFs() override {
    std::error_code ignored;
    if (!root_.empty()) std::filesystem::remove_all(root_, ignored);
  }
  FakeCgroupFs(const FakeCgroupFs&) = delete;
  FakeCgroupFs& operator=(const FakeCgroupFs&) = delete;

  const std::string& root() const { return root_; }

  // v2: the root group, offering `controllers` ("cpu memory pids").
  void initV2Root(const std::string& controllers) {
    set("cgroup.controllers", controllers + "\n");
    set("cgroup.subtree_control", "");
    set("cgroup.procs", "1\n");
  }

  // v1: one hierarchy per entry, named by its controllers ("cpu", "cpu,cpuacct").
  void initV1Root(const std::vector<std::string>& hierarchies) {
    for (const std::string& hierarchy : hierarchies) {
      std::filesystem::create_directories(root_ + "/" + hierarchy);
      set(hierarchy + "/cgroup.procs", "1\n");
    }
  }

  // The next writes of a path ending in `suffix` fail with `error` (until cleared with 0).
  void failWrites(const std::string& suffix, int error) { failures_[suffix] = error; }

  // Reads and writes relative to the root, bypassing the fake's rules (test setup).
  void set(const std::string& relative, const std::string& content) {
    std::ofstream(root_ + "/" + relative, std::ios::trunc) << content;
  }
  std::string get(const std::string& relative) const {
    std::ifstream in(root_ + "/" + relative);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }
  bool exists(const std::string& relative) const {
    return std::filesystem::exists(root_ + "/" + relative);
  }

  // Every successful write, as "relative/path=value".
  const std::vector<std::string>& writes() const { return writes_; }

  int writeFile(const std::string& path, std::string_view value) override {
    for (const auto& [suffix, error] : failures_) {
      if (error != 0 && path.size() >= suffix.size() &&
          path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
        return error;
      }
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno;
    const std::string name = std::filesystem::path(path).filename().string();
    const std::string dir = std::filesystem::path(path).parent_path().string();
    std::string content(value);
    if (name == "cgroup.subtree_control") {
      // "+cpu": the controller must be offered by this group.
      if (value.size() < 2 || value[0] != '+') return EINVAL;
      std::string controller(value.substr(1));
      if (!contains(words(readRaw(dir + "/cgroup.controllers")), controller)) return ENOENT;
      std::vector<std::string> enabled = words(readRaw(path));
      if (!contains(enabled, controller)) enabled.push_back(controller);
      content = absl::StrJoin(enabled, " ") + "\n";
    } else if (name == "cgroup.procs") {
      // A process joins: the kernel lists it (and it leaves its old group, not modelled).
      content = readRaw(path) + std::string(value) + "\n";
    }
    std::ofstream(path, std::ios::trunc) << content;
    writes_.push_back(relative(path) + "=" + std::string(value));
    return 0;
  }

  int makeDirectory(const std::string& path) override {
    if (int error = SystemCgroupFilesystem::makeDirectory(path); error != 0) return error;
    std::map<std::string, std::string> files = {{"cgroup.procs", ""}};
    if (kind_ == Kind::kV2) {
      const std::string parent = std::filesystem::path(path).parent_path().string();
      const std::vector<std::string> controllers =
          words(readRaw(parent + "/cgroup.subtree_control"));
      files["cgroup.controllers"] = absl::StrJoin(controllers, " ") + "\n";
      files["cgroup.subtree_control"] = "";
      files["cpu.stat"] = "usage_usec 0\nuser_usec 0\nsystem_usec 0\n";
      if (contains(controllers, "cpu")) {
        files["cpu.max"] = "max 100000\n";
        files["cpu.weight"] = "100\n";
        files["cpu.stat"] +=
            "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n";
      }
      if (contains(controllers, "memory")) {
        files["memory.current"] = "0\n";
        files["memory.peak"] = "0\n";
        files["memory.max"] = "max\n";
        files["memory.high"] = "max\n";
      }
      if (contains(controllers, "pids")) {
        files["pids.current"] = "0\n";
        files["pids.max"] = "max\n";
      }
    } else {
      files["tasks"] = "";
      // The hierarchy is the first path component below the root ("cpu,cpuacct").
      const std::string hierarchy = relative(path).substr(0, relative(path).find('/'));
      std::vector<std::string> controllers = absl::StrSplit(hierarchy, ',');
      if (contains(controllers, "cpu")) {
        files["cpu.cfs_period_us"] = "100000\n";
        files["cpu.cfs_quota_us"] = "-1\n";
        files["cpu.shares"] = "1024\n";
        files["cpu.stat"] = "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n";
      }
      if (contains(controllers, "cpuacct")) files["cpuacct.usage"] = "0\n";
      if (contains(controllers, "memory")) {
        files["memory.limit_in_bytes"] = "9223372036854771712\n";
        files["memory.soft_limit_in_bytes"] = "9223372036854771712\n";
        files["memory.usage_in_bytes"] = "0\n";
        files["memory.max_usage_in_bytes"] = "0\n";
      }
      if (contains(controllers, "pids")) {
        files["pids.current"] = "0\n";
        files["pids.max"] = "max\n";
      }
    }
    for (const auto& [name, content] : files)
      std::ofstream(std::filesystem::path(path) / name) << content;
    return 0;
  }

  int removeDirectory(const std::string& path) override {
    if (!std::filesystem::is_directory(path)) return ENOENT;
    if (!words(readRaw(path + "/cgroup.procs")).empty()) return EBUSY;
    for (const auto& entry : std::filesystem::directory_iterator(path)) {
      if (entry.is_directory()) return EBUSY;
    }
    std::error_code error;
    std::filesystem::remove_all(path, error);
    return error ? error.value() : 0;
  }

 private:
  static bool contains(const std::vector<std::string>& list, const std::string& item) {
    for (const std::string& entry : list) {
      if (entry == item) return true;
    }
    return false;
  }
  static std::vector<std::string> words(const std::string& text) {
    return absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  }
  static std::string readRaw(const std::string& path) {
    std::ifstream in(path);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }
  std::string relative(const std::string& path) const {
    return path.size() > root_.size() ? path.substr(root_.size() + 1) : "";
  }

  Kind kind_;
  std::string root_;
  std::map<std::string, int> failures_;
  std::vector<std::string> writes_;
};

}  // namespace flotilla::agent::testing
