// vmm_bench: Flotilla's VMM against QEMU (the reference VMM), same guest file, same run, runs
// alternating between them: start time, memory overhead, snapshot and restore, virtio block
// and network throughput. Prints the
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

std::string summary(const StartResults* start, const SnapshotResults* snapshot,
                    const VirtioResults* virtio) {
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
  app.add_flag("--quick", quick, "2 runs of everything (a smoke test; figures are rough)");
  app.add_option("--virtio-iterations", context.virtio_iterations,
                 "runs per VMM for each virtio row (default 3)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--virtio-seconds", context.virtio_seconds,
                 "seconds each virtio run measures (default 3)")
      ->check(CLI::Range(1, 600));
  app.add_option("--only", only, "run one benchmark: start (start and memory), snapshot or virtio")
      ->check(CLI::IsMember({"start", "snapshot", "virtio"}));
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
      "snapshot/restore, {} of {} s per VMM for each virtio row\n\n",
      context.iterations, context.snapshot_iterations, context.virtio_iterations,
      context.virtio_seconds);
  (void)std::fflush(stdout);  // the header before the progress lines on standard error

  std::vector<Section> sections;
  StartResults start;
  SnapshotResults snapshot;
  VirtioResults virtio;
  const bool run_start = only.empty() || only == "start";
  const bool run_snapshot = only.empty() || only == "snapshot";
  const bool run_virtio = only.empty() || only == "virtio";
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
  fmt::print(
      "median and p90 of the runs per VMM; Flotilla/QEMU is the ratio of the medians (below 1:\n"
      "Flotilla is faster or smaller, except where a section says higher is better)\n\n{}\n{}",
      formatTable(sections),
      summary(run_start ? &start : nullptr, run_snapshot ? &snapshot : nullptr,
              run_virtio ? &virtio : nullptr));
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
