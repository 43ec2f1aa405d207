// Host inventory, load and per-process accounting from /proc and /sys (see host_info.h).
#include "node-agent/host/host_info.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::agent {
namespace {

absl::string_view asAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

std::string_view trim(std::string_view text) {
  absl::string_view stripped = absl::StripAsciiWhitespace(asAbsl(text));
  return std::string_view(stripped.data(), stripped.size());
}

std::vector<std::string_view> words(std::string_view text) {
  std::vector<std::string_view> out;
  for (absl::string_view word :
       absl::StrSplit(asAbsl(text), absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    out.emplace_back(word.data(), word.size());
  }
  return out;
}

std::optional<uint64_t> parseU64(std::string_view text) {
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

std::optional<double> parseDouble(std::string_view text) {
  double value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

long clockTicks(const HostPaths& paths) {
  if (paths.clock_ticks > 0) return paths.clock_ticks;
  long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks > 0 ? ticks : 100;
}

uint64_t ticksToNs(uint64_t ticks, long per_second) {
  const auto hz = static_cast<uint64_t>(per_second);
  return ticks / hz * 1'000'000'000 + ticks % hz * 1'000'000'000 / hz;
}

// A "Key:   N kB" line of /proc/meminfo or /proc/PID/status, in bytes; nullopt when absent.
absl::StatusOr<std::optional<uint64_t>> kilobyteField(std::string_view text, std::string_view key,
                                                      std::string_view file) {
  for (absl::string_view line : absl::StrSplit(asAbsl(text), '\n')) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos || line.substr(0, colon) != asAbsl(key)) continue;
    std::vector<std::string_view> value =
        words(std::string_view(line.data() + colon + 1, line.size() - colon - 1));
    std::optional<uint64_t> number = value.empty() ? std::nullopt : parseU64(value[0]);
    if (!number || (value.size() == 2 && value[1] != "kB") || value.size() > 2) {
      return absl::InvalidArgumentError(
          fmt::format("{}: cannot parse the {} line '{}'", file, key, line));
    }
    return value.size() == 2 ? *number * 1024 : *number;
  }
  return std::nullopt;
}

absl::StatusOr<uint64_t> requiredKilobyteField(std::string_view text, std::string_view key,
                                               std::string_view file) {
  ASSIGN_OR_RETURN(std::optional<uint64_t> value, kilobyteField(text, key, file));
  if (!value) return absl::InvalidArgumentError(fmt::format("{}: no {} line", file, key));
  return *value;
}

// The x86-64 baselines of vmm/vcpu/cpuid.cc (kBaselineV1/V2/V3), as /proc/cpuinfo names
// them. Keep the two in step.
constexpr const char* kBaselineV1[] = {
    "fpu",  "vme",  "de",   "pse",  "tsc",     "msr",  "pae", "mce",   "cx8",
    "apic", "sep",  "mtrr", "pge",  "mca",     "cmov", "pat", "pse36", "clflush",
    "mmx",  "fxsr", "sse",  "sse2", "syscall", "nx",   "lm",
};
constexpr const char* kBaselineV2[] = {"pni",    "ssse3",  "cx16",   "sse4_1",
                                       "sse4_2", "popcnt", "lahf_lm"};
constexpr const char* kBaselineV3[] = {"fma",  "movbe", "xsave", "avx", "f16c",
                                       "bmi1", "avx2",  "bmi2",  "abm"};

struct ModelLevel {
  const char* name;
  int level;
};
constexpr ModelLevel kModels[] = {{"host", 1}, {"x86-64-v2", 2}, {"x86-64-v3", 3}};

template <size_t N>
void addMissing(const char* const (&required)[N], const std::vector<std::string>& sorted_flags,
                std::vector<std::string>& missing) {
  for (const char* flag : required) {
    if (!std::binary_search(sorted_flags.begin(), sorted_flags.end(), std::string(flag))) {
      missing.emplace_back(flag);
    }
  }
}

// The pools of <dir>/hugepages-<size>kB/; none when `dir` does not exist.
absl::StatusOr<std::vector<HugePagePool>> readHugePagePools(const std::string& dir) {
  std::vector<HugePagePool> pools;
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) {
    if (errno == ENOENT) return pools;
    return errnoStatus(errno, fmt::format("cannot list {}", dir));
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(listing)) {  // NOLINT(concurrency-mt-unsafe): a DIR of its own
    names.emplace_back(entry->d_name);
  }
  ::closedir(listing);
  for (const std::string& name : names) {
    std::string_view view = name;
    constexpr std::string_view kPrefix = "hugepages-";
    constexpr std::string_view kSuffix = "kB";
    if (!view.starts_with(kPrefix) || !view.ends_with(kSuffix)) continue;
    std::optional<uint64_t> kilobytes =
        parseU64(view.substr(kPrefix.size(), view.size() - kPrefix.size() - kSuffix.size()));
    if (!kilobytes) continue;
    const std::string pool = fmt::format("{}/{}", dir, name);
    ASSIGN_OR_RETURN(std::string total, readFileToString(pool + "/nr_hugepages", 64));
    ASSIGN_OR_RETURN(std::string free, readFileToString(pool + "/free_hugepages", 64));
    std::optional<uint64_t> total_pages = parseU64(trim(total));
    std::optional<uint64_t> free_pages = parseU64(trim(free));
    if (!total_pages || !free_pages) {
      return absl::InvalidArgumentError(
          fmt::format("{}: nr_hugepages '{}' or free_hugepages '{}' is not a number", pool,
                      trim(total), trim(free)));
    }
    pools.push_back(
        HugePagePool{.page_bytes = *kilobytes * 1024, .total = *total_pages, .free = *free_pages});
  }
  std::sort(pools.begin(), pools.end(), [](const HugePagePool& a, const HugePagePool& b) {
    return a.page_bytes < b.page_bytes;
  });
  return pools;
}

}  // namespace

