// The scheduler's reason texts: why a host does not fit a VM, one line per host, and the
// summary line of a VM that fits nowhere. Built only when place() found no host, or for
// check().
#include <algorithm>
#include <cmath>
#include <map>

#include "controller/scheduler/scheduler.h"
#include "controller/scheduler/scheduler_internal.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// 1.0, 4.0, 1.25: one decimal at least, as many as the value has (up to 3).
std::string formatRatio(double value) {
  std::string text = fmt::format("{:.3f}", value);
  while (text.size() > 1 && text.back() == '0' && text[text.size() - 2] != '.') text.pop_back();
  return text;
}

// Up to `limit` items, then "+N more".
std::string listSome(const std::vector<std::string>& items, size_t limit) {
  std::string text;
  for (size_t i = 0; i < items.size() && i < limit; ++i) {
    if (i > 0) text += ", ";
    text += items[i];
  }
  if (items.size() > limit) text += fmt::format(" (+{} more)", items.size() - limit);
  return text;
}

std::string vcpuCount(uint32_t vcpus) {
  return fmt::format("{} vCPU{}", vcpus, vcpus == 1 ? "" : "s");
}

uint64_t floorNonNegative(double value) {
  return value > 0 ? static_cast<uint64_t>(std::floor(value)) : 0;
}

}  // namespace

std::string Scheduler::reason(const Prepared& prepared, uint32_t index, Filter failed) const {
  const Host& host = hosts_[index];
  const PlacementRequest& request = *prepared.request;
  const v1::VmRecord& record = *request.record;
  switch (failed) {
    case Filter::kPass:
      return fmt::format("{}: fits", host.name);
    case Filter::kAvailability:
      switch (host.availability) {
        case Availability::kNoReport:
          return fmt::format("{}: not ready (no agent report)", host.name);
        case Availability::kUnreachable:
          return fmt::format("{}: unreachable (its agent's lease expired)", host.name);
        case Availability::kFenced:
          return fmt::format("{}: fenced", host.name);
        case Availability::kCordoned:
          return host.cordon_reason.empty()
                     ? fmt::format("{}: cordoned", host.name)
                     : fmt::format("{}: cordoned ({})", host.name, host.cordon_reason);
        case Availability::kDraining:
          return fmt::format("{}: draining", host.name);
        case Availability::kSchedulable:
          break;
      }
      return fmt::format("{}: schedulable", host.name);
    case Filter::kExcluded:
      return host.name == request.source_host
                 ? fmt::format("{}: excluded (the VM's source host)", host.name)
                 : fmt::format("{}: excluded by the request", host.name);
    case Filter::kPinned:
      return fmt::format("{}: the VM is pinned to {}", host.name, record.placement().host());
    case Filter::kLabels:
      for (const auto& [key, value] : prepared.labels) {
        auto label = host.labels.find(key);
        if (label == host.labels.end()) {
          return fmt::format("{}: lacks label {}={} (not set)", host.name, key, value);
        }
        if (label->second != value) {
          return fmt::format("{}: lacks label {}={} (has {}={})", host.name, key, value, key,
                             label->second);
        }
      }
      break;
    case Filter::kCpuModel: {
      if (!prepared.cpu_model.empty()) {
        std::vector<std::string> models(host.cpu_models.begin(), host.cpu_models.end());
        std::sort(models.begin(), models.end());
        return fmt::format("{}: cannot run cpu model '{}' (runs: {})", host.name,
                           prepared.cpu_model, models.empty() ? "none" : listSome(models, 8));
      }
      const Host& source = hosts_[*prepared.source_host];
      const CpuSignature& from = cpu_signatures_[source.cpu_signature];
      const CpuSignature& to = cpu_signatures_[host.cpu_signature];
      if (from.model_name != to.model_name) {
        return fmt::format(
            "{}: CPU '{}' differs from '{}' of the source {} (cpu model 'host' moves live only "
            "to the same CPU)",
            host.name, to.model_name, from.model_name, source.name);
      }
      std::vector<std::string> missing;
      std::set_difference(from.flags.begin(), from.flags.end(), to.flags.begin(), to.flags.end(),
                          std::back_inserter(missing));
      return fmt::format("{}: lacks CPU flags {} of the source {} (cpu model 'host')", host.name,
                         listSome(missing, 8), source.name);
    }
    case Filter::kPool:
      for (const std::string& pool : prepared.pools) {
        if (!host.pools.contains(pool)) {
          return fmt::format("{}: does not reach pool '{}'", host.name, pool);
        }
      }
      break;
    case Filter::kAntiAffinity: {
      uint32_t others = prepared.othersOfGroup(prepared.anti_affinity, index, true);
      return fmt::format("{}: already runs {} VM{} of anti-affinity group '{}'", host.name, others,
                         others == 1 ? "" : "s", record.placement().anti_affinity_group());
    }
    case Filter::kMemory: {
      auto [vcpus_used, memory_used] = prepared.usedWithoutSelf(host, index);
      double free = host.memory_capacity - static_cast<double>(memory_used);
      return fmt::format("{}: needs {} MiB, {} MiB free (memory overcommit {})", host.name,
                         prepared.memory >> 20, floorNonNegative(free / kMiB),
                         formatRatio(options_.memory_overcommit));
    }
    case Filter::kVcpus: {
      auto [vcpus_used, memory_used] = prepared.usedWithoutSelf(host, index);
      double free = host.vcpu_capacity - static_cast<double>(vcpus_used);
      return fmt::format("{}: needs {}, {} free ({} CPUs, cpu overcommit {})", host.name,
                         vcpuCount(prepared.vcpus), floorNonNegative(free), host.cpus,
                         formatRatio(options_.cpu_overcommit));
    }
  }
  return fmt::format("{}: does not fit", host.name);
}

