// Live migration of a 1 GiB guest from one VMM process to another over loopback, Flotilla's
// VMM against QEMU 7.2, at several loads of the test guest's `dirty` workload: almost idle,
// then 256 MiB rewritten at 50, 200 and 800 MB/s. Per run: total time, bytes sent, rounds,
// and the pause the guest itself saw (its max_pause_us, read on the target afterwards). A run
// whose pre-copy does not converge within the budget is counted as such, never an error.
//
// Flotilla: MigrateSend on the source's API socket to a `flotilla-vmm --incoming`, then
// MigrateStatus every 5 ms. QEMU: `migrate` over QMP to a QEMU started with -incoming, then
// query-migrate every 5 ms. Both get the same downtime limit and no bandwidth limit. QEMU's
// guest RAM is anonymous memory here, not a memfd as in the other benchmarks (GuestSpec).
// A scenario named "..., N streams" (full run only) migrates over N TCP connections: Flotilla
// with MigrateSendRequest.streams, QEMU with its multifd capability and N channels; its first
// copy is left out of the first-copy row (which stays the one-stream figure) and shows in the
// --verbose lines.
#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/numbers.h"
#include "bench/benchmarks.h"
#include "bench/flotilla_api.h"
#include "bench/qmp.h"
#include "common/clock.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {
namespace {

// The limit both VMMs get: the target at 200 MB/s, so that neither may plan a longer
// pause than the one the target allows.
constexpr uint32_t kDowntimeLimitMs = 20;
// Pre-copy time after which a migration counts as not converging (Flotilla's timeout_s,
// QEMU's migrate_cancel): the same for both, and no round limit for either.
constexpr int kPrecopyBudgetS = 20;
constexpr int kQuickPrecopyBudgetS = 10;
constexpr uint32_t kNoRoundLimit = 1000000;
constexpr char kGuestMemory[] = "1G";
constexpr uint32_t kDirtyMib = 256;
constexpr char kToken[] = "vmm-bench-migration-token";
constexpr absl::Duration kPollInterval = absl::Milliseconds(5);
constexpr absl::Duration kDirtyingTimeout = absl::Seconds(60);
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kGuestLineTimeout = absl::Seconds(15);
// Beyond the pre-copy budget: the most the switchover, or a cancel, may take.
constexpr absl::Duration kEndGrace = absl::Seconds(30);
// QEMU's first-copy throughput: over the polls of its first pass that saw between these many
// bytes sent, while it sends the dirty region (guest RAM from 64 MiB on; QEMU walks RAM in
// address order, and the zero pages before and after the region cost time but few bytes),
// over a window of at least kMinThroughputWindow.
constexpr uint64_t kThroughputFromBytes = uint64_t{32} << 20;
constexpr uint64_t kThroughputToBytes = uint64_t{224} << 20;
constexpr absl::Duration kMinThroughputWindow = absl::Milliseconds(20);
constexpr double kMiB = 1024.0 * 1024.0;
// The streams of the several-streams scenario (Flotilla's streams, QEMU's multifd channels).
constexpr uint32_t kStreams = 4;

std::vector<MigrationScenario> scenarios(bool quick) {
  std::vector<MigrationScenario> list;
  auto add = [&list](std::string name, uint32_t dirty_mib, uint32_t rate_mbps) {
    MigrationScenario& scenario = list.emplace_back();
    scenario.name = std::move(name);
    scenario.dirty_mib = dirty_mib;
    scenario.rate_mbps = rate_mbps;
    scenario.cmdline =
        fmt::format("workload=dirty dirty_mib={} rate_mbps={}", dirty_mib, rate_mbps);
  };
  // "Idle" runs the dirty workload at a trickle, so that the guest's timestamps exist to
  // show the pause (workload=idle reports nothing).
  add("idle", 1, 1);
  for (uint32_t rate : quick ? std::vector<uint32_t>{200} : std::vector<uint32_t>{50, 200, 800}) {
    add(fmt::format("{} MB/s", rate), kDirtyMib, rate);
  }
  if (!quick) add(fmt::format("800 MB/s, {} streams", kStreams), kDirtyMib, 800);
  return list;
}

struct DirtyLine {
  uint64_t pass = 0;
  uint64_t max_pause_us = 0;
};

// A whole guest line "flotilla-guest: dirty pass=N max_pause_us=M"; nullopt for other lines
// (also for the end of a line whose start the source printed before the switchover).
std::optional<DirtyLine> dirtyLine(const std::string& line) {
  static constexpr std::string_view kPrefix = "flotilla-guest: dirty pass=";
  static constexpr std::string_view kPause = " max_pause_us=";
  const size_t at = line.find(kPrefix);
  if (at == std::string::npos) return std::nullopt;
  const size_t pause = line.find(kPause, at);
  if (pause == std::string::npos) return std::nullopt;
  DirtyLine parsed;
  if (!absl::SimpleAtoi(line.substr(at + kPrefix.size(), pause - at - kPrefix.size()),
                        &parsed.pass) ||
      !absl::SimpleAtoi(line.substr(pause + kPause.size()), &parsed.max_pause_us)) {
    return std::nullopt;
  }
  return parsed;
}

double microsToMillis(uint64_t us) {
  return static_cast<double>(us) / 1000.0;
}

// Waits until the source guest reported twice and has rewritten its whole region at least
// once (pass >= 1): every page then holds data, so that the first copy carries all of it in
// both VMMs (both leave out pages that are still zero).
absl::Status waitDirtying(LaunchedVmm& vmm) {
  size_t reports = 0;
  auto found = vmm.console().waitFor(
      [&reports](const std::string& line) {
        auto dirty = dirtyLine(line);
        return dirty && ++reports >= 2 && dirty->pass >= 1;
      },
      kDirtyingTimeout);
  if (!found.ok()) {
    return vmm.explain(annotate(found.status(), "waiting for the guest to dirty its region"));
  }
  return absl::OkStatus();
}

// The guest's max_pause_us in its last line so far, in ms: its pauses before the migration.
double lastPauseMs(LaunchedVmm& vmm) {
  (void)vmm.console().pump(absl::ZeroDuration());
  const auto& lines = vmm.console().lines();
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    if (auto dirty = dirtyLine(line->text)) return microsToMillis(dirty->max_pause_us);
  }
  return 0;
}

