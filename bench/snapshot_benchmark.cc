// Snapshot and restore of a 1 GiB guest that touched 256 MiB (the counter workload), in both
// VMMs, each restored guest checked to keep counting (a restore that did not work is an error,
// never a figure).
//
// Flotilla: the Snapshot RPC (pause, write, resume, fsync); restore is a new process with
// --restore, which loads guest memory lazily (userfaultfd): "running" is its first Health
// reply SERVING, "all memory loaded" its log line saying so.
// QEMU: the same as libvirt's save to a file: stop, migrate to `exec:cat > FILE`, cont, then
// fsync the file; restore is a new QEMU with -incoming "exec:cat FILE", which loads all
// memory before the guest runs, then cont.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "bench/benchmarks.h"
#include "bench/flotilla_api.h"
#include "bench/qmp.h"
#include "common/clock.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "fmt/format.h"
#include "grpcpp/create_channel.h"

namespace flotilla::bench {
namespace {

constexpr uint64_t kTouchedMib = 256;
constexpr absl::Duration kPassesTimeout = absl::Seconds(60);
constexpr absl::Duration kSnapshotTimeout = absl::Seconds(120);
constexpr absl::Duration kRestoreTimeout = absl::Seconds(120);
constexpr absl::Duration kContinueTimeout = absl::Seconds(30);
constexpr absl::Duration kPollInterval = absl::Milliseconds(1);
constexpr double kMiB = 1024.0 * 1024.0;

// The guest both VMMs snapshot: 1 GiB, of which the counter workload keeps 256 MiB busy.
GuestSpec counterGuest() {
  return {"1G", fmt::format("workload=counter counter_mib={}", kTouchedMib)};
}

double millisSince(absl::Duration start) {
  return absl::ToDoubleMilliseconds(systemClock().monotonicNow() - start);
}

// Waits for the source guest's second "counter pass=" line (memory is touched and it counts)
// and returns the last pass it reported so far.
absl::StatusOr<uint64_t> waitCounting(LaunchedVmm& vmm) {
  size_t seen = 0;
  auto second = vmm.console().waitFor(
      [&seen](const std::string& line) { return counterPass(line) && ++seen == 2; },
      kPassesTimeout);
  if (!second.ok()) return vmm.explain(annotate(second.status(), "waiting for 2 counter passes"));
  RETURN_IF_ERROR(vmm.console().pump(absl::ZeroDuration()));  // lines that came since
  uint64_t last = 0;
  for (const PipeLines::Line& line : vmm.console().lines()) {
    last = std::max(last, counterPass(line.text).value_or(0));
  }
  return last;
}

// The restored guest must report a pass after `last_pass` (it continued, it did not reboot:
// no "ready" line) and no error (every page it checks holds the value it expects).
absl::Status checkContinues(LaunchedVmm& vmm, uint64_t last_pass) {
  auto next = vmm.console().waitFor(
      [last_pass](const std::string& line) {
        auto pass = counterPass(line);
        return isGuestError(line) || (pass && *pass > last_pass);
      },
      kContinueTimeout);
  if (!next.ok()) {
    return vmm.explain(annotate(
        next.status(),
        fmt::format("the restored guest did not report a counter pass after {}", last_pass)));
  }
  for (const PipeLines::Line& line : vmm.console().lines()) {
    if (isGuestError(line.text) || line.text.find("flotilla-guest: ready") != std::string::npos) {
      return vmm.explain(absl::DataLossError(fmt::format(
          "the restored guest did not continue where it was snapshotted: '{}'", line.text)));
    }
  }
  if (vmm.exited()) return vmm.explain(absl::AbortedError("the restored VMM exited"));
  return absl::OkStatus();
}

// Polls Health every millisecond until it replies SERVING; returns when that reply arrived.
// Between polls the VMM's log is read, so that its lines carry the time they appeared.
absl::StatusOr<absl::Duration> waitServing(const std::string& socket, LaunchedVmm& vmm) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + kRestoreTimeout;
  std::unique_ptr<flotilla::v1::VmmService::Stub> stub;
  while (true) {
    if (stub == nullptr && ::access(socket.c_str(), F_OK) == 0) {
      // A channel of its own per attempt until one connects: a channel whose first attempt
      // was refused (socket created, not yet listening) would wait out gRPC's reconnect
      // backoff (1 s) instead of trying again a millisecond later.
      grpc::ChannelArguments arguments;
      arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stub = flotilla::v1::VmmService::NewStub(grpc::CreateCustomChannel(
          "unix:" + socket, grpc::InsecureChannelCredentials(), arguments));
    }
    if (stub != nullptr) {
      grpc::ClientContext call;
      call.set_deadline(deadlineAfter(absl::Seconds(5)));
      flotilla::v1::HealthResponse response;
      grpc::Status status = stub->Health(&call, flotilla::v1::HealthRequest(), &response);
      const absl::Duration replied = clock.monotonicNow();
      if (status.ok() && response.status() == flotilla::v1::HealthResponse::SERVING) {
        return replied;
      }
      if (!status.ok()) stub.reset();
    }
    if (vmm.exited()) {
      return vmm.explain(absl::AbortedError("the VMM exited before its Health said SERVING"));
    }
    if (clock.monotonicNow() >= deadline) {
      return vmm.explain(absl::DeadlineExceededError(fmt::format(
          "Health did not say SERVING within {}", absl::FormatDuration(kRestoreTimeout))));
    }
    RETURN_IF_ERROR(vmm.log().pump(kPollInterval));
  }
}

// "... 1234 pages on demand" at the end of the loader's line.
double pagesOnDemand(const std::string& line) {
  size_t end = line.rfind(" pages on demand");
  if (end == std::string::npos || end == 0) return 0;
  size_t start = line.rfind(' ', end - 1);
  double pages = 0;
  if (start == std::string::npos ||
      !absl::SimpleAtod(line.substr(start + 1, end - start - 1), &pages)) {
    return 0;
  }
  return pages;
}

absl::Status flotillaIteration(const BenchContext& context, int iteration,
                               SnapshotResults& results) {
  const std::string snapshot_dir =
      context.dir->file(fmt::format("flotilla-snapshot-{}", iteration));
  const std::string source_socket =
      context.dir->file(fmt::format("flotilla-source-{}.sock", iteration));
  const std::string restored_socket =
      context.dir->file(fmt::format("flotilla-restored-{}.sock", iteration));
  uint64_t last_pass = 0;
  {
    ASSIGN_OR_RETURN(
        auto source,
        LaunchedVmm::spawn("Flotilla (snapshot source)",
                           flotillaBootCommand(context.programs, counterGuest(), source_socket)));
    ASSIGN_OR_RETURN(last_pass, waitCounting(*source));
    ASSIGN_OR_RETURN(auto api, connectFlotillaApi(source_socket, *source));
    flotilla::v1::SnapshotRequest request;
    request.set_directory(snapshot_dir);
    flotilla::v1::SnapshotResponse response;
    grpc::ClientContext call;
    call.set_deadline(deadlineAfter(kSnapshotTimeout));
    const absl::Duration start = systemClock().monotonicNow();
    grpc::Status status = api->Snapshot(&call, request, &response);
    const double snapshot_ms = millisSince(start);
    if (!status.ok()) {
      return source->explain(absl::InternalError(
          fmt::format("Snapshot to {} failed: {}", snapshot_dir, status.error_message())));
    }
    if (response.memory_bytes_written() < kTouchedMib << 20) {
      return source->explain(absl::DataLossError(
          fmt::format("the snapshot holds {} bytes of memory, less than the {} MiB the guest "
                      "touched",
                      response.memory_bytes_written(), kTouchedMib)));
    }
    if (context.verbose) {
      fmt::print(stderr, "  Flotilla: snapshot {:.1f} ms, paused {:.1f} ms\n", snapshot_ms,
                 static_cast<double>(response.paused_us()) / 1000.0);
    }
    results.snapshot.flotilla.add(snapshot_ms);
    results.paused.flotilla.add(static_cast<double>(response.paused_us()) / 1000.0);
    results.size.flotilla.add(static_cast<double>(response.memory_bytes_written()) / kMiB);
  }  // the source is killed: only the snapshot remains
  ::unlink(source_socket.c_str());

  ASSIGN_OR_RETURN(
      auto restored,
      LaunchedVmm::spawn("Flotilla (restored)",
                         flotillaRestoreCommand(context.programs, snapshot_dir, restored_socket)));
  ASSIGN_OR_RETURN(absl::Duration serving, waitServing(restored_socket, *restored));
  const double running_ms = absl::ToDoubleMilliseconds(serving - restored->spawnedAt());
  auto loaded = restored->log().waitForText("guest memory loaded", kRestoreTimeout);
  if (!loaded.ok()) return restored->explain(loaded.status());
  const PipeLines::Line& loaded_line = restored->log().lines()[*loaded];
  RETURN_IF_ERROR(checkContinues(*restored, last_pass));
  results.restore_running.flotilla.add(running_ms);
  results.restore_loaded.flotilla.add(
      absl::ToDoubleMilliseconds(loaded_line.read - restored->spawnedAt()));
  results.flotilla_pages_on_demand.add(pagesOnDemand(loaded_line.text));
  if (context.verbose) {
    fmt::print(stderr, "  Flotilla: restore {:.1f} ms to running, {:.1f} ms to all memory loaded\n",
               running_ms, absl::ToDoubleMilliseconds(loaded_line.read - restored->spawnedAt()));
  }
  restored.reset();
  ::unlink(restored_socket.c_str());
  std::error_code ignored;
  std::filesystem::remove_all(snapshot_dir, ignored);
  return absl::OkStatus();
}

// Polls query-migrate until the migration completed; returns its reply.
absl::StatusOr<nlohmann::json> waitMigrated(QmpClient& qmp) {
  const absl::Duration deadline = systemClock().monotonicNow() + kSnapshotTimeout;
  while (true) {
    ASSIGN_OR_RETURN(nlohmann::json info, qmp.execute("query-migrate"));
    const std::string status = info.value("status", "");
    if (status == "completed") return info;
    if (status == "failed" || status == "cancelled") {
      return absl::InternalError(fmt::format("QEMU's migration to the snapshot file {}: {}", status,
                                             info.value("error-desc", info.dump())));
    }
    if (systemClock().monotonicNow() >= deadline) {
      return absl::DeadlineExceededError(
          fmt::format("QEMU's migration did not complete within {}: {}",
                      absl::FormatDuration(kSnapshotTimeout), info.dump()));
    }
    systemClock().sleepFor(kPollInterval);
  }
}

absl::Status fsyncFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0)
    return errnoStatus(errno, fmt::format("syncing {}", path));
  return absl::OkStatus();
}