std::vector<CpuModelSupport> cpuModelSupport(const std::vector<std::string>& cpu_flags) {
  std::vector<std::string> flags = cpu_flags;
  std::sort(flags.begin(), flags.end());
  std::vector<CpuModelSupport> models;
  for (const ModelLevel& model : kModels) {
    CpuModelSupport support{.model = model.name, .missing = {}};
    addMissing(kBaselineV1, flags, support.missing);
    if (model.level >= 2) addMissing(kBaselineV2, flags, support.missing);
    if (model.level >= 3) addMissing(kBaselineV3, flags, support.missing);
    models.push_back(std::move(support));
  }
  return models;
}

std::vector<std::string> HostInventory::runnableCpuModels() const {
  std::vector<std::string> names;
  for (const CpuModelSupport& model : cpu_models) {
    if (model.runnable()) names.push_back(model.model);
  }
  return names;
}

absl::StatusOr<CpuInfo> parseCpuInfo(std::string_view text) {
  CpuInfo info;
  bool first_cpu_flags_seen = false;
  bool model_seen = false;
  for (absl::string_view line : absl::StrSplit(asAbsl(text), '\n')) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    std::string_view key = trim(std::string_view(line.data(), colon));
    std::string_view value =
        trim(std::string_view(line.data() + colon + 1, line.size() - colon - 1));
    if (key == "processor") {
      ++info.cpu_count;
    } else if (key == "model name" && !model_seen) {
      info.model_name = std::string(value);
      model_seen = true;
    } else if (key == "flags" && !first_cpu_flags_seen) {
      for (std::string_view flag : words(value)) info.flags.emplace_back(flag);
      first_cpu_flags_seen = true;
    }
  }
  if (info.cpu_count == 0) {
    return absl::InvalidArgumentError("cpuinfo lists no processor: is it /proc/cpuinfo?");
  }
  std::sort(info.flags.begin(), info.flags.end());
  info.flags.erase(std::unique(info.flags.begin(), info.flags.end()), info.flags.end());
  return info;
}

