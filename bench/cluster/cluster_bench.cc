// cluster_bench: flotilla-controller at cluster scale, against the agent simulator
// (docs/simulator.md "cluster_bench"): a private 3-member etcd, 1000 simulated hosts
// (flotilla_agent_sim, in this process) and controller replicas started by PID. Steps, each a
// row of the table:
//   1. placement: 20,000 VMs pending in etcd when a leader starts, VMs/s until all are placed
//      and Running; then 2000 more created through ClusterService from several client
//      threads; the peer is etcd writing the VM's record and status (2 puts per VM) from as
//      many threads, in the same run;
//   2. failover: kill -9 of the leader among 3 replicas, time until a new leader reports itself
//      and until a VM created after the kill is placed;
//   3. HA: a simulated host with HA VMs killed, time until they all run on other hosts.
// Exits 0 when every measurement worked, whether targets were met or not; 1 when one failed
// or the machine lacks what it needs (etcd, the controller binary); 2 on bad usage.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/mutex.h"
#include "bench/cluster/bench_util.h"
#include "bench/cluster/cluster_steps.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"
#include "controller/sim/simulator.h"
#include "fmt/format.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/test_env.h"

#ifndef FLOTILLA_CONTROLLER
#define FLOTILLA_CONTROLLER "flotilla-controller"
#endif