// Polls query-status until the restored guest runs; when the incoming migration left it
// paused (it was stopped when saved), continues it, as libvirt's restore does.
absl::StatusOr<absl::Duration> waitRunning(QmpClient& qmp, LaunchedVmm& vmm) {
  const absl::Duration deadline = systemClock().monotonicNow() + kRestoreTimeout;
  bool continued = false;
  while (true) {
    ASSIGN_OR_RETURN(nlohmann::json info, qmp.execute("query-status", nullptr, kRestoreTimeout));
    const absl::Duration replied = systemClock().monotonicNow();
    const std::string status = info.value("status", "");
    if (status == "running") return replied;
    if (status == "paused" && !continued) {
      RETURN_IF_ERROR(qmp.execute("cont").status());
      continued = true;
      continue;
    }
    if (status != "inmigrate" && status != "paused") {
      return vmm.explain(
          absl::InternalError(fmt::format("the restored QEMU is in state '{}'", status)));
    }
    if (systemClock().monotonicNow() >= deadline) {
      return vmm.explain(absl::DeadlineExceededError("the restored QEMU did not start running"));
    }
    systemClock().sleepFor(kPollInterval);
  }
}

absl::Status qemuIteration(const BenchContext& context, int iteration, SnapshotResults& results) {
  const std::string file = context.dir->file(fmt::format("qemu-snapshot-{}", iteration));
  const std::string source_socket =
      context.dir->file(fmt::format("qemu-source-{}.sock", iteration));
  const std::string restored_socket =
      context.dir->file(fmt::format("qemu-restored-{}.sock", iteration));
  uint64_t last_pass = 0;
  {
    ASSIGN_OR_RETURN(auto source, LaunchedVmm::spawn("QEMU (snapshot source)",
                                                     qemuCommand(context.programs, counterGuest(),
                                                                 source_socket, "")));
    ASSIGN_OR_RETURN(last_pass, waitCounting(*source));
    auto qmp = QmpClient::connect(source_socket, absl::Seconds(30), source->process().pidfd());
    if (!qmp.ok()) return source->explain(qmp.status());
    // QEMU throttles migration to 128 MiB/s by default; a save to a file should not be.
    RETURN_IF_ERROR(source->explain(
        qmp->execute("migrate-set-parameters", {{"max-bandwidth", uint64_t{1} << 40}}).status()));
    const absl::Duration start = systemClock().monotonicNow();
    RETURN_IF_ERROR(source->explain(qmp->execute("stop").status()));
    RETURN_IF_ERROR(source->explain(
        qmp->execute("migrate", {{"uri", fmt::format("exec:cat > {}", file)}}).status()));
    auto migrated = waitMigrated(*qmp);
    if (!migrated.ok()) return source->explain(migrated.status());
    RETURN_IF_ERROR(source->explain(qmp->execute("cont").status()));
    const double paused_ms = millisSince(start);
    RETURN_IF_ERROR(fsyncFile(file));
    const double snapshot_ms = millisSince(start);
    struct stat info {};
    if (::stat(file.c_str(), &info) != 0) return errnoStatus(errno, fmt::format("stat {}", file));
    if (static_cast<uint64_t>(info.st_size) < kTouchedMib << 20) {
      return source->explain(absl::DataLossError(fmt::format(
          "QEMU's snapshot file {} holds {} bytes, less than the {} MiB the guest touched", file,
          info.st_size, kTouchedMib)));
    }
    if (context.verbose) {
      fmt::print(stderr, "  QEMU: snapshot {:.1f} ms, paused {:.1f} ms\n", snapshot_ms, paused_ms);
    }
    results.snapshot.qemu.add(snapshot_ms);
    results.paused.qemu.add(paused_ms);
    results.size.qemu.add(static_cast<double>(info.st_size) / kMiB);
    results.qemu_reported_total_ms.add(migrated->value("total-time", 0.0));
    results.qemu_reported_downtime_ms.add(migrated->value("downtime", 0.0));
  }
  ::unlink(source_socket.c_str());

  ASSIGN_OR_RETURN(auto restored,
                   LaunchedVmm::spawn("QEMU (restored)",
                                      qemuCommand(context.programs, counterGuest(), restored_socket,
                                                  fmt::format("exec:cat {}", file))));
  auto qmp = QmpClient::connect(restored_socket, kRestoreTimeout, restored->process().pidfd());
  if (!qmp.ok()) return restored->explain(qmp.status());
  ASSIGN_OR_RETURN(absl::Duration running, waitRunning(*qmp, *restored));
  const double running_ms = absl::ToDoubleMilliseconds(running - restored->spawnedAt());
  RETURN_IF_ERROR(checkContinues(*restored, last_pass));
  results.restore_running.qemu.add(running_ms);
  results.restore_loaded.qemu.add(running_ms);  // QEMU loads everything before it runs
  if (context.verbose) {
    fmt::print(stderr, "  QEMU: restore {:.1f} ms to running\n", running_ms);
  }
  restored.reset();
  ::unlink(restored_socket.c_str());
  ::unlink(file.c_str());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotResults> runSnapshotBenchmark(const BenchContext& context) {
  SnapshotResults results;
  for (int iteration = 0; iteration < context.snapshot_iterations; ++iteration) {
    // Alternate which VMM goes first.
    if (iteration % 2 == 0) {
      RETURN_IF_ERROR(flotillaIteration(context, iteration, results));
      RETURN_IF_ERROR(qemuIteration(context, iteration, results));
    } else {
      RETURN_IF_ERROR(qemuIteration(context, iteration, results));
      RETURN_IF_ERROR(flotillaIteration(context, iteration, results));
    }
  }
  return results;
}

}  // namespace flotilla::bench
