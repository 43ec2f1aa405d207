// The scheduler's accounting (load, assign, unassign) and its placement loop. The filters'
// reason texts live in scheduler_reasons.cc: they are only built when a VM cannot be placed,
// so that the placement loop itself allocates nothing per host.
#include "controller/scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <utility>

#include "controller/scheduler/scheduler_internal.h"
#include "fmt/format.h"

namespace flotilla::controller {

absl::StatusOr<SchedulerOptions::Strategy> parseStrategy(std::string_view text) {
  if (text == "spread") return SchedulerOptions::Strategy::kSpread;
  if (text == "pack") return SchedulerOptions::Strategy::kPack;
  return absl::InvalidArgumentError(fmt::format(
      "unknown scheduler strategy '{}': use 'spread' (most free resources first) or 'pack' "
      "(fill hosts up first)",
      text));
}

const char* strategyName(SchedulerOptions::Strategy strategy) {
  return strategy == SchedulerOptions::Strategy::kPack ? "pack" : "spread";
}

absl::Status validateSchedulerOptions(const SchedulerOptions& options) {
  auto check = [](double value, const char* name, const char* example) -> absl::Status {
    if (std::isfinite(value) && value > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        fmt::format("scheduler.{} must be a number greater than 0, found {} (for example {})", name,
                    value, example));
  };
  if (absl::Status status = check(options.cpu_overcommit, "cpu_overcommit", "4.0"); !status.ok()) {
    return status;
  }
  return check(options.memory_overcommit, "memory_overcommit", "1.0");
}

Scheduler::Scheduler(SchedulerOptions options) : options_(options) {}

void Scheduler::load(const ClusterView& view) {
  hosts_.clear();
  host_index_.clear();
  cpu_model_ids_.clear();
  pool_ids_.clear();
  label_ids_.clear();
  cpu_signatures_.clear();
  networks_.clear();
  local_pools_.clear();
  placed_.clear();
  incoming_.clear();
  affinity_.clear();
  anti_affinity_.clear();

  std::map<std::pair<std::string, std::vector<std::string>>, uint32_t> signatures;
  hosts_.reserve(view.hosts.size());
  for (const auto& [name, view_host] : view.hosts) {  // std::map: sorted by name
    Host host;
    host.name = name;
    const v1::HostRecord& record = view_host.record;
    bool draining = false;
    if (auto drain = view.drains.find(name); drain != view.drains.end()) {
      draining = drain->second.phase() == v1::DRAIN_PHASE_RUNNING;
    }
    if (record.state() == v1::HOST_STATE_FENCED) {
      host.availability = Availability::kFenced;
    } else if (record.state() == v1::HOST_STATE_UNREACHABLE) {
      host.availability = Availability::kUnreachable;
    } else if (!view_host.status.has_value()) {
      host.availability = Availability::kNoReport;
    } else if (record.cordoned()) {
      host.availability = Availability::kCordoned;
      host.cordon_reason = record.cordon_reason();
    } else if (draining) {
      host.availability = Availability::kDraining;
    } else {
      host.availability = Availability::kSchedulable;
    }
    auto intern = [](auto& ids, const auto& key, std::vector<uint32_t>& out) {
      auto [it, inserted] = ids.emplace(key, static_cast<uint32_t>(ids.size()));
      out.push_back(it->second);
    };
    for (const auto& [key, value] : record.meta().labels()) {
      host.labels.emplace(key, value);
      intern(label_ids_, std::make_pair(key, value), host.label_ids);
    }
    CpuSignature signature;
    if (view_host.status.has_value()) {
      const v1::HostInventory& inventory = view_host.status->inventory();
      host.has_inventory = true;
      host.cpus = inventory.cpus();
      host.memory_bytes = inventory.memory_bytes();
      host.cpu_models.insert(inventory.cpu_models().begin(), inventory.cpu_models().end());
      host.pools.insert(inventory.pools().begin(), inventory.pools().end());
      for (const std::string& model : host.cpu_models) {
        intern(cpu_model_ids_, model, host.cpu_model_ids);
      }
      for (const std::string& pool : host.pools) intern(pool_ids_, pool, host.pool_ids);
      signature.model_name = inventory.cpu_model_name();
      signature.flags.assign(inventory.cpu_flags().begin(), inventory.cpu_flags().end());
      std::sort(signature.flags.begin(), signature.flags.end());
      signature.flags.erase(std::unique(signature.flags.begin(), signature.flags.end()),
                            signature.flags.end());
    }
    for (auto* ids : {&host.label_ids, &host.cpu_model_ids, &host.pool_ids}) {
      std::sort(ids->begin(), ids->end());
    }
    host.vcpu_capacity = static_cast<double>(host.cpus) * options_.cpu_overcommit;
    uint64_t usable = host.memory_bytes > options_.memory_reserve_bytes
                          ? host.memory_bytes - options_.memory_reserve_bytes
                          : 0;
    host.memory_capacity = static_cast<double>(usable) * options_.memory_overcommit;

    auto key = std::make_pair(signature.model_name, signature.flags);
    auto [it, inserted] = signatures.emplace(key, static_cast<uint32_t>(cpu_signatures_.size()));
    if (inserted) cpu_signatures_.push_back(std::move(signature));
    host.cpu_signature = it->second;

    host_index_.emplace(name, static_cast<uint32_t>(hosts_.size()));
    hosts_.push_back(std::move(host));
  }

  for (const auto& [name, network] : view.networks) networks_.insert(name);
  for (const auto& [name, pool] : view.pools) {
    if (pool.type() == v1::POOL_TYPE_DIR) local_pools_.insert(name);
  }

  for (const auto& [name, vm] : view.vms) {
    const std::string& host = vm.status.host();
    if (host.empty()) continue;
    auto index = host_index_.find(host);
    if (index == host_index_.end()) continue;  // a host that is gone holds nothing
    Claim claim = claimFor(vm.record, index->second);
    addClaim(claim);
    placed_.emplace(name, std::move(claim));
  }
  for (const auto& [name, migration] : view.migrations) {
    if (!migrationActive(migration.phase()) || migration.target().empty()) continue;
    auto vm = view.vms.find(migration.vm());
    auto index = host_index_.find(migration.target());
    if (vm == view.vms.end() || index == host_index_.end()) continue;
    if (vm->second.status.host() == migration.target()) continue;  // already counted there
    if (incoming_.contains(migration.vm())) continue;              // one active migration per VM
    Claim claim = claimFor(vm->second.record, index->second);
    addClaim(claim);
    incoming_.emplace(migration.vm(), std::move(claim));
  }
}

Scheduler::Claim Scheduler::claimFor(const v1::VmRecord& record, uint32_t host) const {
  return Claim{.host = host,
               .vcpus = record.spec().vcpus(),
               .memory = record.spec().memory_bytes(),
               .affinity_group = record.placement().affinity_group(),
               .anti_affinity_group = record.placement().anti_affinity_group()};
}

void Scheduler::addClaim(const Claim& claim) {
  Host& host = hosts_[claim.host];
  host.vcpus_used += claim.vcpus;
  host.memory_used += claim.memory;
  ++host.vms;
  if (!claim.affinity_group.empty()) ++affinity_[claim.affinity_group][claim.host];
  if (!claim.anti_affinity_group.empty()) ++anti_affinity_[claim.anti_affinity_group][claim.host];
}

void Scheduler::removeClaim(const Claim& claim) {
  Host& host = hosts_[claim.host];
  host.vcpus_used -= std::min<uint64_t>(host.vcpus_used, claim.vcpus);
  host.memory_used -= std::min(host.memory_used, claim.memory);
  if (host.vms > 0) --host.vms;
  auto drop = [&](absl::flat_hash_map<std::string, GroupHosts>& groups, const std::string& group) {
    if (group.empty()) return;
    auto hosts = groups.find(group);
    if (hosts == groups.end()) return;
    auto count = hosts->second.find(claim.host);
    if (count == hosts->second.end()) return;
    if (--count->second == 0) hosts->second.erase(count);
    if (hosts->second.empty()) groups.erase(hosts);
  };
  drop(affinity_, claim.affinity_group);
  drop(anti_affinity_, claim.anti_affinity_group);
}

absl::Status Scheduler::assign(const std::string& vm, const v1::VmRecord& record,
                               const std::string& host) {
  auto index = host_index_.find(host);
  if (index == host_index_.end()) {
    return absl::NotFoundError(fmt::format(
        "cannot account VM {} on host {}: the host is not in the scheduler's view (load() a "
        "view that has it)",
        vm, host));
  }
  unassign(vm);
  // A decision for the target of the VM's own migration supersedes that reservation.
  if (auto incoming = incoming_.find(vm);
      incoming != incoming_.end() && incoming->second.host == index->second) {
    removeClaim(incoming->second);
    incoming_.erase(incoming);
  }
  Claim claim = claimFor(record, index->second);
  addClaim(claim);
  placed_.emplace(vm, std::move(claim));
  return absl::OkStatus();
}

void Scheduler::unassign(const std::string& vm) {
  auto placed = placed_.find(vm);
  if (placed == placed_.end()) return;
  removeClaim(placed->second);
  placed_.erase(placed);
}

std::optional<HostUsage> Scheduler::usage(const std::string& host) const {
  auto index = host_index_.find(host);
  if (index == host_index_.end()) return std::nullopt;
  const Host& entry = hosts_[index->second];
  return HostUsage{.vcpu_capacity = entry.vcpu_capacity,
                   .memory_capacity = entry.memory_capacity,
                   .vcpus_used = entry.vcpus_used,
                   .memory_used = entry.memory_used,
                   .vms = entry.vms};
}

std::optional<std::string> Scheduler::hostOf(const std::string& vm) const {
  auto placed = placed_.find(vm);
  if (placed == placed_.end()) return std::nullopt;
  return hosts_[placed->second.host].name;
}

bool Scheduler::cpuCompatible(uint32_t source_signature, uint32_t target_signature) const {
  if (source_signature == target_signature) return true;
  const CpuSignature& source = cpu_signatures_[source_signature];
  const CpuSignature& target = cpu_signatures_[target_signature];
  return source.model_name == target.model_name &&
         std::includes(target.flags.begin(), target.flags.end(), source.flags.begin(),
                       source.flags.end());
}

std::optional<std::string> Scheduler::prepare(const PlacementRequest& request,
                                              Prepared& out) const {
  out.request = &request;
  if (request.record == nullptr) {
    return fmt::format("{}: no VM record to place (internal error: the caller passed none)",
                       request.vm);
  }
  const v1::VmRecord& record = *request.record;
  out.vcpus = record.spec().vcpus();
  out.memory = record.spec().memory_bytes();

  for (int i = 0; i < record.spec().nics_size(); ++i) {
    const std::string& network = record.spec().nics(i).network();
    if (!networks_.contains(network)) {
      return fmt::format(
          "{}: network '{}' of NIC {} is not defined (create the network, or change the "
          "VM's NIC)",
          request.vm, network, i);
    }
  }
  const std::string& pin = record.placement().host();
  if (!pin.empty()) {
    auto index = host_index_.find(pin);
    if (index == host_index_.end()) {
      return fmt::format(
          "{}: pinned to host '{}', which is not in the cluster (change placement.host, or "
          "add the host)",
          request.vm, pin);
    }
    out.pinned = index->second;
  }
  for (const auto& [key, value] : record.placement().host_labels()) {
    out.labels.emplace_back(key, value);
  }
  std::sort(out.labels.begin(), out.labels.end());
  auto idOf = [](const auto& ids, const auto& key) {
    auto id = ids.find(key);
    return id == ids.end() ? kUnknownId : id->second;
  };
  for (const auto& label : out.labels) out.label_ids.push_back(idOf(label_ids_, label));
  for (const v1::DiskSpec& disk : record.spec().disks()) {
    if (request.live_migration && local_pools_.contains(disk.pool())) {
      return fmt::format(
          "{}: disk '{}' is on pool '{}', a local (dir) pool: its volume cannot move live "
          "(use a shared pool, or a cold migration)",
          request.vm, disk.volume(), disk.pool());
    }
    if (std::find(out.pools.begin(), out.pools.end(), disk.pool()) == out.pools.end()) {
      out.pools.push_back(disk.pool());
      out.pool_ids.push_back(idOf(pool_ids_, disk.pool()));
    }
  }

  const std::string& cpu_model = record.spec().cpu_model();
  bool host_model = cpu_model.empty() || cpu_model == "host";
  out.cpu_model = host_model ? "" : cpu_model;
  if (!host_model) out.cpu_model_id = idOf(cpu_model_ids_, cpu_model);
  if (request.live_migration && host_model) {
    auto source = host_index_.find(request.source_host);
    if (source == host_index_.end() || !hosts_[source->second].has_inventory) {
      return fmt::format(
          "{}: cpu model 'host' needs the source host's CPU to pick a compatible target, and "
          "the source host '{}' {}",
          request.vm, request.source_host,
          source == host_index_.end() ? "is not in the cluster" : "has no agent report");
    }
    out.source_host = source->second;
  }

  for (const std::string& excluded : request.exclude) {
    if (auto index = host_index_.find(excluded); index != host_index_.end()) {
      out.excluded.push_back(index->second);
    }
  }
  std::sort(out.excluded.begin(), out.excluded.end());

  if (auto own = placed_.find(request.vm); own != placed_.end()) out.own = &own->second;
  if (auto own = incoming_.find(request.vm); own != incoming_.end()) {
    out.own_incoming = &own->second;
  }
  const std::string& anti = record.placement().anti_affinity_group();
  if (!anti.empty()) {
    if (auto group = anti_affinity_.find(anti); group != anti_affinity_.end()) {
      out.anti_affinity = &group->second;
    }
  }
  const std::string& affinity = record.placement().affinity_group();
  if (!affinity.empty()) {
    if (auto group = affinity_.find(affinity); group != affinity_.end()) {
      out.affinity = &group->second;
    }
  }
  return std::nullopt;
}

// VMs of a group on `host`, not counting the VM being placed: it may be accounted on its
// current host (placed again where it is) or on the target of its own migration (the
// migration's target being checked again).
uint32_t Scheduler::Prepared::othersOfGroup(const GroupHosts* group, uint32_t host,
                                            bool anti) const {
  if (group == nullptr) return 0;
  auto count = group->find(host);
  if (count == group->end()) return 0;
  uint32_t others = count->second;
  const v1::VmPlacement& placement = request->record->placement();
  const std::string& wanted = anti ? placement.anti_affinity_group() : placement.affinity_group();
  for (const Claim* claim : {own, own_incoming}) {
    if (claim == nullptr || claim->host != host || others == 0) continue;
    if ((anti ? claim->anti_affinity_group : claim->affinity_group) == wanted) --others;
  }
  return others;
}

Scheduler::Filter Scheduler::filter(const Prepared& prepared, uint32_t index,
                                    std::vector<int8_t>& cpu_cache) const {
  const Host& host = hosts_[index];
  if (host.availability != Availability::kSchedulable) return Filter::kAvailability;
  if (std::binary_search(prepared.excluded.begin(), prepared.excluded.end(), index)) {
    return Filter::kExcluded;
  }
  if (prepared.pinned.has_value() && *prepared.pinned != index) return Filter::kPinned;
  auto has = [](const std::vector<uint32_t>& ids, uint32_t id) {
    return std::binary_search(ids.begin(), ids.end(), id);
  };
  for (uint32_t label : prepared.label_ids) {
    if (!has(host.label_ids, label)) return Filter::kLabels;
  }
  if (!prepared.cpu_model.empty()) {
    if (!has(host.cpu_model_ids, prepared.cpu_model_id)) return Filter::kCpuModel;
  } else if (prepared.source_host.has_value()) {
    int8_t& compatible = cpu_cache[host.cpu_signature];
    if (compatible < 0) {
      compatible =
          cpuCompatible(hosts_[*prepared.source_host].cpu_signature, host.cpu_signature) ? 1 : 0;
    }
    if (compatible == 0) return Filter::kCpuModel;
  }
  for (uint32_t pool : prepared.pool_ids) {
    if (!has(host.pool_ids, pool)) return Filter::kPool;
  }
  if (prepared.othersOfGroup(prepared.anti_affinity, index, true) > 0) {
    return Filter::kAntiAffinity;
  }
  auto [vcpus_used, memory_used] = prepared.usedWithoutSelf(host, index);
  if (static_cast<double>(memory_used + prepared.memory) > host.memory_capacity) {
    return Filter::kMemory;
  }
  if (static_cast<double>(vcpus_used + prepared.vcpus) > host.vcpu_capacity) {
    return Filter::kVcpus;
  }
  return Filter::kPass;
}

std::pair<uint64_t, uint64_t> Scheduler::Prepared::usedWithoutSelf(const Host& host,
                                                                   uint32_t index) const {
  uint64_t vcpus_used = host.vcpus_used;
  uint64_t memory_used = host.memory_used;
  for (const Claim* claim : {own, own_incoming}) {
    if (claim == nullptr || claim->host != index) continue;
    vcpus_used -= std::min<uint64_t>(vcpus_used, claim->vcpus);
    memory_used -= std::min(memory_used, claim->memory);
  }
  return {vcpus_used, memory_used};
}

PlacementResult Scheduler::place(const PlacementRequest& request) const {
  PlacementResult result;
  Prepared prepared;
  if (std::optional<std::string> problem = prepare(request, prepared)) {
    result.reasons.push_back(std::move(*problem));
    return result;
  }
  std::vector<int8_t> cpu_cache(cpu_signatures_.size(), -1);
  bool pack = options_.strategy == SchedulerOptions::Strategy::kPack;
  std::optional<uint32_t> best;
  bool best_affine = false;
  double best_score = 0;
  for (uint32_t index = 0; index < hosts_.size(); ++index) {
    if (filter(prepared, index, cpu_cache) != Filter::kPass) continue;
    const Host& host = hosts_[index];
    auto [vcpus_used, memory_used] = prepared.usedWithoutSelf(host, index);
    // The share of each resource left free after this VM, averaged: spread takes the host
    // with the most, pack the one with the least.
    double free_memory =
        host.memory_capacity > 0
            ? (host.memory_capacity - static_cast<double>(memory_used + prepared.memory)) /
                  host.memory_capacity
            : 0;
    double free_vcpus =
        host.vcpu_capacity > 0
            ? (host.vcpu_capacity - static_cast<double>(vcpus_used + prepared.vcpus)) /
                  host.vcpu_capacity
            : 0;
    double score = (free_memory + free_vcpus) / 2;
    if (pack) score = -score;
    // Affinity first: a host that already has VMs of the group beats every host that has
    // none; then the strategy's score; ties keep the first host by name.
    bool affine = prepared.othersOfGroup(prepared.affinity, index, false) > 0;
    if (!best.has_value() || (affine && !best_affine) ||
        (affine == best_affine && score > best_score)) {
      best = index;
      best_affine = affine;
      best_score = score;
    }
  }
  if (best.has_value()) {
    result.host = hosts_[*best].name;
    return result;
  }
  result.reasons = unplaceableReasons(prepared, cpu_cache);
  return result;
}

absl::Status Scheduler::check(const PlacementRequest& request, const std::string& host) const {
  auto index = host_index_.find(host);
  if (index == host_index_.end()) {
    return absl::NotFoundError(
        fmt::format("{}: host '{}' is not in the cluster", request.vm, host));
  }
  Prepared prepared;
  if (std::optional<std::string> problem = prepare(request, prepared)) {
    return absl::FailedPreconditionError(*problem);
  }
  std::vector<int8_t> cpu_cache(cpu_signatures_.size(), -1);
  Filter failed = filter(prepared, index->second, cpu_cache);
  if (failed == Filter::kPass) return absl::OkStatus();
  return absl::FailedPreconditionError(reason(prepared, index->second, failed));
}

}  // namespace flotilla::controller
