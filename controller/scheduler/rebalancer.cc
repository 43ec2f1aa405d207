// The rebalancer's planner: host utilisation from the agents' reports, the imbalance score,
// and the greedy choice of moves (docs/scheduler.md "Rebalance").
#include "controller/scheduler/rebalancer.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// A VM counts on its host unless it is stopped or failed there.
bool occupies(const v1::HostVm& vm) {
  return vm.state() != v1::VM_STATE_STOPPED && vm.state() != v1::VM_STATE_FAILED;
}

bool draining(const ClusterView& view, const std::string& host) {
  auto drain = view.drains.find(host);
  return drain != view.drains.end() && drain->second.phase() == v1::DRAIN_PHASE_RUNNING;
}

uint64_t vmMemory(const ClusterView& view, const v1::HostVm& vm) {
  if (vm.memory_bytes() > 0) return vm.memory_bytes();
  auto record = view.vms.find(vm.name());
  return record == view.vms.end() ? 0 : record->second.record.spec().memory_bytes();
}

// One host in the plan: its load in absolute units, so that moves add and subtract exactly.
struct PlanHost {
  std::string name;
  double cpus = 0;
  double memory_bytes = 0;
  double busy_cores = 0;  // VMs plus the host's own load
  double vm_memory = 0;
  double utilisation(double cores_delta, double memory_delta) const {
    double cpu = (busy_cores + cores_delta) / cpus;
    double memory = (vm_memory + memory_delta) / memory_bytes;
    return std::max(cpu, memory);
  }
};

struct Candidate {
  std::string vm;
  const v1::VmRecord* record = nullptr;
  double cores = 0;
  double memory = 0;
  bool moved = false;
};

// N times the variance: the sum of squared deviations from the mean, from the sums of u and
// of u squared.
double spreadEnergy(double sum, double sum_squares, double n) {
  return std::max(0.0, sum_squares - sum * sum / n);
}

}  // namespace

std::vector<HostLoadShare> hostLoads(const ClusterView& view) {
  std::vector<HostLoadShare> loads;
  for (const auto& [name, host] : view.hosts) {
    if (!host.schedulable() || draining(view, name)) continue;
    const v1::HostInventory& inventory = host.status->inventory();
    if (inventory.cpus() == 0 || inventory.memory_bytes() == 0) continue;
    double vm_cores = 0;
    double vm_memory = 0;
    for (const v1::HostVm& vm : host.status->vms()) {
      if (!occupies(vm)) continue;
      vm_cores += vm.usage().cpu_cores();
      vm_memory += static_cast<double>(vmMemory(view, vm));
    }
    double cpus = inventory.cpus();
    double busy = std::max(host.status->load().cpu_busy() * cpus, vm_cores);
    loads.push_back({.host = name,
                     .cpu = busy / cpus,
                     .memory = vm_memory / static_cast<double>(inventory.memory_bytes())});
  }
  return loads;
}

double imbalanceScore(const std::vector<HostLoadShare>& loads) {
  if (loads.size() < 2) return 0;
  double sum = 0;
  double sum_squares = 0;
  for (const HostLoadShare& load : loads) {
    double u = load.utilisation();
    sum += u;
    sum_squares += u * u;
  }
  double n = static_cast<double>(loads.size());
  return std::sqrt(spreadEnergy(sum, sum_squares, n) / n);
}