absl::StatusOr<HostInventory> readHostInventory(const HostPaths& paths) {
  HostInventory inventory;
  const std::string hostname_path = paths.proc + "/sys/kernel/hostname";
  ASSIGN_OR_RETURN(std::string hostname, readFileToString(hostname_path, 4096));
  inventory.hostname = std::string(trim(hostname));

  const std::string cpuinfo_path = paths.proc + "/cpuinfo";
  ASSIGN_OR_RETURN(std::string cpuinfo_text, readFileToString(cpuinfo_path));
  absl::StatusOr<CpuInfo> cpuinfo = parseCpuInfo(cpuinfo_text);
  if (!cpuinfo.ok()) return annotate(cpuinfo.status(), cpuinfo_path);
  inventory.cpu_count = cpuinfo->cpu_count;
  inventory.cpu_model_name = std::move(cpuinfo->model_name);
  inventory.cpu_flags = std::move(cpuinfo->flags);
  inventory.cpu_models = cpuModelSupport(inventory.cpu_flags);

  const std::string meminfo_path = paths.proc + "/meminfo";
  ASSIGN_OR_RETURN(std::string meminfo, readFileToString(meminfo_path));
  ASSIGN_OR_RETURN(inventory.memory_total_bytes,
                   requiredKilobyteField(meminfo, "MemTotal", meminfo_path));

  // hugepages-2048kB/, hugepages-1048576kB/, ...: one directory per supported page size.
  ASSIGN_OR_RETURN(inventory.huge_pages, readHugePagePools(paths.sys + "/kernel/mm/hugepages"));
  return inventory;
}

absl::StatusOr<CpuTimes> parseCpuTimes(std::string_view proc_stat) {
  for (absl::string_view line : absl::StrSplit(asAbsl(proc_stat), '\n')) {
    std::vector<std::string_view> fields = words(std::string_view(line.data(), line.size()));
    if (fields.empty() || fields[0] != "cpu") continue;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (Linux 2.6.33+;
    // older kernels end earlier: missing counters are 0).
    uint64_t values[8] = {};
    for (size_t i = 1; i < fields.size() && i <= 8; ++i) {
      std::optional<uint64_t> value = parseU64(fields[i]);
      if (!value) {
        return absl::InvalidArgumentError(
            fmt::format("stat: counter {} of the cpu line '{}' is not a number", i, line));
      }
      values[i - 1] = *value;
    }
    if (fields.size() < 5) {
      return absl::InvalidArgumentError(fmt::format("stat: the cpu line '{}' is too short", line));
    }
    return CpuTimes{.user = values[0],
                    .nice = values[1],
                    .system = values[2],
                    .idle = values[3],
                    .iowait = values[4],
                    .irq = values[5],
                    .softirq = values[6],
                    .steal = values[7]};
  }
  return absl::InvalidArgumentError("stat: no aggregate 'cpu' line: is it /proc/stat?");
}

absl::StatusOr<CpuTimes> readCpuTimes(const HostPaths& paths) {
  const std::string path = paths.proc + "/stat";
  ASSIGN_OR_RETURN(std::string text, readFileToString(path));
  absl::StatusOr<CpuTimes> times = parseCpuTimes(text);
  if (!times.ok()) return annotate(times.status(), path);
  return times;
}

CpuUtilisation cpuUtilisation(const CpuTimes& before, const CpuTimes& after) {
  const uint64_t total_before = before.total();
  const uint64_t total_after = after.total();
  const uint64_t idle_before = before.idle + before.iowait;
  const uint64_t idle_after = after.idle + after.iowait;
  // Idle counters can step back a little when a CPU goes offline (proc(5)): no result then.
  if (total_after <= total_before || idle_after < idle_before || after.steal < before.steal) {
    return {};
  }
  const auto total = static_cast<double>(total_after - total_before);
  const uint64_t idle = idle_after - idle_before;
  CpuUtilisation result;
  result.busy = std::clamp(1.0 - static_cast<double>(idle) / total, 0.0, 1.0);
  result.steal = std::clamp(static_cast<double>(after.steal - before.steal) / total, 0.0, 1.0);
  return result;
}

absl::StatusOr<HostLoad> readHostLoad(const HostPaths& paths) {
  HostLoad load;
  const std::string meminfo_path = paths.proc + "/meminfo";
  ASSIGN_OR_RETURN(std::string meminfo, readFileToString(meminfo_path));
  ASSIGN_OR_RETURN(load.memory_total_bytes,
                   requiredKilobyteField(meminfo, "MemTotal", meminfo_path));
  ASSIGN_OR_RETURN(load.memory_available_bytes,
                   requiredKilobyteField(meminfo, "MemAvailable", meminfo_path));

  const std::string loadavg_path = paths.proc + "/loadavg";
  ASSIGN_OR_RETURN(std::string loadavg, readFileToString(loadavg_path, 4096));
  std::vector<std::string_view> fields = words(loadavg);
  std::optional<double> averages[3];
  for (size_t i = 0; i < 3 && i < fields.size(); ++i) averages[i] = parseDouble(fields[i]);
  if (!averages[0] || !averages[1] || !averages[2]) {
    return absl::InvalidArgumentError(
        fmt::format("{}: expected three load averages, found '{}'", loadavg_path, trim(loadavg)));
  }
  load.load1 = *averages[0];
  load.load5 = *averages[1];
  load.load15 = *averages[2];
  return load;
}

absl::StatusOr<ProcStat> parseProcStat(std::string_view line) {
  // "pid (comm) state ppid ...": comm may contain spaces and ')', so it ends at the last ')'.
  const size_t open = line.find(" (");
  const size_t close = line.rfind(')');
  auto malformed = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        fmt::format("malformed /proc/PID/stat line ({}): '{}'", why, line.substr(0, 200)));
  };
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return malformed("no '(comm)'");
  }
  ProcStat stat;
  std::optional<uint64_t> pid = parseU64(line.substr(0, open));
  if (!pid || *pid == 0 || *pid > 0x7fffffff) return malformed("bad pid");
  stat.pid = static_cast<pid_t>(*pid);
  stat.comm = std::string(line.substr(open + 2, close - open - 2));
  // After the comm: field 3 (state) is rest[0], so field N is rest[N - 3].
  std::vector<std::string_view> rest = words(line.substr(close + 1));
  if (rest.size() < 20 || rest[0].size() != 1) return malformed("too few fields");
  stat.state = rest[0][0];
  std::optional<uint64_t> utime = parseU64(rest[14 - 3]);
  std::optional<uint64_t> stime = parseU64(rest[15 - 3]);
  std::optional<uint64_t> start_time = parseU64(rest[22 - 3]);
  if (!utime || !stime || !start_time) return malformed("utime, stime or starttime");
  stat.cpu_ticks = *utime + *stime;
  stat.start_time = *start_time;
  return stat;
}

