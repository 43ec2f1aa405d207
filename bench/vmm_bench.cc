// vmm_bench: Flotilla's VMM against QEMU (the reference VMM), same guest file, same run, runs
// alternating between them: start time, memory overhead, snapshot and restore, virtio block
// and network throughput, live migration. Prints the
// machine, a table (median, p90, ratio Flotilla/QEMU) and whether each target was met. Exits
// 0 when every measurement worked, whether targets were met or not (a benchmark reports);
// 1 when a measurement failed; 2 on bad usage. See docs/benchmarks.md.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/time/clock.h"
#include "bench/benchmarks.h"
#include "common/command.h"
#include "common/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"
#include "tests/support/test_env.h"

namespace flotilla::bench {
namespace {

// Targets (docs/benchmarks.md).
constexpr double kStartTargetMs = 20;
constexpr double kStartTargetRatio = 0.2;
constexpr double kOverheadTargetMib = 8;
constexpr double kRestoreTargetMs = 100;
constexpr double kMigrationIdleDowntimeMs = 5;
constexpr double kMigrationDowntimeMs = 20;  // at kMigrationDowntimeRateMbps
constexpr uint32_t kMigrationDowntimeRateMbps = 200;
constexpr double kMigrationFirstCopyGBps = 2;

// The load averages over 1, 5 and 15 minutes.
std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return fmt::format("{} {} {}", one, five, fifteen);
}

// The load average over the last minute.
double recentLoad() {
  std::ifstream in("/proc/loadavg");
  double one = 0;
  in >> one;
  return one;
}

// The value of the first "key: value" line of `path` whose key starts with `key`.
std::string firstLineOf(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) {
      size_t colon = line.find(':');
      return colon == std::string::npos ? line
                                        : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

absl::StatusOr<std::string> qemuVersion(const std::string& qemu) {
  SystemCommandRunner runner;
  ASSIGN_OR_RETURN(std::string out, runChecked(runner, {qemu, "--version"}));
  return out.substr(0, out.find('\n'));
}

std::string machineFacts(const Programs& programs, const std::string& qemu_version) {
  utsname system{};
  ::uname(&system);
  const double memory_gib = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                            static_cast<double>(::sysconf(_SC_PAGESIZE)) /
                            (1024.0 * 1024.0 * 1024.0);
  return fmt::format(
      "date:     {}\n"
      "machine:  {} CPUs ({}), {:.1f} GiB RAM, kernel {} {}\n"
      "load:     {} (load average at the start; other work on the machine adds noise)\n"
      "peer:     {} ({})\n"
      "flotilla: {}\n"
      "guest:    {}\n",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()),
      ::sysconf(_SC_NPROCESSORS_ONLN), firstLineOf("/proc/cpuinfo", "model name"), memory_gib,
      system.release, system.machine, loadAverage(), qemu_version, programs.qemu,
      programs.flotilla_vmm, programs.guest_elf);
}

std::string verdict(bool met) {
  return met ? "[met]   " : "[missed]";
}

// The migration targets: guest-observed downtime when idle and at 200 MB/s, total time and
// downtime at most QEMU's at every load, the first copy at 2 GB/s or more.
std::string migrationSummary(const MigrationResults& migration) {
  std::string text;
  auto downtimeTarget = [&](const MigrationScenario& scenario, double limit_ms) {
    const Samples& flotilla = scenario.guest_downtime.flotilla;
    const Samples& qemu = scenario.guest_downtime.qemu;
    text +=
        fmt::format("  {} guest-observed downtime <= {:.0f} ms {}: {} (QEMU {})\n",
                    verdict(!flotilla.empty() && flotilla.median() <= limit_ms), limit_ms,
                    scenario.rate_mbps <= 1 ? "idle" : "at " + scenario.name,
                    flotilla.empty() ? "no run converged" : formatFigure(flotilla.median(), "ms"),
                    qemu.empty() ? "no run converged" : formatFigure(qemu.median(), "ms"));
  };
  for (const MigrationScenario& scenario : migration.scenarios) {
    if (scenario.rate_mbps <= 1) downtimeTarget(scenario, kMigrationIdleDowntimeMs);
  }
  for (const MigrationScenario& scenario : migration.scenarios) {
    if (scenario.rate_mbps == kMigrationDowntimeRateMbps) {
      downtimeTarget(scenario, kMigrationDowntimeMs);
    }
  }
  // Per load: behind when Flotilla failed to converge more often than QEMU, or when a median
  // of total time or guest-observed downtime is above QEMU's.
  std::vector<std::string> behind;
  std::vector<std::string> unjudged;
  for (const MigrationScenario& scenario : migration.scenarios) {
    if (scenario.flotilla_not_converged > scenario.qemu_not_converged) {
      behind.push_back(fmt::format("{}: did not converge in {} of {} runs (QEMU {} of {})",
                                   scenario.name, scenario.flotilla_not_converged,
                                   scenario.flotilla_runs, scenario.qemu_not_converged,
                                   scenario.qemu_runs));
      continue;
    }
    if (scenario.total.flotilla.empty() || scenario.total.qemu.empty()) {
      if (scenario.total.flotilla.empty()) {
        unjudged.push_back(fmt::format("{} (neither converged)", scenario.name));
      }
      continue;  // QEMU never converged, Flotilla did: ahead
    }
    for (const Row* row : {&scenario.total, &scenario.guest_downtime}) {
      if (row->flotilla.median() > row->qemu.median()) {
        behind.push_back(fmt::format("{} {} {}", scenario.name, row->label, formatRatio(*row)));
      }
    }
  }
  text += fmt::format("  {} total time and guest-observed downtime <= QEMU at every load{}{}{}{}\n",
                      verdict(behind.empty()), behind.empty() ? "" : ": behind on ",
                      fmt::join(behind, "; "),
                      unjudged.empty() ? "" : "; not judged: ", fmt::join(unjudged, ", "));
  const Row& copy = migration.first_copy;
  text += fmt::format(
      "  {} first copy >= {:.0f} GB/s over loopback: {} (QEMU {})\n",
      verdict(!copy.flotilla.empty() && copy.flotilla.median() >= kMigrationFirstCopyGBps),
      kMigrationFirstCopyGBps,
      copy.flotilla.empty() ? "not measured" : formatFigure(copy.flotilla.median(), "GB/s"),
      copy.qemu.empty() ? "not measured" : formatFigure(copy.qemu.median(), "GB/s"));
  return text;
}

// The notes under a migration scenario's rows.
std::vector<std::string> migrationNotes(const MigrationScenario& scenario) {
  std::vector<std::string> notes;
  if (scenario.flotilla_not_converged > 0 || scenario.qemu_not_converged > 0) {
    notes.push_back(fmt::format(
        "no convergence within the pre-copy budget (left out of the rows): Flotilla {} of {} "
        "runs, QEMU {} of {}",
        scenario.flotilla_not_converged, scenario.flotilla_runs, scenario.qemu_not_converged,
        scenario.qemu_runs));
  }
  if (scenario.flotilla_gap_before > 0 || scenario.qemu_gap_before > 0) {
    notes.push_back(fmt::format(
        "runs whose largest guest gap came before the migration (the migration's pause was at "
        "most that): Flotilla {} of {}, QEMU {} of {}",
        scenario.flotilla_gap_before, scenario.guest_downtime.flotilla.size(),
        scenario.qemu_gap_before, scenario.guest_downtime.qemu.size()));
  }
  auto median = [](const Samples& samples) {
    return samples.empty() ? std::string("-") : formatFigure(samples.median(), "ms");
  };
  notes.push_back(fmt::format(
      "pause the VMMs report (not comparable): Flotilla {} (pause to the target's 'resumed'), "
      "QEMU {} ('downtime')",
      median(scenario.flotilla_reported_downtime_ms), median(scenario.qemu_reported_downtime_ms)));
  notes.push_back(fmt::format(
      "total time the VMMs report: Flotilla {} (when read before it exited), QEMU {} "
      "('total-time'); the guest's max_pause_us before the migration: Flotilla {}, QEMU {}",
      median(scenario.flotilla_reported_total_ms), median(scenario.qemu_reported_total_ms),
      median(scenario.flotilla_baseline_pause_ms), median(scenario.qemu_baseline_pause_ms)));
  return notes;
}

std::string summary(const StartResults* start, const SnapshotResults* snapshot,
                    const VirtioResults* virtio, const MigrationResults* migration) {
  std::string text = "targets:\n";
  if (start != nullptr) {
    const Row& row = start->start_with_socket;
    const double ms = row.flotilla.median();
    const double ratio = row.flotilla.median() / row.qemu.median();
    text += fmt::format(
        "  {} start <= {:.0f} ms and <= {:.1f}x QEMU: {} (with API socket), {:.2f}x QEMU ({})\n",
        verdict(ms <= kStartTargetMs && ratio <= kStartTargetRatio), kStartTargetMs,
        kStartTargetRatio, formatFigure(ms, "ms"), ratio, formatFigure(row.qemu.median(), "ms"));
    const double rss = start->rss.flotilla.median();
    const double private_mib = start->private_bytes.flotilla.median();
    text += fmt::format(
        "  {} VMM overhead <= {:.0f} MiB (RssAnon + RssFile): {} (QEMU {}); private (smaps): {} "
        "-> {}\n",
        verdict(rss <= kOverheadTargetMib), kOverheadTargetMib, formatFigure(rss, "MiB"),
        formatFigure(start->rss.qemu.median(), "MiB"), formatFigure(private_mib, "MiB"),
        private_mib <= kOverheadTargetMib ? "met" : "missed");
  }
  if (snapshot != nullptr) {
    const double ms = snapshot->restore_running.flotilla.median();
    text += fmt::format(
        "  {} restore (1 GiB, 256 MiB touched) <= {:.0f} ms: {} to running (QEMU {}); all "
        "memory loaded after {}\n",
        verdict(ms <= kRestoreTargetMs), kRestoreTargetMs, formatFigure(ms, "ms"),
        formatFigure(snapshot->restore_running.qemu.median(), "ms"),
        formatFigure(snapshot->restore_loaded.flotilla.median(), "ms"));
  }
  if (virtio != nullptr) {
    std::vector<std::string> behind;
    for (const Row* row : virtio->rows()) {
      if (row->flotilla.median() < row->qemu.median()) {
        behind.push_back(fmt::format("{} {}", row->label, formatRatio(*row)));
      }
    }
    text +=
        fmt::format("  {} virtio throughput >= QEMU on every row{}{}\n", verdict(behind.empty()),
                    behind.empty() ? "" : ": behind on ", fmt::join(behind, "; "));
  }
  if (migration != nullptr) text += migrationSummary(*migration);
  return text;
}

int fail(const absl::Status& status) {
  fmt::print(stderr, "vmm_bench: error: {}\n", status.message());
  return 1;
}

int run(int argc, char** argv) {
  BenchContext context;
  context.programs.flotilla_vmm = FLOTILLA_VMM;
  context.programs.guest_elf = FLOTILLA_GUEST_ELF;
  bool quick = false;
  int snapshot_iterations = 0;
  std::string only;
  CLI::App app{"Benchmarks Flotilla's VMM against QEMU on this machine (docs/benchmarks.md)"};
  app.add_option("--iterations", context.iterations,
                 "runs per VMM for start and memory (default 15)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--snapshot-iterations", snapshot_iterations,
                 "runs per VMM for snapshot/restore (default max(3, iterations/3))")
      ->check(CLI::Range(1, 1000));
  app.add_flag("--quick", quick,
               "2 runs of everything, 1 of each migration (idle and 200 MB/s only): a smoke test");
  app.add_option("--virtio-iterations", context.virtio_iterations,
                 "runs per VMM for each virtio row (default 3)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--virtio-seconds", context.virtio_seconds,
                 "seconds each virtio run measures (default 3)")
      ->check(CLI::Range(1, 600));
  app.add_option("--migration-iterations", context.migration_iterations,
                 "runs per VMM for each migration scenario (default 3)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--only", only,
                 "run one benchmark: start (start and memory), snapshot, virtio or migration")
      ->check(CLI::IsMember({"start", "snapshot", "virtio", "migration"}));
  app.add_option("--flotilla-vmm", context.programs.flotilla_vmm, "the flotilla-vmm to measure");
  app.add_option("--guest", context.programs.guest_elf, "the guest kernel both VMMs boot");
  app.add_flag("--verbose", context.verbose, "a line per run on standard error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  if (quick) {
    context.iterations = 2;
    context.virtio_iterations = 1;
    context.virtio_seconds = 1;
    context.migration_iterations = 1;
    context.quick = true;
  }
  context.snapshot_iterations = snapshot_iterations > 0   ? snapshot_iterations
                                : context.iterations <= 3 ? context.iterations
                                                          : std::max(3, context.iterations / 3);

  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    return fail(errnoStatus(errno, "both VMMs need read-write access to /dev/kvm"));
  }
  for (const std::string& file : {context.programs.flotilla_vmm, context.programs.guest_elf}) {
    if (::access(file.c_str(), R_OK) != 0) {
      return fail(errnoStatus(errno, fmt::format("{} (build it: deploy/build.sh)", file)));
    }
  }
  auto qemu = testing::findProgram("qemu-system-x86_64", "qemu-system-x86");
  if (!qemu.ok()) return fail(annotate(qemu.status(), "QEMU is the reference VMM"));
  context.programs.qemu = *qemu;
  auto version = qemuVersion(*qemu);
  if (!version.ok()) return fail(version.status());