RebalanceResult planRebalance(const ClusterView& view, const Scheduler& base,
                              const RebalanceOptions& options,
                              const std::set<std::string>& recently_moved) {
  RebalanceResult result;
  std::vector<HostLoadShare> loads = hostLoads(view);
  result.score_before = imbalanceScore(loads);
  result.score_after = result.score_before;
  if (loads.size() < 2) {
    result.message =
        fmt::format("{} host{} can take VMs (ready, schedulable, reporting): nothing to balance",
                    loads.size(), loads.size() == 1 ? "" : "s");
    return result;
  }
  if (result.score_before <= options.threshold) {
    result.message = fmt::format("imbalance {:.3f} is at or below the threshold {:.3f}: no moves",
                                 result.score_before, options.threshold);
    return result;
  }

  absl::flat_hash_set<std::string> migrating;
  for (const auto& [name, migration] : view.migrations) {
    if (migrationActive(migration.phase())) migrating.insert(migration.vm());
  }

  // Hosts and the VMs that may leave them, both sorted by name (deterministic ties).
  std::vector<PlanHost> hosts;
  std::vector<std::vector<Candidate>> candidates;
  size_t movable = 0;
  for (const HostLoadShare& load : loads) {
    const HostView& host = view.hosts.at(load.host);
    const v1::HostInventory& inventory = host.status->inventory();
    PlanHost plan{.name = load.host,
                  .cpus = static_cast<double>(inventory.cpus()),
                  .memory_bytes = static_cast<double>(inventory.memory_bytes())};
    plan.busy_cores = load.cpu * plan.cpus;
    plan.vm_memory = load.memory * plan.memory_bytes;
    std::vector<Candidate> vms;
    for (const v1::HostVm& reported : host.status->vms()) {
      if (!occupies(reported) || reported.state() != v1::VM_STATE_RUNNING) continue;
      auto vm = view.vms.find(reported.name());
      if (vm == view.vms.end()) continue;  // not the controller's VM: never moved
      const VmView& known = vm->second;
      if (known.status.state() != v1::VM_STATE_RUNNING || known.status.host() != load.host ||
          !known.record.placement().host().empty() ||
          known.record.spec().migration_policy() == v1::MIGRATION_POLICY_COLD ||
          recently_moved.contains(reported.name()) || migrating.contains(reported.name())) {
        continue;
      }
      vms.push_back({.vm = reported.name(),
                     .record = &known.record,
                     .cores = reported.usage().cpu_cores(),
                     .memory = static_cast<double>(vmMemory(view, reported))});
    }
    std::sort(vms.begin(), vms.end(),
              [](const Candidate& a, const Candidate& b) { return a.vm < b.vm; });
    movable += vms.size();
    hosts.push_back(std::move(plan));
    candidates.push_back(std::move(vms));
  }

  Scheduler scheduler = base;
  const double n = static_cast<double>(hosts.size());
  std::vector<double> utilisation(hosts.size());
  double sum = 0;
  double sum_squares = 0;
  for (size_t i = 0; i < hosts.size(); ++i) {
    utilisation[i] = hosts[i].utilisation(0, 0);
    sum += utilisation[i];
    sum_squares += utilisation[i] * utilisation[i];
  }

  struct Best {
    size_t source = 0, target = 0, vm = 0;
    double gain = 0, cost = 0, net = 0;
    double source_after = 0, target_after = 0;
  };
  const double target_score = options.threshold * options.target_ratio;
  bool stopped_by_limit = false;
  bool reached_target = false;
  while (true) {
    const double energy = spreadEnergy(sum, sum_squares, n);
    if (std::sqrt(energy / n) <= target_score) {
      reached_target = true;
      break;
    }
    if (result.moves.size() >= options.max_moves) {
      stopped_by_limit = true;
      break;
    }
    const double mean = sum / n;
    std::optional<Best> best;
    for (size_t s = 0; s < hosts.size(); ++s) {
      if (utilisation[s] <= mean) continue;
      for (size_t v = 0; v < candidates[s].size(); ++v) {
        const Candidate& vm = candidates[s][v];
        if (vm.moved) continue;
        double source_after = hosts[s].utilisation(-vm.cores, -vm.memory);
        double cost = vm.memory / kGiB * options.cost_per_gib;
        for (size_t t = 0; t < hosts.size(); ++t) {
          if (t == s || utilisation[t] >= utilisation[s]) continue;
          double target_after = hosts[t].utilisation(vm.cores, vm.memory);
          double new_sum = sum - utilisation[s] - utilisation[t] + source_after + target_after;
          double new_squares = sum_squares - utilisation[s] * utilisation[s] -
                               utilisation[t] * utilisation[t] + source_after * source_after +
                               target_after * target_after;
          double gain = energy - spreadEnergy(new_sum, new_squares, n);
          double net = gain - cost;
          // The margin grows with the VM's share of the two hosts: a move must still pay off
          // when either utilisation is off by `hysteresis`.
          double margin = options.hysteresis *
                          ((utilisation[s] - source_after) + (target_after - utilisation[t]));
          if (net <= margin || (best.has_value() && net <= best->net)) continue;
          PlacementRequest request{.vm = vm.vm,
                                   .record = vm.record,
                                   .exclude = {hosts[s].name},
                                   .live_migration = true,
                                   .source_host = hosts[s].name};
          if (!scheduler.check(request, hosts[t].name).ok()) continue;
          best = Best{.source = s,
                      .target = t,
                      .vm = v,
                      .gain = gain,
                      .cost = cost,
                      .net = net,
                      .source_after = source_after,
                      .target_after = target_after};
        }
      }
    }
    if (!best.has_value()) break;

    Candidate& vm = candidates[best->source][best->vm];
    vm.moved = true;
    PlanHost& source = hosts[best->source];
    PlanHost& target = hosts[best->target];
    source.busy_cores -= vm.cores;
    source.vm_memory -= vm.memory;
    target.busy_cores += vm.cores;
    target.vm_memory += vm.memory;
    sum += best->source_after + best->target_after - utilisation[best->source] -
           utilisation[best->target];
    sum_squares += best->source_after * best->source_after +
                   best->target_after * best->target_after -
                   utilisation[best->source] * utilisation[best->source] -
                   utilisation[best->target] * utilisation[best->target];
    utilisation[best->source] = best->source_after;
    utilisation[best->target] = best->target_after;
    // check() passed, so the scheduler knows the target: assign() cannot fail.
    (void)scheduler.assign(vm.vm, *vm.record, target.name);
    double score = std::sqrt(spreadEnergy(sum, sum_squares, n) / n);
    result.moves.push_back(Move{.vm = vm.vm,
                                .source = source.name,
                                .target = target.name,
                                .gain = best->net,
                                .cost = best->cost,
                                .score_after = score,
                                .memory_bytes = static_cast<uint64_t>(vm.memory)});
    result.score_after = score;
  }

  if (result.moves.empty()) {
    result.message =
        movable == 0
            ? fmt::format(
                  "imbalance {:.3f} is above the threshold {:.3f}, but no VM can move (pinned, "
                  "cooling down, migrating, not running or cold-only)",
                  result.score_before, options.threshold)
            : fmt::format(
                  "imbalance {:.3f} is above the threshold {:.3f}, but no move gains more than "
                  "its cost plus the hysteresis margin, or fits a less loaded host",
                  result.score_before, options.threshold);
  } else {
    std::string why = reached_target     ? fmt::format("reached the target {:.3f}", target_score)
                      : stopped_by_limit ? "stopped at max_moves; more would help"
                                         : "no further move gains more than its cost plus "
                                           "the hysteresis margin";
    result.message = fmt::format("{} move{}: imbalance {:.3f} -> {:.3f} ({})", result.moves.size(),
                                 result.moves.size() == 1 ? "" : "s", result.score_before,
                                 result.score_after, why);
  }
  return result;
}