// The migrated guest's first dirty line on the target: its max_pause_us (the longest gap the
// guest saw in its whole run, the migration included), in ms. The guest must have continued:
// no boot or ready line (a reboot), no error line.
absl::StatusOr<double> guestPauseAfter(LaunchedVmm& target) {
  auto found = target.console().waitFor(
      [](const std::string& line) { return dirtyLine(line).has_value() || isGuestError(line); },
      kGuestLineTimeout);
  if (!found.ok()) {
    return target.explain(annotate(found.status(), "the migrated guest did not report"));
  }
  for (size_t i = 0; i <= *found; ++i) {
    const std::string& text = target.console().lines()[i].text;
    if (isGuestError(text) || text.find("flotilla-guest: boot") != std::string::npos ||
        text.find("flotilla-guest: ready") != std::string::npos) {
      return target.explain(absl::DataLossError(
          fmt::format("the migrated guest did not continue where it was: '{}'", text)));
    }
  }
  return microsToMillis(dirtyLine(target.console().lines()[*found].text)->max_pause_us);
}

// What one migration gave.
struct RunOutcome {
  bool converged = false;
  std::string why_not;  // when it did not converge
  double total_ms = 0;
  double bytes = 0;
  double rounds = 0;
  double guest_downtime_ms = 0;
  double baseline_pause_ms = 0;
  double reported_downtime_ms = 0;
  std::optional<double> reported_total_ms;
  std::optional<double> first_copy_bytes_per_s;
};

// The number right before `suffix` in `line` ("... 3 rounds, ..."); nullopt without one.
std::optional<uint64_t> numberBefore(const std::string& line, std::string_view suffix) {
  const size_t end = line.find(suffix);
  if (end == std::string::npos || end == 0) return std::nullopt;
  const size_t start = line.rfind(' ', end - 1);
  if (start == std::string::npos) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(line.substr(start + 1, end - start - 1), &value)) {
    return std::nullopt;
  }
  return value;
}

// The TCP streams a scenario migrates over: N for a name ending in ", N streams", else 1.
uint32_t streamsOf(const MigrationScenario& scenario) {
  const auto streams = numberBefore(scenario.name, " streams");
  return streams ? static_cast<uint32_t>(*streams) : 1;
}