namespace flotilla::bench {
namespace {

int fail(const absl::Status& status) {
  std::fprintf(stderr, "cluster_bench: %s\n", std::string(status.message()).c_str());
  return 1;
}

std::string loadAverage() {
  double load[3] = {0, 0, 0};
  if (::getloadavg(load, 3) != 3) return "?";
  return fmt::format("{:.2f} {:.2f} {:.2f}", load[0], load[1], load[2]);
}

// A directory of this run holding every TempDir the bench makes (etcd's data, configurations,
// logs): TMPDIR points into it, so that an interrupted run removes all of them at once.
class RunDir {
 public:
  RunDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/cluster-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("cluster_bench: mkdtemp");
      std::abort();
    }
    path_ = pattern;
    ::setenv("TMPDIR", path_.c_str(), 1);
  }
  ~RunDir() { remove(); }
  void remove() const {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// SIGINT, SIGTERM or SIGHUP during a run: the controller replicas and the etcd members are
// killed by PID, the run's directory is removed, and the bench exits 130. The signals are
// blocked in every other thread (the constructor runs before any thread starts).
class InterruptCleanup {
 public:
  explicit InterruptCleanup(const RunDir& dir) : dir_(dir) {
    sigset_t signals = set();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    thread_ = namedThread("bench-signals", [this](std::stop_token stop) {
      sigset_t wanted = set();
      const timespec tick{.tv_sec = 0, .tv_nsec = 200'000'000};
      while (!stop.stop_requested()) {
        const int sig = ::sigtimedwait(&wanted, nullptr, &tick);
        if (sig <= 0) continue;
        {
          absl::MutexLock lock(&mu_);
          if (deferred_) {
            pending_ = sig;
            continue;
          }
        }
        cleanUpAndExit(sig);
      }
    });
  }
  // What to kill; cleared by stop() before those objects go.
  void watch(testing::EtcdCluster* etcd, ControllerReplicas* controllers) {
    absl::MutexLock lock(&mu_);
    etcd_ = etcd;
    controllers_ = controllers;
  }
  // While deferred, a signal waits: etcd's members cannot be killed until EtcdCluster::start
  // returned them.
  void defer(bool deferred) {
    int pending = 0;
    {
      absl::MutexLock lock(&mu_);
      deferred_ = deferred;
      pending = pending_;
    }
    if (!deferred && pending != 0) cleanUpAndExit(pending);
  }
  void stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  static sigset_t set() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
    return signals;
  }
  void cleanUpAndExit(int sig) {
    fmt::print(stderr, "cluster_bench: signal {}: killing the controllers and etcd, removing {}\n",
               sig, dir_.path());
    absl::MutexLock lock(&mu_);
    if (controllers_ != nullptr) controllers_->killAllNow();
    if (etcd_ != nullptr) {
      for (int i = 0; i < etcd_->size(); ++i) (void)etcd_->kill(i);
    }
    dir_.remove();
    std::_Exit(130);
  }

  const RunDir& dir_;
  absl::Mutex mu_;
  testing::EtcdCluster* etcd_ ABSL_GUARDED_BY(mu_) = nullptr;
  ControllerReplicas* controllers_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool deferred_ ABSL_GUARDED_BY(mu_) = false;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  std::jthread thread_;
};

int run(int argc, char** argv) {
  CLI::App app(
      "cluster_bench: flotilla-controller with 1000 simulated hosts and 20,000 VMs: placement "
      "rate against an etcd baseline, leader failover, HA restart (docs/simulator.md).");
  ClusterBenchOptions options;
  options.controller_binary = FLOTILLA_CONTROLLER;
  auto* hosts = app.add_option("--hosts", options.hosts, "simulated hosts")->capture_default_str();
  auto* vms =
      app.add_option("--vms", options.vms, "VMs pending when the leader starts (placement step)")
          ->capture_default_str();
  auto* api_vms =
      app.add_option("--api-vms", options.api_vms, "VMs then created through ClusterService")
          ->capture_default_str();
  app.add_option("--clients", options.clients, "client threads creating VMs")
      ->capture_default_str();
  app.add_option("--failover-rounds", options.failover_rounds, "leader kills")
      ->capture_default_str();
  std::string election_ttl = absl::FormatDuration(options.election_ttl);
  app.add_option("--election-ttl", election_ttl,
                 "the replicas' election_ttl (whole seconds; 1s works with this bench's etcd "
                 "timings)")
      ->capture_default_str();
  app.add_option("--ha-vms", options.ha_vms, "HA VMs on the killed host")->capture_default_str();
  app.add_flag("--quick", options.quick,
               "a smoke run: 100 hosts, 1000 + 300 VMs, 1 failover round");
  app.add_option("--only", options.only, "one step: placement, failover or ha")
      ->check(CLI::IsMember({"placement", "failover", "ha"}));
  app.add_flag("--without-controller", options.without_controller,
               "the simulator and the etcd baseline only (no controller needed)");
  app.add_option("--controller", options.controller_binary, "the flotilla-controller binary")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  if (!absl::ParseDuration(election_ttl, &options.election_ttl) ||
      options.election_ttl < absl::Seconds(1)) {
    std::fprintf(stderr, "cluster_bench: --election-ttl %s: expected a duration of 1s or more\n",
                 election_ttl.c_str());
    return 2;
  }
  if (options.quick) {
    if (hosts->count() == 0) options.hosts = 100;
    if (vms->count() == 0) options.vms = 1000;
    if (api_vms->count() == 0) options.api_vms = 300;
    options.failover_rounds = std::min(options.failover_rounds, 1);
    options.ha_vms = std::min(options.ha_vms, 5);
  }
  if (options.hosts < 6 || options.vms < 1 || options.api_vms < 1 || options.clients < 1 ||
      options.failover_rounds < 1 || options.ha_vms < 1) {
    std::fprintf(stderr, "cluster_bench: --hosts must be at least 6, and the counts positive\n");
    return 2;
  }
  if (options.without_controller && !options.only.empty() && options.only != "placement") {
    std::fprintf(stderr, "cluster_bench: --without-controller runs the placement baseline only\n");
    return 2;
  }
  (void)initLogging({.level = LogLevel::kWarn, .file = ""});
  if (!options.without_controller && ::access(options.controller_binary.c_str(), X_OK) != 0) {
    return fail(absl::FailedPreconditionError(fmt::format(
        "the controller binary {} is missing or not executable: build it (ninja "
        "flotilla-controller) or pass --controller PATH (--without-controller measures the "
        "etcd baseline alone)",
        options.controller_binary)));
  }

  fmt::print(
      "cluster_bench {}\n"
      "machine:  {} CPUs, load {}\n"
      "cluster:  3-member etcd (50/500 ms timings), {} simulated hosts (16 CPUs, 64 GiB, lease "
      "TTL {}, report every 3 s), {}\n\n",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()),
      ::sysconf(_SC_NPROCESSORS_ONLN), loadAverage(), options.hosts,
      absl::FormatDuration(options.host_lease_ttl),
      options.without_controller
          ? "no controller"
          : fmt::format("{} (election_ttl {}, host_fence_timeout {})", options.controller_binary,
                        absl::FormatDuration(options.election_ttl),
                        absl::FormatDuration(options.host_fence_timeout)));
  (void)std::fflush(stdout);

  // Destroyed in reverse: the controllers (SIGKILL), the tracker, the simulator (its leases
  // revoked), etcd (killed, its data directory removed), the run's directory.
  RunDir run_dir;
  InterruptCleanup interrupts(run_dir);
  testing::TempDir dir;
  fmt::print(stderr, "cluster_bench: starting a 3-member etcd...\n");
  interrupts.defer(true);
  auto etcd = testing::EtcdCluster::start(3);
  if (etcd.ok()) interrupts.watch(etcd->get(), nullptr);
  interrupts.defer(false);
  if (!etcd.ok()) return fail(annotate(etcd.status(), "etcd"));
  // The watcher stops before etcd is destroyed (and again, earlier, before the controllers).
  absl::Cleanup stop_watching_etcd = [&interrupts] { interrupts.stop(); };
  etcd::ClientOptions client_options;
  client_options.endpoints = (*etcd)->clientEndpoints();
  auto client = etcd::EtcdClient::connect(client_options);
  if (!client.ok()) return fail(annotate(client.status(), "etcd client"));

