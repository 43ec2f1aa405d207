// flotilla-udp-probe: probes several UDP echo targets at once (a sequence-numbered datagram to
// each every --interval) until SIGINT/SIGTERM, --duration or --count, then prints per target
// the probes sent, received and lost and the longest gap between replies (docs/demo.md).
// Exit status: 0 when every target answered, 1 when one never did (or the JSON file could not
// be written), 2 on bad usage or when probing could not start.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/probe/udp_prober.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "common/units.h"
#include "fmt/format.h"

namespace flotilla::probe {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitSilentTarget = 1;
constexpr int kExitUsage = 2;

int fail(const absl::Status& status) {
  std::fprintf(stderr, "flotilla-udp-probe: %s\n", std::string(status.message()).c_str());
  return kExitUsage;
}

// SIGINT and SIGTERM as a readable fd. Their dispositions are reset first: a program started
// in the background by a non-interactive shell inherits SIGINT ignored, and an ignored signal
// is never queued to a signalfd.
absl::StatusOr<UniqueFd> stopSignals() {
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
    return errnoStatus(errno, "blocking SIGINT and SIGTERM");
  }
  UniqueFd fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd.valid()) return errnoStatus(errno, "creating a signalfd for SIGINT and SIGTERM");
  return fd;
}

int run(int argc, char** argv) {
  CLI::App app{
      "Probes UDP echo targets (port 7 by default) with a sequence-numbered datagram each every "
      "--interval until SIGINT/SIGTERM, --duration or --count; then prints, per target, the "
      "probes sent, received and lost and the longest time without a reply.",
      "flotilla-udp-probe"};
  std::vector<std::string> target_texts;
  std::string interval = "1ms";
  std::string duration = "0";
  std::string linger = "200ms";
  uint64_t count = 0;
  size_t size = 64;
  std::string json_file;
  bool quiet = false;
  app.add_option("targets", target_texts, "[NAME=]IPV4[:PORT], e.g. vm-1=10.78.0.11")->required();
  app.add_option("--interval", interval, "time between two probes to one target")
      ->capture_default_str();
  app.add_option("--duration", duration, "stop after this long (0: at SIGINT/SIGTERM)")
      ->capture_default_str();
  app.add_option("--count", count, "stop after this many probes per target (0: no limit)")
      ->capture_default_str();
  app.add_option("--linger", linger, "after the last probe, wait this long for late replies")
      ->capture_default_str();
  app.add_option("--size", size, "UDP payload bytes per probe (40..1400)")->capture_default_str();
  app.add_option("--json", json_file, "also write the report as JSON to this file");
  app.add_flag("--quiet", quiet, "print no table (with --json)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);
    return status == 0 ? kExitOk : kExitUsage;
  }

  ProbeOptions options;
  options.count = count;
  options.payload_size = size;
  absl::StatusOr<absl::Duration> parsed = parseDuration(interval);
  if (!parsed.ok()) return fail(annotate(parsed.status(), "--interval"));
  options.interval = *parsed;
  parsed = parseDuration(duration);
  if (!parsed.ok()) return fail(annotate(parsed.status(), "--duration"));
  options.duration = *parsed;
  parsed = parseDuration(linger);
  if (!parsed.ok()) return fail(annotate(parsed.status(), "--linger"));
  options.linger = *parsed;
  if (absl::Status valid = validateProbeOptions(options); !valid.ok()) return fail(valid);

  std::vector<ProbeTarget> targets;
  for (const std::string& text : target_texts) {
    absl::StatusOr<ProbeTarget> target = parseProbeTarget(text);
    if (!target.ok()) return fail(target.status());
    targets.push_back(*target);
  }
  absl::StatusOr<UniqueFd> stop = stopSignals();
  if (!stop.ok()) return fail(stop.status());

  UdpProber prober(targets, options);
  absl::StatusOr<ProbeReport> report = prober.run(stop->get(), [&] {
    std::fprintf(stderr, "flotilla-udp-probe: probing %zu target%s every %s\n", targets.size(),
                 targets.size() == 1 ? "" : "s", absl::FormatDuration(options.interval).c_str());
  });
  if (!report.ok()) return fail(report.status());

  int status = report->allAnswered() ? kExitOk : kExitSilentTarget;
  if (!quiet) std::fputs(formatReportText(*report).c_str(), stdout);
  std::fflush(stdout);
  if (!json_file.empty()) {
    std::ofstream out(json_file, std::ios::trunc);
    out << formatReportJson(*report);
    out.close();
    if (!out) {
      std::fprintf(stderr, "flotilla-udp-probe: cannot write the JSON report to %s\n",
                   json_file.c_str());
      status = kExitSilentTarget;
    }
  }
  for (const TargetReport& t : report->targets) {
    if (!t.answered()) {
      std::fprintf(stderr, "flotilla-udp-probe: %s (%s:%u) never answered\n", t.target.name.c_str(),
                   t.target.address.c_str(), t.target.port);
    }
  }
  return status;
}

}  // namespace
}  // namespace flotilla::probe

int main(int argc, char** argv) {
  return flotilla::probe::run(argc, argv);
}