// The source's log line "migrated to HOST:PORT: N rounds, B bytes sent, paused D" (written
// when the target resumed the guest) into `outcome`.
constexpr std::string_view kPaused = " bytes sent, paused ";

bool isMigratedLine(const std::string& line) {
  return line.find("migrated to ") != std::string::npos && line.find(kPaused) != std::string::npos;
}

absl::Status readMigratedLine(const std::string& line, RunOutcome& outcome) {
  auto rounds = numberBefore(line, " rounds, ");
  auto bytes = numberBefore(line, kPaused);
  absl::Duration paused;
  const size_t at = line.find(kPaused);
  if (!rounds || !bytes || at == std::string::npos ||
      !absl::ParseDuration(line.substr(at + kPaused.size()), &paused)) {
    return absl::InternalError(
        fmt::format("cannot read the source's migration summary line '{}'", line));
  }
  outcome.rounds = static_cast<double>(*rounds);
  outcome.bytes = static_cast<double>(*bytes);
  outcome.reported_downtime_ms = absl::ToDoubleMilliseconds(paused);
  return absl::OkStatus();
}

absl::StatusOr<RunOutcome> flotillaRun(const BenchContext& context,
                                       const MigrationScenario& scenario, const std::string& tag,
                                       int budget_s) {
  Clock& clock = systemClock();
  const std::string source_socket = context.dir->file(fmt::format("mig-fl-src-{}.sock", tag));
  const std::string target_socket = context.dir->file(fmt::format("mig-fl-dst-{}.sock", tag));
  const GuestSpec guest{kGuestMemory, scenario.cmdline};
  ASSIGN_OR_RETURN(auto source,
                   LaunchedVmm::spawn("Flotilla (migration source)",
                                      flotillaBootCommand(context.programs, guest, source_socket)));
  RETURN_IF_ERROR(waitDirtying(*source));
  ASSIGN_OR_RETURN(uint16_t port, testing::pickFreePort());
  ASSIGN_OR_RETURN(auto target,
                   LaunchedVmm::spawn("Flotilla (migration target)",
                                      {context.programs.flotilla_vmm, "--incoming",
                                       fmt::format("tcp:127.0.0.1:{}", port), "--migration-token",
                                       kToken, "--memory", kGuestMemory, "--serial", "stdout",
                                       "--api-socket", target_socket}));
  auto listening = target->log().waitForText("waiting for an incoming migration", kStartTimeout);
  if (!listening.ok()) return target->explain(listening.status());
  ASSIGN_OR_RETURN(auto api, connectFlotillaApi(source_socket, *source));

  RunOutcome outcome;
  outcome.baseline_pause_ms = lastPauseMs(*source);
  flotilla::v1::MigrateSendRequest request;
  request.set_address(fmt::format("127.0.0.1:{}", port));
  request.set_token(kToken);
  request.set_downtime_limit_ms(kDowntimeLimitMs);
  request.set_max_rounds(kNoRoundLimit);
  request.set_timeout_s(static_cast<uint32_t>(budget_s));
  request.set_streams(streamsOf(scenario));
  const absl::Duration start = clock.monotonicNow();
  {
    grpc::ClientContext call;
    call.set_deadline(deadlineAfter(kStartTimeout));
    flotilla::v1::MigrateSendResponse response;
    grpc::Status sent = api->MigrateSend(&call, request, &response);
    if (!sent.ok()) {
      return source->explain(absl::InternalError(
          fmt::format("MigrateSend to {} failed: {}", request.address(), sent.error_message())));
    }
  }

  // Until the phase is final. A source whose migration completed exits, possibly between two
  // polls; its log line "migrated to ..." (read with the time it came) says it completed.
  const absl::Duration give_up = start + absl::Seconds(budget_s) + kEndGrace;
  flotilla::v1::MigrationStatus last;
  std::optional<absl::Duration> completed_at;
  std::optional<size_t> migrated_line;
  auto findMigrated = [&source]() -> std::optional<size_t> {
    const auto& lines = source->log().lines();
    for (size_t i = 0; i < lines.size(); ++i) {
      if (isMigratedLine(lines[i].text)) return i;
    }
    return std::nullopt;
  };
  while (true) {
    flotilla::v1::MigrationStatus status;
    grpc::ClientContext call;
    call.set_deadline(deadlineAfter(absl::Seconds(2)));
    const bool answered =
        api->MigrateStatus(&call, flotilla::v1::MigrateStatusRequest(), &status).ok();
    const absl::Duration now = clock.monotonicNow();
    if (answered) {
      last = status;
      // Right after round 0 (all data the guest holds), the bandwidth is round 0's.
      if (status.round() == 1 && status.bandwidth_bytes() > 0 && !outcome.first_copy_bytes_per_s) {
        outcome.first_copy_bytes_per_s = status.bandwidth_bytes();
      }
      if (status.phase() == "completed") {
        completed_at = now;
        break;
      }
      if (status.phase() == "failed" || status.phase() == "unknown") break;
    }
    if (source->log().closed()) {
      clock.sleepFor(kPollInterval);
    } else {
      RETURN_IF_ERROR(source->log().pump(kPollInterval));
    }
    if ((migrated_line = findMigrated())) {
      completed_at = source->log().lines()[*migrated_line].read;
      break;
    }
    if (source->exited() && source->log().closed()) {
      return source->explain(absl::AbortedError("the source VMM exited during the migration"));
    }
    if (now >= give_up) {
      return source->explain(absl::DeadlineExceededError(fmt::format(
          "the migration neither completed nor failed within {} s of its start; last phase '{}'",
          absl::ToInt64Seconds(give_up - start), last.phase())));
    }
  }

  if (!completed_at) {
    if (last.phase() == "failed" && last.error().find("does not converge") != std::string::npos) {
      outcome.why_not = last.error();
      return outcome;
    }
    return source->explain(absl::InternalError(
        fmt::format("the migration ended in phase '{}': {}", last.phase(), last.error())));
  }
  outcome.converged = true;
  outcome.total_ms = absl::ToDoubleMilliseconds(*completed_at - start);
  if (last.phase() == "completed" && last.total_time_us() > 0) {
    outcome.reported_total_ms = microsToMillis(last.total_time_us());
  }
  // The summary line carries the final figures (MigrateStatus's bytes leave out the device
  // state until the very end, and the source may be gone before that is readable).
  if (!migrated_line) {
    auto found = source->log().waitFor(isMigratedLine, kStartTimeout);
    if (!found.ok()) {
      return source->explain(annotate(found.status(), "waiting for the 'migrated to' line"));
    }
    migrated_line = *found;
  }
  RETURN_IF_ERROR(
      source->explain(readMigratedLine(source->log().lines()[*migrated_line].text, outcome)));
  auto exit = source->process().wait(kStartTimeout);
  if (!exit.ok() || !exit->success()) {
    return source->explain(absl::InternalError("the source VMM did not exit with status 0"));
  }
  ASSIGN_OR_RETURN(outcome.guest_downtime_ms, guestPauseAfter(*target));
  return outcome;
}