  sim::SimulatorOptions sim_options;
  sim_options.etcd_endpoints = (*etcd)->clientEndpoints();
  sim_options.hosts = options.hosts;
  sim_options.lease_ttl = options.host_lease_ttl;
  sim_options.report_interval = absl::Seconds(3);
  fmt::print(stderr, "cluster_bench: registering {} simulated hosts...\n", options.hosts);
  const absl::Time sim_start = absl::Now();
  auto sim = sim::Simulator::start(sim_options);
  if (!sim.ok()) return fail(annotate(sim.status(), "the agent simulator"));
  const double registered_s = absl::ToDoubleSeconds(absl::Now() - sim_start);

  auto tracker = VmStatusTracker::start(**client, "/flotilla/v1/vms-status/");
  if (!tracker.ok()) return fail(annotate(tracker.status(), "watching the VMs' status"));
  std::unique_ptr<ControllerReplicas> controllers;
  if (!options.without_controller) {
    controllers = std::make_unique<ControllerReplicas>(
        ControllerSettings{.binary = options.controller_binary,
                           .etcd_endpoints = (*etcd)->clientEndpoints(),
                           .election_ttl = options.election_ttl,
                           .host_fence_timeout = options.host_fence_timeout,
                           .log_level = "info"},
        dir);
  }
  interrupts.watch(etcd->get(), controllers.get());
  absl::Cleanup stop_watching_controllers = [&interrupts] { interrupts.stop(); };
  BenchCluster cluster{.etcd = client->get(),
                       .sim = sim->get(),
                       .controllers = controllers.get(),
                       .tracker = tracker->get()};

  std::vector<ResultRow> rows;
  std::vector<std::string> notes;
  rows.push_back({.step = "simulator",
                  .what = fmt::format("{} hosts registered under their own leases", options.hosts),
                  .value = formatSeconds(registered_s),
                  .peer = "-",
                  .ratio = "-",
                  .target = "-",
                  .verdict = ""});
  // A step during which simulated hosts lost their leases (etcd stalled past their TTL) did
  // not measure what it meant to: the controller saw hosts vanish.
  uint64_t lost_before = (*sim)->stats().etcd.leases.lost;
  auto add = [&](absl::StatusOr<StepResult> step, std::string_view name) -> absl::Status {
    if (!step.ok()) return annotate(step.status(), fmt::format("{} step", name));
    rows.insert(rows.end(), step->rows.begin(), step->rows.end());
    notes.insert(notes.end(), step->notes.begin(), step->notes.end());
    const uint64_t lost = (*sim)->stats().etcd.leases.lost;
    if (lost > lost_before) {
      notes.push_back(fmt::format(
          "WARNING: {} simulated hosts' leases expired during the {} step (etcd did not renew "
          "them in time): its figures include hosts that vanished and came back",
          lost - lost_before, name));
    }
    lost_before = lost;
    return absl::OkStatus();
  };
  auto failWithLogs = [&](const absl::Status& status) {
    if (controllers != nullptr) {
      for (int i = 0; i < controllers->size(); ++i) {
        fmt::print(stderr, "--- the end of {}'s log:\n{}\n", controllers->name(i),
                   controllers->logTail(i));
      }
    }
    if (!rows.empty()) fmt::print("{}", formatResults(rows));
    return fail(status);
  };
  const bool all = options.only.empty();
  if (all || options.only == "placement") {
    if (absl::Status status = add(runPlacementStep(cluster, options), "placement"); !status.ok()) {
      return failWithLogs(status);
    }
  }
  if (!options.without_controller && (all || options.only == "failover")) {
    if (absl::Status status = add(runFailoverStep(cluster, options), "failover"); !status.ok()) {
      return failWithLogs(status);
    }
  }
  if (!options.without_controller && (all || options.only == "ha")) {
    if (absl::Status status = add(runHaStep(cluster, options), "ha"); !status.ok()) {
      return failWithLogs(status);
    }
  }
  const sim::SimulatorStats stats = (*sim)->stats();
  notes.push_back(fmt::format(
      "simulator: {} AgentService calls answered, {} host reports written ({} failed), {} "
      "lease renewals over the keep-alive streams ({} stream reconnects, {} leases lost)",
      stats.agent_calls, stats.etcd.reports, stats.etcd.failures, stats.etcd.leases.renewals,
      stats.etcd.leases.reconnects, stats.etcd.leases.lost));
  fmt::print("{}\n", formatResults(rows));
  for (const std::string& note : notes) fmt::print("    {}\n", note);
  fmt::print("\nload:     {} (load average at the end)\n", loadAverage());
  return 0;
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  return flotilla::bench::run(argc, argv);
}