std::vector<std::string> Scheduler::unplaceableReasons(const Prepared& prepared,
                                                       std::vector<int8_t>& cpu_cache) const {
  std::vector<std::string> reasons;
  std::map<std::string, uint32_t> tally;
  for (uint32_t index = 0; index < hosts_.size(); ++index) {
    Filter failed = filter(prepared, index, cpu_cache);
    reasons.push_back(reason(prepared, index, failed));
    std::string category;
    switch (failed) {
      case Filter::kAvailability:
        switch (hosts_[index].availability) {
          case Availability::kNoReport:
            category = "not ready";
            break;
          case Availability::kUnreachable:
            category = "unreachable";
            break;
          case Availability::kFenced:
            category = "fenced";
            break;
          case Availability::kCordoned:
            category = "cordoned";
            break;
          case Availability::kDraining:
            category = "draining";
            break;
          case Availability::kSchedulable:
            category = "schedulable";
            break;
        }
        break;
      case Filter::kPass:
        category = "fits";
        break;
      case Filter::kExcluded:
        category = "excluded";
        break;
      case Filter::kPinned:
        category = "pinned elsewhere";
        break;
      case Filter::kLabels:
        category = "labels";
        break;
      case Filter::kCpuModel:
        category = "cpu model";
        break;
      case Filter::kPool:
        category = "pool";
        break;
      case Filter::kAntiAffinity:
        category = "anti-affinity";
        break;
      case Filter::kMemory:
        category = "memory";
        break;
      case Filter::kVcpus:
        category = "vcpus";
        break;
    }
    ++tally[category];
  }
  // hosts_ is sorted by name, so the lines are too.
  std::vector<std::pair<std::string, uint32_t>> counts(tally.begin(), tally.end());
  std::stable_sort(counts.begin(), counts.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string summary = fmt::format("{} ({}, {} MiB) fits none of {} host{}", prepared.request->vm,
                                    vcpuCount(prepared.vcpus), prepared.memory >> 20, hosts_.size(),
                                    hosts_.size() == 1 ? "" : "s");
  if (hosts_.empty()) {
    summary += ": the cluster has no hosts";
  } else {
    summary += ": ";
    for (size_t i = 0; i < counts.size(); ++i) {
      if (i > 0) summary += ", ";
      summary += fmt::format("{} {}", counts[i].first, counts[i].second);
    }
  }
  reasons.push_back(std::move(summary));
  return reasons;
}

}  // namespace flotilla::controller