absl::StatusOr<ProcessStats> readProcessStats(pid_t pid, const HostPaths& paths) {
  const std::string dir = fmt::format("{}/{}", paths.proc, pid);
  absl::StatusOr<std::string> stat_text = readFileToString(dir + "/stat", 4096);
  if (absl::IsNotFound(stat_text.status())) {
    return absl::NotFoundError(fmt::format("process {} does not exist ({}/stat)", pid, dir));
  }
  if (!stat_text.ok()) return stat_text.status();
  absl::StatusOr<ProcStat> stat = parseProcStat(trim(*stat_text));
  if (!stat.ok()) return annotate(stat.status(), dir + "/stat");

  ProcessStats stats;
  stats.pid = stat->pid;
  stats.comm = std::move(stat->comm);
  stats.state = stat->state;
  stats.cpu_ns = ticksToNs(stat->cpu_ticks, clockTicks(paths));
  stats.start_time = stat->start_time;
  // VmRSS is missing for zombies and kernel threads: no resident memory then.
  absl::StatusOr<std::string> status_text = readFileToString(dir + "/status", 1 << 16);
  if (absl::IsNotFound(status_text.status())) {
    return absl::NotFoundError(fmt::format("process {} exited while being read", pid));
  }
  if (!status_text.ok()) return status_text.status();
  ASSIGN_OR_RETURN(std::optional<uint64_t> rss,
                   kilobyteField(*status_text, "VmRSS", dir + "/status"));
  stats.rss_bytes = rss.value_or(0);
  return stats;
}

absl::StatusOr<bool> isSameProcess(const ProcessIdentity& identity, const HostPaths& paths) {
  const std::string path = fmt::format("{}/{}/stat", paths.proc, identity.pid);
  absl::StatusOr<std::string> text = readFileToString(path, 4096);
  if (absl::IsNotFound(text.status())) return false;
  if (!text.ok()) return text.status();
  absl::StatusOr<ProcStat> stat = parseProcStat(trim(*text));
  if (!stat.ok()) return annotate(stat.status(), path);
  return stat->state != 'Z' && stat->state != 'X' && stat->start_time == identity.start_time;
}

}  // namespace flotilla::agent