// query-migrate's ram figure `key` (0 when absent).
uint64_t ramFigure(const nlohmann::json& info, const char* key) {
  if (!info.contains("ram") || !info["ram"].is_object()) return 0;
  return info["ram"].value(key, uint64_t{0});
}

absl::StatusOr<RunOutcome> qemuRun(const BenchContext& context, const MigrationScenario& scenario,
                                   const std::string& tag, int budget_s) {
  Clock& clock = systemClock();
  const std::string source_socket = context.dir->file(fmt::format("mig-qemu-src-{}.sock", tag));
  const std::string target_socket = context.dir->file(fmt::format("mig-qemu-dst-{}.sock", tag));
  GuestSpec guest{kGuestMemory, scenario.cmdline};
  guest.qemu_anonymous_memory = true;  // see GuestSpec: a memfd would cost QEMU seconds
  ASSIGN_OR_RETURN(auto source,
                   LaunchedVmm::spawn("QEMU (migration source)",
                                      qemuCommand(context.programs, guest, source_socket, "")));
  RETURN_IF_ERROR(waitDirtying(*source));
  ASSIGN_OR_RETURN(uint16_t port, testing::pickFreePort());
  const std::string uri = fmt::format("tcp:127.0.0.1:{}", port);
  const uint32_t streams = streamsOf(scenario);
  // Multifd must be on at the target before anything connects: it then starts with
  // `-incoming defer` and listens on `migrate-incoming` (QEMU's documented way).
  ASSIGN_OR_RETURN(auto target,
                   LaunchedVmm::spawn("QEMU (migration target)",
                                      qemuCommand(context.programs, guest, target_socket,
                                                  streams > 1 ? "defer" : uri)));
  // QEMU listens for the migration before its main loop runs, and greets on QMP only from
  // its main loop: once QMP answers, the target listens.
  auto target_qmp = QmpClient::connect(target_socket, kStartTimeout, target->process().pidfd());
  if (!target_qmp.ok()) return target->explain(target_qmp.status());
  auto qmp = QmpClient::connect(source_socket, kStartTimeout, source->process().pidfd());
  if (!qmp.ok()) return source->explain(qmp.status());
  if (streams > 1) {
    const nlohmann::json multifd = {
        {"capabilities", nlohmann::json::array({{{"capability", "multifd"}, {"state", true}}})}};
    const nlohmann::json channels = {{"multifd-channels", streams}};
    for (auto [vmm, client] :
         {std::pair{target.get(), &*target_qmp}, std::pair{source.get(), &*qmp}}) {
      RETURN_IF_ERROR(vmm->explain(client->execute("migrate-set-capabilities", multifd).status()));
      RETURN_IF_ERROR(vmm->explain(client->execute("migrate-set-parameters", channels).status()));
    }
    RETURN_IF_ERROR(
        target->explain(target_qmp->execute("migrate-incoming", {{"uri", uri}}).status()));
  }
  // QEMU 7.2 throttles migration to 128 MiB/s by default: "unlimited" is a huge limit.
  RETURN_IF_ERROR(
      source->explain(qmp->execute("migrate-set-parameters", {{"downtime-limit", kDowntimeLimitMs},
                                                              {"max-bandwidth", uint64_t{1} << 40}})
                          .status()));

  RunOutcome outcome;
  outcome.baseline_pause_ms = lastPauseMs(*source);
  const absl::Duration start = clock.monotonicNow();
  RETURN_IF_ERROR(source->explain(qmp->execute("migrate", {{"uri", uri}}).status()));
  // The first and last poll of the first pass (dirty-sync-count 1) within the throughput
  // window, as (time, bytes).
  std::optional<std::pair<absl::Duration, uint64_t>> pass_start;
  std::optional<std::pair<absl::Duration, uint64_t>> pass_end;
  bool cancelled = false;
  nlohmann::json info;
  absl::Duration completed_at;
  while (true) {
    auto polled = qmp->execute("query-migrate");
    if (!polled.ok()) return source->explain(polled.status());
    info = std::move(*polled);
    const absl::Duration now = clock.monotonicNow();
    const std::string status = info.value("status", "");
    if (status == "completed") {
      completed_at = now;
      break;
    }
    if (status == "cancelled" && cancelled) {
      outcome.why_not =
          fmt::format("pre-copy did not converge within {} s (migrate_cancel)", budget_s);
      return outcome;
    }
    if (status == "failed" || status == "cancelled") {
      return source->explain(absl::InternalError(fmt::format(
          "QEMU's migration to {} {}: {}", uri, status, info.value("error-desc", info.dump()))));
    }
    const uint64_t transferred = ramFigure(info, "transferred");
    if (status == "active" && ramFigure(info, "dirty-sync-count") == 1 &&
        transferred >= kThroughputFromBytes && transferred <= kThroughputToBytes) {
      if (!pass_start) pass_start = {now, transferred};
      pass_end = {now, transferred};
    }
    if (!cancelled && now >= start + absl::Seconds(budget_s)) {
      RETURN_IF_ERROR(source->explain(qmp->execute("migrate_cancel").status()));
      cancelled = true;  // it may still complete, if the switchover already began
    }
    if (now >= start + absl::Seconds(budget_s) + kEndGrace) {
      return source->explain(absl::DeadlineExceededError(
          fmt::format("QEMU's migration did not end after migrate_cancel: {}", info.dump())));
    }
    clock.sleepFor(kPollInterval);
  }
  outcome.converged = true;
  outcome.total_ms = absl::ToDoubleMilliseconds(completed_at - start);
  outcome.bytes = static_cast<double>(ramFigure(info, "transferred"));
  outcome.rounds = static_cast<double>(ramFigure(info, "dirty-sync-count"));
  outcome.reported_downtime_ms = info.value("downtime", 0.0);
  outcome.reported_total_ms = info.value("total-time", 0.0);
  if (pass_start && pass_end && pass_end->first - pass_start->first >= kMinThroughputWindow) {
    outcome.first_copy_bytes_per_s = static_cast<double>(pass_end->second - pass_start->second) /
                                     absl::ToDoubleSeconds(pass_end->first - pass_start->first);
  }
  ASSIGN_OR_RETURN(outcome.guest_downtime_ms, guestPauseAfter(*target));
  return outcome;
}