void applyMoves(ClusterView& view, const std::vector<Move>& moves) {
  for (const Move& move : moves) {
    auto source = view.hosts.find(move.source);
    auto target = view.hosts.find(move.target);
    if (source == view.hosts.end() || target == view.hosts.end() ||
        !source->second.status.has_value() || !target->second.status.has_value()) {
      continue;
    }
    v1::HostStatus& from = *source->second.status;
    v1::HostStatus& to = *target->second.status;
    auto* vms = from.mutable_vms();
    auto found = std::find_if(vms->begin(), vms->end(),
                              [&](const v1::HostVm& vm) { return vm.name() == move.vm; });
    if (found == vms->end()) continue;
    v1::HostVm moved = *found;
    vms->erase(found);
    *to.add_vms() = moved;

    uint64_t memory = vmMemory(view, moved);
    double cores = moved.usage().cpu_cores();
    auto shift = [&](v1::HostStatus& status, double sign) {
      double cpus = std::max<double>(1, status.inventory().cpus());
      v1::HostLoad& load = *status.mutable_load();
      load.set_cpu_busy(std::max(0.0, load.cpu_busy() + sign * cores / cpus));
      if (sign > 0) {
        load.set_vm_memory_bytes(load.vm_memory_bytes() + memory);
        load.set_memory_available_bytes(load.memory_available_bytes() -
                                        std::min(load.memory_available_bytes(), memory));
        load.set_vms_running(load.vms_running() + 1);
      } else {
        load.set_vm_memory_bytes(load.vm_memory_bytes() - std::min(load.vm_memory_bytes(), memory));
        load.set_memory_available_bytes(load.memory_available_bytes() + memory);
        load.set_vms_running(load.vms_running() > 0 ? load.vms_running() - 1 : 0);
      }
    };
    shift(from, -1);
    shift(to, +1);
    if (auto vm = view.vms.find(move.vm); vm != view.vms.end()) {
      vm->second.status.set_host(move.target);
    }
  }
}

}  // namespace flotilla::controller
