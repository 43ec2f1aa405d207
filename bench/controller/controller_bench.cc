// controller_bench: the controller's scheduler and rebalancer on synthetic clusters
// (docs/scheduler.md "Measured"). Placement: placements per second with 1000 hosts and
// 20,000 VMs placed one by one (place() + assign()), against a naive scheduler that rescans
// all placed VMs for every placement, in the same run; both must choose the same hosts.
// Rebalance: score before and after, moves and moved memory on skewed 50-host clusters,
// against "move the biggest VM from the most to the least loaded host until below the
// threshold". Prints tables; exits 0 when everything ran (targets or not), 1 when a check
// failed (the peers disagree on a placement, a plan's predicted score is not what applying
// it gives), 2 on bad usage.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/controller/naive_peers.h"
#include "bench/controller/synthetic_cluster.h"
#include "controller/scheduler/rebalancer.h"
#include "controller/scheduler/scheduler.h"
#include "fmt/format.h"

namespace flotilla::bench {
namespace {

using controller::PlacementRequest;
using controller::Scheduler;
using controller::SchedulerOptions;
using Clock = std::chrono::steady_clock;

constexpr double kGiB = 1024.0 * 1024 * 1024;
constexpr double kTargetPlacementsPerSecond = 2000;

struct Options {
  bool quick = false;
  uint32_t hosts = 1000;
  uint32_t vms = 20000;
  uint32_t rebalance_hosts = 50;
  uint32_t repeat = 3;
  uint64_t seed = 1;
};

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string loadAverage() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  file >> one >> five >> fifteen;
  return file ? fmt::format("{} {} {}", one, five, fifteen) : "?";
}

struct PlacementRun {
  double load_seconds = 0;
  double place_seconds = 0;
  uint32_t unplaced = 0;
  std::vector<std::string> hosts;  // chosen host per VM ("" when none)
  double rate(size_t vms) const {
    return place_seconds > 0 ? static_cast<double>(vms) / place_seconds : 0;
  }
};

PlacementRun runFlotilla(const PlacementWorkload& workload, SchedulerOptions options) {
  PlacementRun run;
  run.hosts.reserve(workload.vms.size());
  Clock::time_point start = Clock::now();
  Scheduler scheduler(options);
  scheduler.load(workload.view);
  run.load_seconds = secondsSince(start);
  start = Clock::now();
  for (const controller::VmView& vm : workload.vms) {
    controller::PlacementResult result =
        scheduler.place(PlacementRequest{.vm = vm.name, .record = &vm.record});
    if (result.host.has_value()) {
      (void)scheduler.assign(vm.name, vm.record, *result.host);
      run.hosts.push_back(*result.host);
    } else {
      ++run.unplaced;
      run.hosts.emplace_back();
    }
  }
  run.place_seconds = secondsSince(start);
  return run;
}

PlacementRun runNaive(const PlacementWorkload& workload, SchedulerOptions options) {
  PlacementRun run;
  Clock::time_point start = Clock::now();
  NaiveScheduler scheduler(options, workload.view);
  run.load_seconds = secondsSince(start);
  start = Clock::now();
  for (const controller::VmView& vm : workload.vms) {
    std::optional<std::string> host = scheduler.place(vm.record);
    if (host.has_value()) {
      scheduler.assign(vm.record, *host);
      run.hosts.push_back(*host);
    } else {
      ++run.unplaced;
      run.hosts.emplace_back();
    }
  }
  run.place_seconds = secondsSince(start);
  return run;
}

// Returns false when a check failed.
bool placementBenchmark(const Options& options) {
  PlacementWorkload workload = placementWorkload(options.hosts, options.vms, options.seed);
  size_t n = workload.vms.size();
  std::printf("\nPlacement: %u hosts, %zu VMs placed one by one (place() + assign()), best of %u\n",
              options.hosts, n, options.repeat);
  std::printf("  %-34s %14s %10s %10s %9s\n", "scheduler", "placements/s", "place s", "load ms",
              "unplaced");
  auto best = [&](SchedulerOptions scheduler_options) {
    PlacementRun fastest;
    for (uint32_t i = 0; i < options.repeat; ++i) {
      PlacementRun run = runFlotilla(workload, scheduler_options);
      if (i == 0 || run.place_seconds < fastest.place_seconds) fastest = std::move(run);
    }
    return fastest;
  };
  auto row = [&](const char* name, const PlacementRun& run) {
    std::printf("  %-34s %14.0f %10.3f %10.1f %9u\n", name, run.rate(n), run.place_seconds,
                run.load_seconds * 1000, run.unplaced);
  };
  PlacementRun spread = best({.strategy = SchedulerOptions::Strategy::kSpread});
  row("flotilla spread (per-host counters)", spread);
  PlacementRun pack = best({.strategy = SchedulerOptions::Strategy::kPack});
  row("flotilla pack", pack);
  PlacementRun naive = runNaive(workload, {.strategy = SchedulerOptions::Strategy::kSpread});
  row("naive spread (rescans placed VMs)", naive);

  size_t differ = 0;
  for (size_t i = 0; i < n; ++i) {
    if (spread.hosts[i] != naive.hosts[i]) ++differ;
  }
  double ratio = naive.rate(n) > 0 ? spread.rate(n) / naive.rate(n) : 0;
  std::printf("  flotilla/naive placements per second: %.1fx\n", ratio);
  std::printf("  same host chosen by both for every VM: %s\n",
              differ == 0 ? "yes" : fmt::format("NO ({} differ)", differ).c_str());
  std::printf("  target >= %.0f placements/s (spread): %s\n", kTargetPlacementsPerSecond,
              spread.rate(n) >= kTargetPlacementsPerSecond ? "met" : "NOT met");
  return differ == 0;
}

// Returns false when a check failed.
bool rebalanceBenchmark(const Options& options) {
  controller::RebalanceOptions rebalance;
  rebalance.max_moves = 1000;  // one plan to the end, to compare with the peer
  const double target = rebalance.threshold * rebalance.target_ratio;
  std::printf(
      "\nRebalance quality: %u hosts (32 CPUs/128 GiB and 64 CPUs/256 GiB); threshold %.2f, "
      "target %.3f,\nhysteresis %.2f, cost %.4f/GiB. Naive: the biggest VM of the most loaded "
      "host to the least loaded\nhost, until below %.2f (the threshold) or %.3f (flotilla's "
      "target)\n",
      options.rebalance_hosts, rebalance.threshold, target, rebalance.hysteresis,
      rebalance.cost_per_gib, rebalance.threshold, target);
  std::printf("  %-9s %4s %6s | %-31s | %-20s | %-20s | %s\n", "", "", "score", "flotilla",
              fmt::format("naive to {:.2f}", rebalance.threshold).c_str(),
              fmt::format("naive to {:.3f}", target).c_str(), "moves naive/flotilla");
  std::printf("  %-9s %4s %6s | %6s %5s %6s %6s %4s | %6s %5s %6s  | %6s %5s %6s  | %6s %6s\n",
              "shape", "VMs", "before", "after", "moves", "to-thr", "GiB", "ms", "after", "moves",
              "GiB", "after", "moves", "GiB", fmt::format("{:.2f}", rebalance.threshold).c_str(),
              fmt::format("{:.3f}", target).c_str());
  bool ok = true;
  const SkewShape shapes[] = {SkewShape::kHotspot, SkewShape::kRamp,   SkewShape::kNewHosts,
                              SkewShape::kCpuHot,  SkewShape::kBigVms, SkewShape::kMixedCpu};
  auto moved = [](const std::vector<controller::Move>& moves) {
    double bytes = 0;
    for (const controller::Move& move : moves) bytes += static_cast<double>(move.memory_bytes);
    return bytes / kGiB;
  };
  // Only where both got there: "-" when either did not reach the score.
  auto ratio = [](size_t naive, bool naive_reached, size_t ours, bool ours_reached) {
    if (!naive_reached || !ours_reached || ours == 0) return std::string("-");
    return fmt::format("{:.2f}", static_cast<double>(naive) / static_cast<double>(ours));
  };
  for (SkewShape shape : shapes) {
    controller::ClusterView view = skewedCluster(shape, options.rebalance_hosts, options.seed);
    Clock::time_point start = Clock::now();
    Scheduler scheduler(SchedulerOptions{});
    scheduler.load(view);
    controller::RebalanceResult plan = controller::planRebalance(view, scheduler, rebalance, {});
    double plan_ms = secondsSince(start) * 1000;
    NaiveRebalanceResult naive =
        naiveRebalance(view, SchedulerOptions{}, rebalance.threshold, rebalance.max_moves);
    NaiveRebalanceResult naive_deep =
        naiveRebalance(view, SchedulerOptions{}, target, rebalance.max_moves);

    controller::ClusterView after = view;
    controller::applyMoves(after, plan.moves);
    double applied = controller::imbalanceScore(controller::hostLoads(after));
    if (std::abs(applied - plan.score_after) > 1e-9) {
      std::printf("  %s: the plan predicted %.6f, applying it gives %.6f\n", shapeName(shape),
                  plan.score_after, applied);
      ok = false;
    }
    // Moves until the score first fell to the threshold (where the naive policy stops).
    size_t to_threshold = 0;
    while (to_threshold < plan.moves.size() &&
           plan.moves[to_threshold].score_after > rebalance.threshold) {
      ++to_threshold;
    }
    bool reached_threshold = to_threshold < plan.moves.size();
    if (reached_threshold) ++to_threshold;
    std::printf(
        "  %-9s %4zu %6.3f | %6.3f %5zu %6zu %6.0f %4.0f | %6.3f %5zu %6.0f%s | %6.3f %5zu "
        "%6.0f%s | %6s %6s\n",
        shapeName(shape), view.vms.size(), plan.score_before, plan.score_after, plan.moves.size(),
        to_threshold, moved(plan.moves), plan_ms, naive.score_after, naive.moves.size(),
        moved(naive.moves), naive.gave_up ? "!" : " ", naive_deep.score_after,
        naive_deep.moves.size(), moved(naive_deep.moves), naive_deep.gave_up ? "!" : " ",
        ratio(naive.moves.size(), naive.score_after <= rebalance.threshold, to_threshold,
              reached_threshold)
            .c_str(),
        ratio(naive_deep.moves.size(), naive_deep.score_after <= target, plan.moves.size(),
              plan.score_after <= target)
            .c_str());
  }
  std::printf(
      "  to-thr: flotilla's moves until its score first reached the threshold (it goes on to the "
      "target).\n  !: the naive policy gave up (no VM of the busiest host fits the least busy "
      "one, or %u moves).\n  moves naive/flotilla: to the same score, where both reached it "
      "('-' otherwise).\n",
      rebalance.max_moves);

  // The leader plans every `interval`: how long one default plan (10 moves) takes at scale.
  controller::ClusterView large = skewedCluster(SkewShape::kHotspot, options.hosts, options.seed);
  Clock::time_point start = Clock::now();
  Scheduler scheduler(SchedulerOptions{});
  scheduler.load(large);
  controller::RebalanceResult plan =
      controller::planRebalance(large, scheduler, controller::RebalanceOptions{}, {});
  std::printf("  one default plan (max_moves %u) on %u hosts, %zu VMs (hotspot): %.0f ms, %s\n",
              controller::RebalanceOptions{}.max_moves, options.hosts, large.vms.size(),
              secondsSince(start) * 1000, plan.message.c_str());
  return ok;
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  flotilla::bench::Options options;
  CLI::App app("Flotilla's scheduler and rebalancer on synthetic clusters (docs/scheduler.md)");
  app.add_flag("--quick", options.quick, "one run of each placement row: a smoke run");
  app.add_option("--hosts", options.hosts, "hosts for the placement benchmark")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--vms", options.vms, "VMs to place")->check(CLI::Range(1u, 1000000u));
  app.add_option("--rebalance-hosts", options.rebalance_hosts, "hosts of the skewed clusters")
      ->check(CLI::Range(2u, 10000u));
  app.add_option("--repeat", options.repeat, "runs of each Flotilla placement row (best is shown)")
      ->check(CLI::Range(1u, 100u));
  app.add_option("--seed", options.seed, "seed of the synthetic clusters");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (options.quick) options.repeat = 1;
  std::printf("controller_bench: %u CPUs, load average %s, seed %llu\n",
              std::thread::hardware_concurrency(), flotilla::bench::loadAverage().c_str(),
              static_cast<unsigned long long>(options.seed));
  bool ok = flotilla::bench::placementBenchmark(options);
  ok = flotilla::bench::rebalanceBenchmark(options) && ok;
  std::printf("\nload average at the end: %s\n", flotilla::bench::loadAverage().c_str());
  return ok ? 0 : 1;
}