void record(const RunOutcome& outcome, bool flotilla, MigrationScenario& scenario,
            Row& first_copy) {
  auto samples = [flotilla](Row& row) -> Samples& { return flotilla ? row.flotilla : row.qemu; };
  ++(flotilla ? scenario.flotilla_runs : scenario.qemu_runs);
  (flotilla ? scenario.flotilla_baseline_pause_ms : scenario.qemu_baseline_pause_ms)
      .add(outcome.baseline_pause_ms);
  if (!outcome.converged) {
    ++(flotilla ? scenario.flotilla_not_converged : scenario.qemu_not_converged);
    return;
  }
  samples(scenario.total).add(outcome.total_ms);
  samples(scenario.bytes).add(outcome.bytes / kMiB);
  samples(scenario.rounds).add(outcome.rounds);
  samples(scenario.guest_downtime).add(outcome.guest_downtime_ms);
  if (outcome.guest_downtime_ms <= outcome.baseline_pause_ms) {
    ++(flotilla ? scenario.flotilla_gap_before : scenario.qemu_gap_before);
  }
  (flotilla ? scenario.flotilla_reported_downtime_ms : scenario.qemu_reported_downtime_ms)
      .add(outcome.reported_downtime_ms);
  if (outcome.reported_total_ms) {
    (flotilla ? scenario.flotilla_reported_total_ms : scenario.qemu_reported_total_ms)
        .add(*outcome.reported_total_ms);
  }
  if (scenario.dirty_mib >= kDirtyMib && streamsOf(scenario) == 1 &&
      outcome.first_copy_bytes_per_s) {
    samples(first_copy).add(*outcome.first_copy_bytes_per_s / 1e9);
  }
}

