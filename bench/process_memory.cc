// readProcessMemory (see process_memory.h).
#include "bench/process_memory.h"

#include <fstream>
#include <sstream>
#include <string>

#include "fmt/format.h"

namespace flotilla::bench {
namespace {

// "RssAnon:\t    1212 kB" → 1212 * 1024 when `line` starts with `key`.
bool readKb(const std::string& line, const std::string& key, uint64_t& bytes) {
  if (line.rfind(key, 0) != 0) return false;
  std::istringstream fields(line.substr(key.size()));
  uint64_t kb = 0;
  if (!(fields >> kb)) return false;
  bytes = kb * 1024;
  return true;
}

// smaps starts each mapping with "start-end perms offset dev inode [path]": a first field
// holding a '-' between hex digits, where attribute lines start with "Name:".
bool isMappingHeader(const std::string& line, std::string& path) {
  std::istringstream fields(line);
  std::string range, perms, offset, device, inode;
  if (!(fields >> range >> perms >> offset >> device >> inode)) return false;
  if (range.find('-') == std::string::npos || range.back() == ':') return false;
  std::getline(fields >> std::ws, path);
  return true;
}

}  // namespace

absl::StatusOr<ProcessMemory> readProcessMemory(pid_t pid) {
  ProcessMemory memory;
  const std::string status_path = fmt::format("/proc/{}/status", pid);
  std::ifstream status(status_path);
  if (!status) return absl::NotFoundError(fmt::format("cannot read {}", status_path));
  int found = 0;
  for (std::string line; std::getline(status, line);) {
    if (readKb(line, "RssAnon:", memory.rss_anon) || readKb(line, "RssFile:", memory.rss_file) ||
        readKb(line, "RssShmem:", memory.rss_shmem)) {
      ++found;
    }
  }
  if (found != 3) {
    return absl::InternalError(
        fmt::format("{} lacks RssAnon/RssFile/RssShmem (did the process exit?)", status_path));
  }

  const std::string smaps_path = fmt::format("/proc/{}/smaps", pid);
  std::ifstream smaps(smaps_path);
  if (!smaps) return absl::NotFoundError(fmt::format("cannot read {}", smaps_path));
  bool guest_memory = false;
  int mappings = 0;
  for (std::string line; std::getline(smaps, line);) {
    std::string path;
    if (isMappingHeader(line, path)) {
      ++mappings;
      guest_memory = path.rfind("/memfd:", 0) == 0;
      continue;
    }
    if (guest_memory) continue;
    uint64_t bytes = 0;
    if (readKb(line, "Private_Clean:", bytes)) memory.private_clean += bytes;
    if (readKb(line, "Private_Dirty:", bytes)) memory.private_dirty += bytes;
  }
  if (mappings == 0) {
    return absl::InternalError(
        fmt::format("{} lists no mappings (did the process exit?)", smaps_path));
  }
  return memory;
}

}  // namespace flotilla::bench
