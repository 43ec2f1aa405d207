// The naive scheduler and rebalancer controller_bench compares against (naive_peers.h).
#include "bench/controller/naive_peers.h"

#include <algorithm>

namespace flotilla::bench {

NaiveScheduler::NaiveScheduler(controller::SchedulerOptions options,
                               const controller::ClusterView& view)
    : options_(options) {
  for (const auto& [name, host] : view.hosts) {
    Host entry;
    entry.name = name;
    entry.record = &host.record;
    entry.schedulable = host.schedulable();
    if (host.status.has_value()) {
      entry.inventory = &host.status->inventory();
      entry.vcpu_capacity = static_cast<double>(entry.inventory->cpus()) * options_.cpu_overcommit;
      uint64_t memory = entry.inventory->memory_bytes();
      uint64_t usable =
          memory > options_.memory_reserve_bytes ? memory - options_.memory_reserve_bytes : 0;
      entry.memory_capacity = static_cast<double>(usable) * options_.memory_overcommit;
    } else {
      entry.schedulable = false;
    }
    hosts_.push_back(std::move(entry));
  }
}

std::optional<std::string> NaiveScheduler::place(const v1::VmRecord& record) const {
  // What a straightforward implementation does: the use of every host, from all VMs.
  std::vector<uint64_t> vcpus(hosts_.size(), 0);
  std::vector<uint64_t> memory(hosts_.size(), 0);
  std::vector<uint32_t> anti(hosts_.size(), 0);
  std::vector<uint32_t> affine(hosts_.size(), 0);
  const v1::VmPlacement& placement = record.placement();
  for (const Placed& vm : placed_) {
    vcpus[vm.host] += vm.record->spec().vcpus();
    memory[vm.host] += vm.record->spec().memory_bytes();
    const v1::VmPlacement& other = vm.record->placement();
    if (!placement.anti_affinity_group().empty() &&
        other.anti_affinity_group() == placement.anti_affinity_group()) {
      ++anti[vm.host];
    }
    if (!placement.affinity_group().empty() &&
        other.affinity_group() == placement.affinity_group()) {
      ++affine[vm.host];
    }
  }

  const v1::VmSpec& spec = record.spec();
  const std::string& model = spec.cpu_model();
  bool pack = options_.strategy == controller::SchedulerOptions::Strategy::kPack;
  std::optional<size_t> best;
  bool best_affine = false;
  double best_score = 0;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    const Host& host = hosts_[i];
    if (!host.schedulable) continue;
    bool labels_match = true;
    for (const auto& [key, value] : placement.host_labels()) {
      auto label = host.record->meta().labels().find(key);
      if (label == host.record->meta().labels().end() || label->second != value) {
        labels_match = false;
        break;
      }
    }
    if (!labels_match) continue;
    if (!model.empty() && model != "host" &&
        std::find(host.inventory->cpu_models().begin(), host.inventory->cpu_models().end(),
                  model) == host.inventory->cpu_models().end()) {
      continue;
    }
    bool pools = true;
    for (const v1::DiskSpec& disk : spec.disks()) {
      if (std::find(host.inventory->pools().begin(), host.inventory->pools().end(), disk.pool()) ==
          host.inventory->pools().end()) {
        pools = false;
        break;
      }
    }
    if (!pools || anti[i] > 0) continue;
    if (static_cast<double>(memory[i] + spec.memory_bytes()) > host.memory_capacity) continue;
    if (static_cast<double>(vcpus[i] + spec.vcpus()) > host.vcpu_capacity) continue;
    double free_memory =
        (host.memory_capacity - static_cast<double>(memory[i] + spec.memory_bytes())) /
        host.memory_capacity;
    double free_vcpus =
        (host.vcpu_capacity - static_cast<double>(vcpus[i] + spec.vcpus())) / host.vcpu_capacity;
    double score = (free_memory + free_vcpus) / 2;
    if (pack) score = -score;
    bool is_affine = affine[i] > 0;
    if (!best.has_value() || (is_affine && !best_affine) ||
        (is_affine == best_affine && score > best_score)) {
      best = i;
      best_affine = is_affine;
      best_score = score;
    }
  }
  if (!best.has_value()) return std::nullopt;
  return hosts_[*best].name;
}

void NaiveScheduler::assign(const v1::VmRecord& record, const std::string& host) {
  for (size_t i = 0; i < hosts_.size(); ++i) {
    if (hosts_[i].name == host) {
      placed_.push_back({.host = i, .record = &record});
      return;
    }
  }
}

NaiveRebalanceResult naiveRebalance(const controller::ClusterView& original,
                                    const controller::SchedulerOptions& scheduler_options,
                                    double threshold, uint32_t max_moves) {
  NaiveRebalanceResult result;
  controller::ClusterView view = original;
  controller::Scheduler scheduler(scheduler_options);
  scheduler.load(view);
  while (true) {
    std::vector<controller::HostLoadShare> loads = controller::hostLoads(view);
    result.score_after = controller::imbalanceScore(loads);
    if (result.score_after <= threshold || loads.size() < 2) break;
    if (result.moves.size() >= max_moves) {
      result.gave_up = true;
      break;
    }
    auto by_utilisation = [](const controller::HostLoadShare& a,
                             const controller::HostLoadShare& b) {
      return a.utilisation() < b.utilisation();
    };
    const std::string most = std::max_element(loads.begin(), loads.end(), by_utilisation)->host;
    const std::string least = std::min_element(loads.begin(), loads.end(), by_utilisation)->host;
    std::vector<const v1::HostVm*> vms;
    for (const v1::HostVm& vm : view.hosts.at(most).status->vms()) {
      if (vm.state() == v1::VM_STATE_RUNNING && view.vms.contains(vm.name())) vms.push_back(&vm);
    }
    std::stable_sort(vms.begin(), vms.end(), [](const v1::HostVm* a, const v1::HostVm* b) {
      return a->memory_bytes() > b->memory_bytes();
    });
    std::optional<controller::Move> move;
    for (const v1::HostVm* vm : vms) {
      const v1::VmRecord& record = view.vms.at(vm->name()).record;
      controller::PlacementRequest request{.vm = vm->name(),
                                           .record = &record,
                                           .exclude = {most},
                                           .live_migration = true,
                                           .source_host = most};
      if (!scheduler.check(request, least).ok()) continue;
      move = controller::Move{
          .vm = vm->name(), .source = most, .target = least, .memory_bytes = vm->memory_bytes()};
      break;
    }
    if (!move.has_value()) {
      result.gave_up = true;
      break;
    }
    (void)scheduler.assign(move->vm, view.vms.at(move->vm).record, least);
    controller::applyMoves(view, {*move});
    result.moves.push_back(*move);
  }
  return result;
}

}  // namespace flotilla::bench
