// The simulator's options, host shapes and deterministic per-VM figures (see sim_options.h).
#include "controller/sim/sim_options.h"

#include <charconv>

#include "common/text.h"
#include "common/units.h"
#include "fmt/format.h"

namespace flotilla::sim {
namespace {

// The flags of the x86-64-v3 baseline (node-agent/host/host_info.cc's kBaselineV1..V3): a
// host with all of them runs "host", "x86-64-v2" and "x86-64-v3".
constexpr const char* kCpuFlags[] = {
    "fpu",  "vme",    "de",     "pse",    "tsc",     "msr",  "pae",   "mce",   "cx8",
    "apic", "sep",    "mtrr",   "pge",    "mca",     "cmov", "pat",   "pse36", "clflush",
    "mmx",  "fxsr",   "sse",    "sse2",   "syscall", "nx",   "lm",    "pni",   "ssse3",
    "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm", "fma",  "movbe", "xsave", "avx",
    "f16c", "bmi1",   "avx2",   "bmi2",   "abm"};

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

double between(double low, double high, double fraction) {
  return low + (high - low) * fraction;
}

}  // namespace

absl::StatusOr<std::vector<HostShape>> parseHostShapes(std::string_view text) {
  std::vector<HostShape> shapes;
  for (std::string_view piece : splitText(text, ',')) {
    piece = trim(piece);
    auto invalid = [&](std::string_view why) {
      return absl::InvalidArgumentError(fmt::format(
          "host shape '{}' in '{}': {}; expected CPUS:MEMORY pieces such as 16:64G,32:128G", piece,
          text, why));
    };
    const size_t colon = piece.find(':');
    if (colon == std::string_view::npos) return invalid("there is no ':'");
    const std::string_view cpus_text = trim(piece.substr(0, colon));
    HostShape shape;
    auto [end, error] =
        std::from_chars(cpus_text.data(), cpus_text.data() + cpus_text.size(), shape.cpus);
    if (error != std::errc() || end != cpus_text.data() + cpus_text.size() || shape.cpus == 0) {
      return invalid("the CPU count is not a positive number");
    }
    absl::StatusOr<uint64_t> memory = parseByteSize(piece.substr(colon + 1));
    if (!memory.ok()) return invalid(std::string(memory.status().message()));
    if (*memory < (uint64_t{1} << 30)) return invalid("a host needs at least 1G of memory");
    shape.memory_bytes = *memory;
    shapes.push_back(shape);
  }
  return shapes;
}

std::vector<std::string> defaultCpuModels() {
  return {"host", "x86-64-v2", "x86-64-v3"};
}

std::vector<std::string> defaultCpuFlags() {
  return {std::begin(kCpuFlags), std::end(kCpuFlags)};
}

absl::Status validateOptions(const SimulatorOptions& options) {
  if (options.hosts < 1 || options.hosts > 100000) {
    return absl::InvalidArgumentError(
        fmt::format("hosts: {} is out of range: simulate 1 to 100000 hosts", options.hosts));
  }
  if (options.first_index < 0) {
    return absl::InvalidArgumentError("first_index must not be negative");
  }
  if (options.prefix.empty()) {
    return absl::InvalidArgumentError("prefix: host names need a prefix (e.g. 'sim')");
  }
  for (char c : options.prefix) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return absl::InvalidArgumentError(fmt::format(
          "prefix '{}': use lower-case letters, digits and '-' (host names are DNS labels)",
          options.prefix));
    }
  }
  if (options.shapes.empty()) {
    return absl::InvalidArgumentError("shapes: give at least one host shape (e.g. 16:64G)");
  }
  if (options.report_interval <= absl::ZeroDuration() || options.lease_ttl < absl::Seconds(2) ||
      options.report_interval >= options.lease_ttl) {
    return absl::InvalidArgumentError(fmt::format(
        "report_interval ({}) must be positive and shorter than lease_ttl ({}), which must be "
        "at least 2s (etcd's minimum lease TTL)",
        absl::FormatDuration(options.report_interval), absl::FormatDuration(options.lease_ttl)));
  }
  if (options.report_threads < 1 || options.report_threads > 64) {
    return absl::InvalidArgumentError("report_threads must be 1 to 64");
  }
  if (options.migration_duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("migration_duration must not be negative");
  }
  auto range = [](double low, double high) { return low >= 0 && low <= high && high <= 1; };
  if (!range(options.vm_cpu_min, options.vm_cpu_max) ||
      !range(options.vm_memory_min, options.vm_memory_max)) {
    return absl::InvalidArgumentError(
        "vm_cpu_min/max and vm_memory_min/max must satisfy 0 <= min <= max <= 1");
  }
  return absl::OkStatus();
}

std::string hostName(std::string_view prefix, int index) {
  return fmt::format("{}-{:04d}", prefix, index);
}

double stableFraction(std::string_view key) {
  // FNV-1a (stable across builds and machines, unlike std::hash), then a final avalanche so
  // that names differing in their last character spread over the whole range.
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : key) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdULL;
  hash ^= hash >> 33;
  return static_cast<double>(hash >> 11) / static_cast<double>(uint64_t{1} << 53);
}

double vmCpuFraction(const SimulatorOptions& options, std::string_view vm) {
  return between(options.vm_cpu_min, options.vm_cpu_max, stableFraction(vm));
}

double vmMemoryFraction(const SimulatorOptions& options, std::string_view vm) {
  return between(options.vm_memory_min, options.vm_memory_max,
                 stableFraction(std::string(vm) + "/memory"));
}

}  // namespace flotilla::sim
