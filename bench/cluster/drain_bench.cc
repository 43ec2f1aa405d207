// drain_bench: the drain of a host with 10 test VMs by flotilla-controller, measured on a whole
// cluster on this machine (tests/integration/controller/controller_cluster.h: 3 hosts as
// namespaces with OVS and flotilla-agent, a 3-member etcd, tgtd for the iSCSI pool, one
// controller replica), against a peer in the same run (docs/benchmarks.md, "Drain"):
//   1. flotilla: N VMs on host 0 answering UDP echo; DrainHost through ClusterService while a
//      UDP prober sends to every VM each millisecond; total time, per-VM longest probe gap,
//      probes lost, migrations at once;
//   2. peer: N fresh VMs on host 0 (each VM moves once per measurement), the controller stopped,
//      moved one at a time by direct AgentService calls to the hosts the drain chose, measured
//      with the same prober: the floor of a sequential drain built on these agents.
// Exits 0 when every measurement worked, 1 when one failed or the machine lacks what it needs
// (root, /dev/kvm, etcd, OVS, tgt), 2 on bad usage.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/time/clock.h"
#include "bench/cluster/drain_probe.h"
#include "bench/cluster/drain_steps.h"
#include "bench/machine.h"
#include "bench/probe/udp_prober.h"
#include "bench/report.h"
#include "common/clock.h"
#include "common/status.h"
#include "controller/config.h"
#include "fmt/format.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla::bench {
namespace {

constexpr int kHosts = 3;
constexpr int kControllers = 1;
constexpr int kEtcdMembers = 3;
constexpr int kSourceHost = 0;
// The probes run this long before the first move and after the last one.
constexpr absl::Duration kSettle = absl::Seconds(1);
constexpr absl::Duration kDrainPoll = absl::Milliseconds(10);
// The peer polls the source agent this often (the controller's migration driver: 100 ms).
constexpr absl::Duration kPeerPoll = absl::Milliseconds(10);
constexpr absl::Duration kCreateTimeout = absl::Seconds(180);
constexpr absl::Duration kDrainTimeout = absl::Seconds(300);
// One live migration of a 64 MiB test VM: well under 2 s even on a loaded machine.
constexpr absl::Duration kPeerMoveTimeout = absl::Seconds(60);
constexpr absl::Duration kEchoTimeout = absl::Seconds(20);
constexpr int kFirstHostOctet = 10;  // drain VMs at 10.78.0.10..; the peer's after them

struct Options {
  int vms = 10;
  std::string probe_interval = "1ms";
  absl::Duration interval = absl::Milliseconds(1);
  bool verbose = false;
};

// One measured move of all N VMs off host 0, by the controller's drain or by the peer.
struct Measurement {
  absl::Duration total = absl::ZeroDuration();
  absl::Duration window_start = absl::ZeroDuration();  // monotonic: the first move was asked for
  absl::Duration window_end = absl::ZeroDuration();    // monotonic: the last one was done
  probe::ProbeReport probes;
  probe::ProbeReport before;  // kSettle of probes alone, before the prober of the moves starts
  probe::ProbeReport after;   // the same once it stopped: the VMs on their new hosts
  absl::Duration probes_started = absl::ZeroDuration();  // monotonic: the prober's origin
  absl::Time probes_started_wall;                        // the same on the wall clock
  std::vector<Move> moves;
  std::string record;  // the drain: what its DrainRecord says
};

double ms(absl::Duration d) {
  return absl::ToDoubleMilliseconds(d);
}

// Runs the prober against `vms` from kSettle before `move` until kSettle after it, with
// kSettle of probes alone before and after that (the loss of the paths without a move).
absl::StatusOr<Measurement> measure(ProbeClient& client, const std::vector<BenchVm>& vms,
                                    const Options& options,
                                    const std::function<absl::Status(Measurement&)>& move) {
  const probe::ProbeOptions steady{.interval = options.interval, .duration = kSettle};
  Measurement measurement;
  ASSIGN_OR_RETURN(measurement.before, probeInside(client.ns(), probeTargets(vms), steady));
  ASSIGN_OR_RETURN(auto prober, BackgroundProber::start(client.ns(), probeTargets(vms),
                                                        {.interval = options.interval}));
  absl::SleepFor(kSettle);
  absl::Status moved = move(measurement);
  if (moved.ok()) absl::SleepFor(kSettle);
  absl::StatusOr<probe::ProbeReport> probes = prober->stop();
  RETURN_IF_ERROR(moved);
  if (!probes.ok()) return annotate(probes.status(), "the UDP prober");
  measurement.probes = *std::move(probes);
  measurement.probes_started = prober->startedAt();
  measurement.probes_started_wall = prober->startedAtWall();
  measurement.total = measurement.window_end - measurement.window_start;
  ASSIGN_OR_RETURN(measurement.after, probeInside(client.ns(), probeTargets(vms), steady));
  // Every VM must answer on its new host: a figure of a VM that went silent is no pause.
  RETURN_IF_ERROR(annotate(client.allAnswer(probeTargets(vms), kEchoTimeout),
                           "after the moves, on their new hosts"));
  return measurement;
}

absl::StatusOr<Measurement> measureDrain(ControllerCluster& cluster, ProbeClient& client,
                                         const std::vector<BenchVm>& vms, const Options& options) {
  const std::string source = cluster.host(kSourceHost).name();
  return measure(client, vms, options, [&](Measurement& measurement) -> absl::Status {
    ASSIGN_OR_RETURN(DrainOutcome drain, drainHost(cluster, source, kDrainPoll, kDrainTimeout));
    measurement.window_start = drain.called_at;
    measurement.window_end = drain.succeeded_at;
    measurement.moves = std::move(drain.moves);
    measurement.record = fmt::format(
        "{} ms from its creation to its end by the controller's "
        "clock, \"{}\"",
        drain.record_ms, drain.message);
    return absl::OkStatus();
  });
}

absl::StatusOr<Measurement> measurePeer(ControllerCluster& cluster, ProbeClient& client,
                                        const std::vector<BenchVm>& vms,
                                        const std::vector<int>& targets,
                                        const std::map<std::string, uint64_t>& generations,
                                        const Options& options) {
  // The limit flotilla-controller gives each migration (its default configuration, as the
  // cluster runs it).
  const uint32_t downtime_limit_ms = controller::MigrationLimits().downtime_limit_ms;
  return measure(client, vms, options, [&](Measurement& measurement) -> absl::Status {
    measurement.window_start = systemClock().monotonicNow();
    for (size_t i = 0; i < vms.size(); ++i) {
      ASSIGN_OR_RETURN(Move move,
                       migrateDirectly(cluster.host(kSourceHost), cluster.host(targets[i]),
                                       vms[i].name, generations.at(vms[i].name), downtime_limit_ms,
                                       kPeerPoll, kPeerMoveTimeout));
      measurement.moves.push_back(std::move(move));
    }
    measurement.window_end = systemClock().monotonicNow();
    return absl::OkStatus();
  });
}

// ---- The report ----

struct Figures {
  Samples gaps_ms;      // per VM: its longest probe gap
  Samples move_ms;      // per successful move: prepare to finished
  Samples downtime_ms;  // per successful move: the VMM's figure, where it was reported
  double downtime_max_ms = 0;
  int failed_moves = 0;
  int downtime_unreported = 0;  // moves whose source reported no downtime (see table())
  int concurrent = 0;
  int gaps_outside = 0;      // VMs whose longest gap lies outside the moves' window
  int gaps_outside_own = 0;  // ... outside the VM's own move (during another VM's)
};

Figures figuresOf(const Measurement& m) {
  Figures f;
  for (const probe::TargetReport& target : m.probes.targets) {
    f.gaps_ms.add(ms(target.longest_gap));
    const absl::Duration gap_start = m.probes_started + target.longest_gap_start;
    const absl::Duration gap_end = gap_start + target.longest_gap;
    if (gap_end < m.window_start || gap_start > m.window_end) {
      ++f.gaps_outside;
      continue;
    }
    const absl::Time gap_wall = m.probes_started_wall + target.longest_gap_start;
    for (const Move& move : m.moves) {
      if (move.vm != target.target.name || !move.succeeded) continue;
      if (gap_wall + target.longest_gap < absl::FromUnixMillis(move.started_unix_ms) ||
          gap_wall > absl::FromUnixMillis(move.finished_unix_ms)) {
        ++f.gaps_outside_own;
      }
    }
  }
  for (const Move& move : m.moves) {
    if (!move.succeeded) {
      ++f.failed_moves;
      continue;
    }
    f.move_ms.add(static_cast<double>(move.finished_unix_ms - move.started_unix_ms));
    if (move.vmm_downtime_ms > 0) {
      f.downtime_ms.add(move.vmm_downtime_ms);
      f.downtime_max_ms = std::max(f.downtime_max_ms, move.vmm_downtime_ms);
    } else {
      ++f.downtime_unreported;
    }
  }
  f.concurrent = maxConcurrent(m.moves);
  return f;
}

double maxOf(const std::vector<probe::TargetReport>& targets) {
  double most = 0;
  for (const probe::TargetReport& target : targets) most = std::max(most, ms(target.longest_gap));
  return most;
}

std::string table(const Measurement& drain, const Measurement& peer, const std::string& source,
                  int vms) {
  const Figures d = figuresOf(drain);
  const Figures p = figuresOf(peer);
  constexpr int kStep = 18;
  constexpr int kLabel = 46;
  constexpr int kFigure = 14;
  auto line = [&](const std::string& step, const std::string& label, const std::string& a,
                  const std::string& b, const std::string& ratio) {
    return fmt::format("{:<{}}{:<{}}{:>{}}{:>{}}{:>{}}\n", step, kStep, label, kLabel, a, kFigure,
                       b, kFigure, ratio, kFigure - 4);
  };
  auto ratio = [](double a, double b) {
    return b > 0 ? fmt::format("{:.2f}x", a / b) : std::string("-");
  };
  auto row = [&](const std::string& step, const std::string& label, double a, double b,
                 const std::string& unit) {
    return line(step, label, formatFigure(a, unit), formatFigure(b, unit), ratio(a, b));
  };
  const std::string step = fmt::format("drain {} VMs", vms);
  std::string text = line("step", "measurement", "flotilla", "peer", "ratio");
  text += std::string(kStep + kLabel + 3 * kFigure - 4, '-') + "\n";
  text += row(step, "total time", ms(drain.total), ms(peer.total), "ms");
  text += row("", "one VM's move, median", d.move_ms.median(), p.move_ms.median(), "ms");
  text += row("", "longest probe gap, max over VMs", maxOf(drain.probes.targets),
              maxOf(peer.probes.targets), "ms");
  text +=
      row("", "longest probe gap, median over VMs", d.gaps_ms.median(), p.gaps_ms.median(), "ms");
  text += row("", "VMM-reported downtime, median", d.downtime_ms.median(), p.downtime_ms.median(),
              "ms");
  text += row("", "VMM-reported downtime, max", d.downtime_max_ms, p.downtime_max_ms, "ms");
  text += row("", "migrations at once, at most", d.concurrent, p.concurrent, "");
  auto lostLine = [&](const std::string& label, const probe::ProbeReport& a,
                      const probe::ProbeReport& b) {
    return line("", label, fmt::format("{}/{}", a.totalLost(), a.totalSent()),
                fmt::format("{}/{}", b.totalLost(), b.totalSent()),
                ratio(static_cast<double>(a.totalLost()), static_cast<double>(b.totalLost())));
  };
  text += lostLine("probes lost / sent, the moves +-1 s", drain.probes, peer.probes);
  text += lostLine("probes lost / sent, 1 s before (no move)", drain.before, peer.before);
  text += lostLine("probes lost / sent, 1 s after (no move)", drain.after, peer.after);
  text += row("", "failed migration attempts", d.failed_moves, p.failed_moves, "");
  text += fmt::format(
      "    flotilla: DrainHost({}) through ClusterService until GetDrain (polled every {}) read "
      "Succeeded; peer: the first GetVm of the first VM until FinishMigration on the source of "
      "the last\n",
      source, absl::FormatDuration(kDrainPoll));
  text += fmt::format("    the DrainRecord: {}\n", drain.record);
  text += fmt::format(
      "    one VM's move: flotilla: its MigrationRecord's Preparing to Succeeded; peer: GetVm on "
      "the source to FinishMigration on the source (GetMigration polled every {}; the "
      "controller polls every 100 ms)\n",
      absl::FormatDuration(kPeerPoll));
  text += fmt::format(
      "    probe gap: the longest time without an echo reply from one VM (probes every {} "
      "from a client on {}'s bridge, VLAN 100); the prober's own longest pause between two "
      "rounds: flotilla {}, peer {}\n",
      absl::FormatDuration(drain.probes.options.interval), source,
      formatFigure(ms(drain.probes.longest_send_gap), "ms"),
      formatFigure(ms(peer.probes.longest_send_gap), "ms"));
  const controller::MigrationLimits limits;
  text += fmt::format(
      "    ratio: flotilla / peer (below 1: the drain did better). The drain runs its migrations "
      "concurrently within the controller's limits (per source {}, per target {}, per cluster {}) "
      "and pays for recording each phase in etcd and polling every 100 ms; the peer runs one "
      "at a time with nothing recorded: its total is the floor of a sequential drain on these "
      "agents, and its gaps what a migration costs a VM on an otherwise quiet cluster\n",
      limits.per_source, limits.per_target, limits.per_cluster);
  if (d.downtime_unreported + p.downtime_unreported > 0) {
    text += fmt::format(
        "    VMM-reported downtime: left out for {} drain and {} peer moves that report 0: the "
        "source VMM exited before a GetMigration read its final status, and the source agent "
        "then answers with the last status it read, marked completed\n",
        d.downtime_unreported, p.downtime_unreported);
  }
  if (d.gaps_outside_own + p.gaps_outside_own > 0) {
    text += fmt::format(
        "    longest gaps during another VM's move, not the VM's own: flotilla {} VMs, peer {} "
        "VMs (each host's userspace OVS carries the probes, the migration streams on br-phy, "
        "and every move's port changes, which stall its forwarding)\n",
        d.gaps_outside_own, p.gaps_outside_own);
  }
  if (d.gaps_outside + p.gaps_outside > 0) {
    text += fmt::format(
        "    longest gaps outside the moves (from {} before to {} after: machine noise, not a "
        "migration): flotilla {} VMs, peer {} VMs\n",
        absl::FormatDuration(kSettle), absl::FormatDuration(kSettle), d.gaps_outside,
        p.gaps_outside);
  }
  return text;
}

// One line per slot: the drain's VM i and the peer's VM i went to the same host.
std::string perVm(const Measurement& drain, const Measurement& peer) {
  auto describe = [](const Measurement& m, size_t i) {
    const probe::TargetReport& target = m.probes.targets[i];
    const Move* moved = nullptr;
    for (const Move& move : m.moves) {
      if (move.vm == target.target.name && move.succeeded) moved = &move;
    }
    return fmt::format(
        "{:<9} -> {:<7} gap {:>9} lost {:>4}  VMM downtime {:>8}", target.target.name,
        moved ? moved->target : "?", formatFigure(ms(target.longest_gap), "ms"), target.lost(),
        moved && moved->vmm_downtime_ms > 0 ? formatFigure(moved->vmm_downtime_ms, "ms")
                                            : std::string("-"));
  };
  std::string text;
  for (size_t i = 0; i < drain.probes.targets.size() && i < peer.probes.targets.size(); ++i) {
    text += fmt::format("  {}   |  {}\n", describe(drain, i), describe(peer, i));
  }
  return text;
}

// --verbose: per VM, its longest gap on the timeline of its own move (ms from the move's
// start; the prober's offsets put on the wall clock of the moves' records).
std::string timeline(const Measurement& m) {
  std::string text;
  for (const probe::TargetReport& target : m.probes.targets) {
    const Move* moved = nullptr;
    for (const Move& move : m.moves) {
      if (move.vm == target.target.name && move.succeeded) moved = &move;
    }
    if (moved == nullptr) continue;
    const double origin = static_cast<double>(moved->started_unix_ms);
    const double gap_start =
        absl::ToDoubleMilliseconds(m.probes_started_wall + target.longest_gap_start -
                                   absl::UnixEpoch()) -
        origin;
    auto at = [&](int64_t unix_ms) {
      return unix_ms == 0 ? std::string("-")
                          : fmt::format("{:+.0f}", static_cast<double>(unix_ms) - origin);
    };
    text += fmt::format(
        "  {:<9} -> {}: longest gap {:+.0f}..{:+.0f} ms (lost {}, longest loss run {}, rtt max "
        "{}); completed seen {}, target finished {}, finished {}; {}\n",
        target.target.name, moved->target, gap_start, gap_start + ms(target.longest_gap),
        target.lost(), target.longest_loss_run, formatFigure(ms(target.rtt_max), "ms"),
        at(moved->completed_unix_ms), at(moved->target_finished_unix_ms),
        at(moved->finished_unix_ms), moved->message);
  }
  return text;
}

// ---- The run ----

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return fmt::format("{} {} {}", one, five, fifteen);
}