std::string describe(const RunOutcome& outcome) {
  if (!outcome.converged) return "did not converge: " + outcome.why_not;
  return fmt::format(
      "{:.1f} ms, {:.1f} MiB, {} rounds, guest saw {:.2f} ms (before: {:.2f} ms), VMM reports "
      "{:.2f} ms, first copy {}",
      outcome.total_ms, outcome.bytes / kMiB, outcome.rounds, outcome.guest_downtime_ms,
      outcome.baseline_pause_ms, outcome.reported_downtime_ms,
      outcome.first_copy_bytes_per_s
          ? fmt::format("{:.2f} GB/s", *outcome.first_copy_bytes_per_s / 1e9)
          : std::string("-"));
}

}  // namespace

absl::StatusOr<MigrationResults> runMigrationBenchmark(const BenchContext& context) {
  MigrationResults results;
  results.downtime_limit_ms = kDowntimeLimitMs;
  results.precopy_budget_s = context.quick ? kQuickPrecopyBudgetS : kPrecopyBudgetS;
  results.scenarios = scenarios(context.quick);
  for (int iteration = 0; iteration < context.migration_iterations; ++iteration) {
    for (size_t index = 0; index < results.scenarios.size(); ++index) {
      MigrationScenario& scenario = results.scenarios[index];
      const std::string tag = fmt::format("{}-{}", index, iteration);
      // Alternate which VMM goes first, across scenarios and iterations.
      const bool flotilla_first = (static_cast<size_t>(iteration) + index) % 2 == 0;
      for (bool flotilla : {flotilla_first, !flotilla_first}) {
        absl::StatusOr<RunOutcome> outcome =
            flotilla ? flotillaRun(context, scenario, tag, results.precopy_budget_s)
                     : qemuRun(context, scenario, tag, results.precopy_budget_s);
        if (!outcome.ok()) {
          return annotate(
              outcome.status(),
              fmt::format("{} migration, {}", flotilla ? "Flotilla" : "QEMU", scenario.name));
        }
        if (context.verbose) {
          fmt::print(stderr, "  {} {}: {}\n", flotilla ? "Flotilla" : "QEMU", scenario.name,
                     describe(*outcome));
        }
        record(*outcome, flotilla, scenario, results.first_copy);
      }
    }
  }
  return results;
}

}  // namespace flotilla::bench
