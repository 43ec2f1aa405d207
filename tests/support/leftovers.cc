// findLeftovers (see leftovers.h).
#include "tests/support/leftovers.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fmt/format.h"

namespace flotilla::testing {
namespace {

// The process's command line with its NULs as spaces; empty for a zombie or a process gone.
std::string commandLine(const std::filesystem::path& proc) {
  std::ifstream file(proc / "cmdline", std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  std::string line = text.str();
  for (char& c : line) {
    if (c == '\0') c = ' ';
  }
  return line;
}

bool isDigits(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

std::vector<std::string> findLeftovers(const Traces& traces) {
  std::vector<std::string> left;
  std::error_code error;
  for (const std::string& ns : traces.namespaces) {
    if (std::filesystem::exists("/run/netns/" + ns, error)) left.push_back("namespace " + ns);
  }
  for (const std::string& link : traces.links) {
    if (std::filesystem::exists("/sys/class/net/" + link, error)) left.push_back("link " + link);
  }
  for (const std::string& path : traces.paths) {
    if (std::filesystem::exists(path, error)) left.push_back("path " + path);
  }
  for (const std::string& cgroup : traces.cgroups) {
    if (std::filesystem::exists("/sys/fs/cgroup/" + cgroup, error)) {
      left.push_back("cgroup " + cgroup);
    }
  }
  if (!traces.command_lines.empty()) {
    for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
      const std::string pid = entry.path().filename().string();
      if (!isDigits(pid)) continue;
      const std::string line = commandLine(entry.path());
      for (const std::string& needle : traces.command_lines) {
        if (!line.empty() && line.find(needle) != std::string::npos) {
          left.push_back(fmt::format("process {} ({})", pid, line.substr(0, 200)));
          break;
        }
      }
    }
  }
  return left;
}

}  // namespace flotilla::testing