absl::Status checkMachine() {
  std::vector<HostTool> tools = simulatedHostTools();
  tools.push_back({"tgtd", "tgt"});
  tools.push_back({"tgtadm", "tgt"});
  return requireMachine(
      "drain_bench makes a cluster: network namespaces, a bridge, OVS, cgroups, tgtd", tools,
      {FLOTILLA_CONTROLLER, FLOTILLA_AGENT, FLOTILLA_VMM, FLOTILLA_GUEST_ELF});
}

int fail(const absl::Status& status, const ControllerCluster* cluster = nullptr) {
  fmt::print(stderr, "drain_bench: error: {}\n", status.message());
  if (cluster != nullptr) {
    fmt::print(stderr, "the end of the controller's log:\n{}\n", cluster->logs());
  }
  return 1;
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app{
      "Drains a host with N test VMs through flotilla-controller under UDP probes, and moves N "
      "fresh VMs the same way by direct agent calls one at a time as the peer "
      "(docs/benchmarks.md, \"Drain\")"};
  app.add_option("--vms", options.vms, "VMs on the drained host (default 10)")
      ->check(CLI::Range(1, 100));
  app.add_option("--probe-interval", options.probe_interval,
                 "time between two UDP probes to one VM (default 1ms)");
  app.add_flag("--verbose", options.verbose,
               "per VM, its longest gap on the timeline of its move, on standard error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  if (!absl::ParseDuration(options.probe_interval, &options.interval) ||
      options.interval < absl::Microseconds(100) || options.interval > absl::Seconds(1)) {
    fmt::print(stderr,
               "drain_bench: --probe-interval {}: give a duration from 100us to 1s, e.g. 1ms\n",
               options.probe_interval);
    return 2;
  }
  if (absl::Status ready = checkMachine(); !ready.ok()) return fail(ready);

  // Every simulated host reports this machine's CPUs: at the controller's default CPU
  // overcommit (4.0) two CPUs take 8 VMs of 1 vCPU, fewer than the drained host must hold.
  const long cpus = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  const long cpu_overcommit = std::max(4L, (options.vms + cpus - 1) / cpus);
  utsname system{};
  ::uname(&system);
  fmt::print(
      "drain of a host with {} test VMs by flotilla-controller vs the same moves by direct agent "
      "calls, one at a time\n"
      "date:     {}\n"
      "machine:  {} CPUs, kernel {} {}\n"
      "load:     {} (load average at the start; other work on the machine adds noise)\n"
      "cluster:  {} hosts (namespaces with OVS and flotilla-agent, VXLAN), {} controller "
      "replica (scheduler.cpu_overcommit {}), {}-member etcd ({}), tgtd ({}) with the iSCSI "
      "pool\n"
      "VMs:      the test guest, 1 vCPU, 64 MiB, a 16 MiB iSCSI disk, virtio-net on VLAN 100, "
      "UDP echo\n\n",
      options.vms, absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()),
      cpus, system.release, system.machine, loadAverage(), kHosts, kControllers, cpu_overcommit,
      kEtcdMembers, programVersion({"etcd", "--version"}), programVersion({"tgtd", "--version"}));
  (void)std::fflush(stdout);

  fmt::print(stderr, "drain_bench: starting the cluster...\n");
  auto started = ControllerCluster::start(
      {.hosts = kHosts,
       .controllers = kControllers,
       .etcd_members = kEtcdMembers,
       .controller_config = fmt::format("scheduler:\n  cpu_overcommit: {}\n", cpu_overcommit)});
  if (!started.ok()) return fail(annotate(started.status(), "starting the cluster"));
  ControllerCluster& cluster = **started;
  if (auto leader = cluster.waitForLeader(absl::Seconds(30)); !leader.ok()) {
    return fail(leader.status(), &cluster);
  }
  const std::string source = cluster.host(kSourceHost).name();
  const std::vector<BenchVm> drain_vms = benchVms("drain", options.vms, kFirstHostOctet);
  const std::vector<BenchVm> peer_vms =
      benchVms("peer", options.vms, kFirstHostOctet + options.vms);
  std::vector<BenchVm> all = drain_vms;
  all.insert(all.end(), peer_vms.begin(), peer_vms.end());
  if (absl::Status made = createNetworkAndStorage(cluster, all); !made.ok()) {
    return fail(made, &cluster);
  }

  // 1. flotilla: the drain.
  fmt::print(stderr, "drain_bench: {} VMs on {}...\n", options.vms, source);
  if (absl::Status placed = createVmsOnHost(cluster, kSourceHost, drain_vms, kCreateTimeout);
      !placed.ok()) {
    return fail(placed, &cluster);
  }
  auto client = ProbeClient::attach(cluster.host(kSourceHost));
  if (!client.ok()) return fail(annotate(client.status(), "the probe client"), &cluster);
  if (absl::Status echo = (*client)->allAnswer(probeTargets(drain_vms), kEchoTimeout); !echo.ok()) {
    return fail(annotate(echo, "before the drain"), &cluster);
  }
  fmt::print(stderr, "drain_bench: draining {} under UDP probes...\n", source);
  auto drain = measureDrain(cluster, **client, drain_vms, options);
  if (!drain.ok()) return fail(annotate(drain.status(), "the drain"), &cluster);

  // 2. The peer, on fresh VMs: a VM moved a second time can stop answering on its NIC
  // (docs/demo.md, "State"), so each VM moves once. The same N VMs on the same source, each
  // going to the host the drain sent its counterpart to.
  std::map<std::string, int> host_index;
  for (int i = 0; i < cluster.hostCount(); ++i) host_index[cluster.host(i).name()] = i;
  std::vector<int> targets;
  for (const BenchVm& vm : drain_vms) {
    int target = -1;
    for (const Move& move : drain->moves) {
      if (move.vm == vm.name && move.succeeded) target = host_index.at(move.target);
    }
    if (target < 0) {
      return fail(absl::InternalError(
                      fmt::format("the drain recorded no successful migration of {}", vm.name)),
                  &cluster);
    }
    targets.push_back(target);
  }
  fmt::print(stderr, "drain_bench: {} fresh VMs on {} for the peer...\n", options.vms, source);
  absl::Status ready = deleteVms(cluster, drain_vms, kCreateTimeout);
  if (ready.ok()) ready = undrainHost(cluster, source);
  if (ready.ok()) ready = createVmsOnHost(cluster, kSourceHost, peer_vms, kCreateTimeout);
  if (ready.ok()) ready = (*client)->allAnswer(probeTargets(peer_vms), kEchoTimeout);
  if (!ready.ok()) return fail(annotate(ready, "preparing the peer"), &cluster);
  auto generations = vmGenerations(cluster, peer_vms);
  if (!generations.ok()) return fail(annotate(generations.status(), "the peer"), &cluster);
  // The controller must not see these moves: to it, a VM reported by a host it is not placed
  // on, with no migration recorded, is an orphan copy, and it removes that copy.
  for (int replica = 0; replica < kControllers; ++replica) {
    if (absl::Status killed = cluster.killController(replica); !killed.ok()) {
      return fail(annotate(killed, "stopping the controller"), &cluster);
    }
  }
  for (int replica = 0; replica < kControllers; ++replica) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (cluster.controllerAlive(replica) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    if (cluster.controllerAlive(replica)) {
      return fail(absl::InternalError(fmt::format(
                      "controller replica {} is still alive 10 s after SIGKILL", replica + 1)),
                  &cluster);
    }
  }
  fmt::print(stderr, "drain_bench: the peer: direct agent migrations, one at a time...\n");
  auto peer = measurePeer(cluster, **client, peer_vms, targets, *generations, options);
  if (!peer.ok()) return fail(annotate(peer.status(), "the peer"), &cluster);

  fmt::print("{}\n", table(*drain, *peer, source, options.vms));
  fmt::print(
      "per VM (flotilla | peer; the peer's VM i went to the host the drain chose for VM "
      "i):\n{}\n",
      perVm(*drain, *peer));
  fmt::print("load:     {} (load average at the end)\n", loadAverage());
  if (options.verbose) {
    fmt::print(stderr, "drain (ms from each migration's Preparing):\n{}", timeline(*drain));
    fmt::print(stderr, "peer (ms from each move's GetVm):\n{}", timeline(*peer));
  }
  return 0;
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  return flotilla::bench::run(argc, argv);
}