  testing::TempDir dir;
  context.dir = &dir;
  const double load_at_start = recentLoad();
  fmt::print("Flotilla VMM vs QEMU (reference VMM): same guest, same run, alternating runs\n{}",
             machineFacts(context.programs, *version));
  fmt::print(
      "runs:     {} per VMM for start and memory (after 1 warm-up each), {} per VMM for "
      "snapshot/restore, {} of {} s per VMM for each virtio row, {} per VMM for each migration "
      "scenario\n\n",
      context.iterations, context.snapshot_iterations, context.virtio_iterations,
      context.virtio_seconds, context.migration_iterations);
  (void)std::fflush(stdout);  // the header before the progress lines on standard error

  std::vector<Section> sections;
  StartResults start;
  SnapshotResults snapshot;
  VirtioResults virtio;
  MigrationResults migration;
  const bool run_start = only.empty() || only == "start";
  const bool run_snapshot = only.empty() || only == "snapshot";
  const bool run_virtio = only.empty() || only == "virtio";
  const bool run_migration = only.empty() || only == "migration";
  if (run_start) {
    fmt::print(stderr, "vmm_bench: start and memory, {} x 4 VMM starts...\n", context.iterations);
    auto results = runStartBenchmark(context);
    if (!results.ok()) return fail(annotate(results.status(), "start benchmark"));
    start = std::move(*results);
    sections.push_back(
        {"start (idle guest, 256 MiB; spawn to the guest's first serial line on a pipe)",
         {&start.start_with_socket, &start.start_without_socket, &start.ready},
         {}});
    sections.push_back(
        {"memory overhead once the guest is ready (guest RAM, a memfd in both, "
         "excluded)",
         {&start.rss, &start.rss_anon, &start.rss_file, &start.private_bytes,
          &start.guest_resident},
         {}});
  }
  if (run_snapshot) {
    fmt::print(stderr, "vmm_bench: snapshot and restore, {} runs per VMM...\n",
               context.snapshot_iterations);
    auto results = runSnapshotBenchmark(context);
    if (!results.ok()) return fail(annotate(results.status(), "snapshot benchmark"));
    snapshot = std::move(*results);
    sections.push_back(
        {"snapshot / restore (1 GiB guest, 256 MiB touched: workload=counter counter_mib=256)",
         {&snapshot.snapshot, &snapshot.paused, &snapshot.size, &snapshot.restore_running,
          &snapshot.restore_loaded},
         {"Flotilla: Snapshot RPC (pause, write, resume, fsync); restore: new process, memory "
          "loaded lazily (userfaultfd)",
          fmt::format("  running = first Health SERVING; loaded = log line; median {:.0f} pages "
                      "faulted in on demand before that",
                      snapshot.flotilla_pages_on_demand.median()),
          "QEMU: stop, migrate to exec:cat > FILE, cont, fsync FILE; restore: -incoming "
          "exec:cat FILE, cont (loads all before running)",
          fmt::format("  QEMU reports: migration total-time {:.0f} ms, downtime {:.0f} ms "
                      "(medians; the guest was already stopped)",
                      snapshot.qemu_reported_total_ms.median(),
                      snapshot.qemu_reported_downtime_ms.median())}});
  }
  if (run_virtio) {
    fmt::print(stderr, "vmm_bench: virtio block and network, {} runs of {} s per VMM and row...\n",
               context.virtio_iterations, context.virtio_seconds);
    auto results = runVirtioBenchmark(context);
    if (!results.ok()) return fail(annotate(results.status(), "virtio benchmark"));
    virtio = std::move(*results);
    sections.push_back(
        {"virtio throughput (higher is better: a ratio above 1 means Flotilla is faster)",
         virtio.rows(),
         {"block: workload=blk-bench on one 256 MiB file (64 MiB used, in the page cache); iSCSI: "
          "the same file as a LUN of a local tgtd, both VMMs through libiscsi",
          "  QEMU: -drive format=raw (cache=writeback, aio=threads: its defaults), "
          "virtio-blk-device; Flotilla: --disk path=F (io_uring) or iscsi=URL",
          "network: workload=net on one persistent tap in a namespace; a UDP client there sends "
          "a datagram, waits for its echo, repeats",
          "  QEMU: -netdev tap (vhost=off, its default: both move frames in userspace), "
          "virtio-net-device; Flotilla: --net tap=T",
          fmt::format("guest: {} (as Linux drives virtio)", kVirtioGuestOptions)}});
  }
  if (run_migration) {
    fmt::print(stderr, "vmm_bench: live migration, {} runs per VMM and scenario...\n",
               context.migration_iterations);
    auto results = runMigrationBenchmark(context);
    if (!results.ok()) return fail(annotate(results.status(), "migration benchmark"));
    migration = std::move(*results);
    for (const MigrationScenario& scenario : migration.scenarios) {
      sections.push_back(
          {fmt::format("live migration, {}: 1 GiB guest, {}", scenario.name, scenario.cmdline),
           scenario.rows(), migrationNotes(scenario)});
    }
    sections.push_back(
        {"live migration: first copy throughput (higher is better: above 1, Flotilla is faster)",
         {&migration.first_copy},
         {fmt::format("both VMMs over loopback: downtime limit {} ms, no bandwidth limit (QEMU "
                      "max-bandwidth 1 TiB/s), no auto-converge; a run still in pre-copy after "
                      "{} s is cancelled and counted as not converged",
                      migration.downtime_limit_ms, migration.precopy_budget_s),
          "total time: migrate command to the first poll (every 5 ms) that saw it complete; "
          "Flotilla: MigrateSend to phase 'completed' (target resumed the guest) or the "
          "source's 'migrated to' log line; QEMU: 'migrate' to query-migrate 'completed' (the "
          "source sent everything)",
          "bytes: Flotilla every frame sent; QEMU ram 'transferred'. rounds: Flotilla "
          "MigrateStatus.round (dirty-log rounds after the first copy); QEMU ram "
          "'dirty-sync-count' (bitmap syncs, its setup and final syncs included)",
          "downtime the guest saw: max_pause_us of the migrated guest's first report, the "
          "longest gap between its TSC readings in its whole run (host noise and pre-copy "
          "stalls included); Flotilla's target restores the TSC saved with the device state, "
          "so its transit and load do not show (docs/benchmarks.md)",
          "first copy: Flotilla MigrateStatus.bandwidth_bytes after round 0 (it sends only "
          "populated pages); QEMU growth of ram 'transferred' between its first-pass polls "
          "that saw 32 to 224 MiB sent (the dirty region; its zero pages left out)",
          "QEMU's guest RAM is anonymous (memory-backend-ram) here, not a memfd: its first "
          "pass reads every page, which allocates a memfd's holes (docs/benchmarks.md)"}});
  }
  fmt::print(
      "median and p90 of the runs per VMM; Flotilla/QEMU is the ratio of the medians (below 1:\n"
      "Flotilla is faster or smaller, except where a section says higher is better)\n\n{}\n{}",
      formatTable(sections),
      summary(run_start ? &start : nullptr, run_snapshot ? &snapshot : nullptr,
              run_virtio ? &virtio : nullptr, run_migration ? &migration : nullptr));
  fmt::print("load:     {} (load average at the end)\n", loadAverage());
  // Under contention the ratios are not trustworthy either: the VMM that takes longer to
  // start collects more of the other work's delays.
  const double cpus = static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
  if (std::max(load_at_start, recentLoad()) > cpus) {
    fmt::print(
        "warning:  the load average exceeded the {} CPUs during the run: other work competed "
        "with the VMMs, figures and ratios are noisy; run again on a quiet machine\n",
        cpus);
  }
  return 0;
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  return flotilla::bench::run(argc, argv);
}
