// Waiting for migrations and drains (see follow.h).
#include "cli/follow.h"

#include <algorithm>

#include "cli/exit_codes.h"
#include "cli/views.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::cli {
namespace {

constexpr int kBarWidth = 30;
constexpr absl::Duration kPollInterval = absl::Seconds(1);

// Follows one object: `on_state` gets each new state until it returns true (the object
// reached an end). Watch when the controller has it, else `poll` every second.
absl::Status followObject(ClusterClient& client, v1::ObjectKind kind, const std::string& name,
                          const std::function<absl::StatusOr<v1::WatchEvent>()>& poll,
                          const std::function<bool(const v1::WatchEvent&)>& on_state) {
  const KindInfo* info = kindInfo(kind);
  const std::string object = fmt::format("{} {}", info->singular, name);
  bool ended = false;
  bool deleted = false;
  v1::WatchRequest request;
  request.add_kinds(kind);
  absl::Status watched = client.watch(request, [&](const v1::WatchEvent& event) {
    if (event.kind() != kind || event.name() != name) return true;
    if (event.type() == v1::WatchEvent::TYPE_DELETE) {
      deleted = true;
      return false;
    }
    ended = on_state(event);
    return !ended;
  });
  if (watched.code() == absl::StatusCode::kUnimplemented) {
    while (!client.interrupt().triggered()) {
      ASSIGN_OR_RETURN(v1::WatchEvent event, poll());
      if (on_state(event)) {
        ended = true;
        break;
      }
      if (!client.interrupt().sleepFor(kPollInterval)) break;
    }
  } else if (!watched.ok()) {
    return watched;
  }
  if (ended) return absl::OkStatus();
  if (deleted) {
    return withExitCode(absl::NotFoundError(fmt::format("{} was deleted before it ended", object)),
                        kExitFailed);
  }
  return withExitCode(absl::CancelledError(fmt::format(
                          "interrupted: stopped waiting; the {} goes on (clusterctl get {} {})",
                          info->singular, info->plural, name)),
                      kExitInterrupted);
}

// How far along a migration is, for the bar: the phases in order, and the memory sent while
// transferring (pre-copy sends more than the memory: the bar stops short of Switching).
double migrationFraction(const v1::MigrationRecord& migration, uint64_t memory_bytes) {
  switch (migration.phase()) {
    case v1::MIGRATION_PHASE_PENDING:
      return 0.02;
    case v1::MIGRATION_PHASE_PREPARING:
      return 0.05;
    case v1::MIGRATION_PHASE_TRANSFERRING: {
      if (memory_bytes == 0) return 0.1;
      const double sent =
          static_cast<double>(migration.bytes_sent()) / static_cast<double>(memory_bytes);
      return 0.1 + 0.8 * std::min(sent, 1.0);
    }
    case v1::MIGRATION_PHASE_SWITCHING:
      return 0.95;
    case v1::MIGRATION_PHASE_SUCCEEDED:
      return 1.0;
    default:
      return 0.0;
  }
}

}  // namespace

void ProgressLine::update(double fraction, const std::string& text) {
  if (!tty_) {
    if (text == last_) return;
    last_ = text;
    out_ << (prefix_.empty() ? "" : prefix_ + ": ") << text << "\n" << std::flush;
    return;
  }
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * kBarWidth + 0.5);
  out_ << "\r\033[K" << (prefix_.empty() ? "" : prefix_ + " ") << "["
       << std::string(static_cast<size_t>(filled), '#')
       << std::string(static_cast<size_t>(kBarWidth - filled), '.') << "] "
       << fmt::format("{:3.0f}% ", fraction * 100.0) << text << std::flush;
  drawn_ = true;
}

void ProgressLine::finish() {
  if (tty_ && drawn_) out_ << "\n" << std::flush;
  drawn_ = false;
}

absl::Status followMigration(ClusterClient& client, const std::string& name, uint64_t memory_bytes,
                             std::ostream& out, bool tty) {
  ProgressLine progress(out, tty);
  progress.setPrefix("migration/" + name);
  v1::MigrationRecord final_state;
  auto poll = [&]() -> absl::StatusOr<v1::WatchEvent> {
    v1::NameRequest request;
    request.set_name(name);
    ASSIGN_OR_RETURN(
        v1::MigrationRecord migration,
        client.call(CallKind::kRead, "GetMigration", &ClusterClient::Stub::GetMigration, request));
    v1::WatchEvent event;
    event.set_type(v1::WatchEvent::TYPE_PUT);
    event.set_kind(v1::OBJECT_KIND_MIGRATION);
    event.set_name(name);
    *event.mutable_migration() = std::move(migration);
    return event;
  };
  RETURN_IF_ERROR(
      followObject(client, v1::OBJECT_KIND_MIGRATION, name, poll, [&](const v1::WatchEvent& event) {
        const v1::MigrationRecord& migration = event.migration();
        progress.update(migrationFraction(migration, memory_bytes), migrationProgress(migration));
        final_state = migration;
        return migrationEnded(migration.phase());
      }));
  progress.finish();
  const std::string source = orDash(final_state.source());
  switch (final_state.phase()) {
    case v1::MIGRATION_PHASE_SUCCEEDED:
      out << fmt::format("migration/{} succeeded: vm {} runs on {}", name, final_state.vm(),
                         orDash(final_state.target()));
      if (final_state.downtime_ms() > 0) {
        out << fmt::format(" (downtime {:.1f}ms)", final_state.downtime_ms());
      }
      out << "\n";
      return absl::OkStatus();
    case v1::MIGRATION_PHASE_CANCELLED:
      return withExitCode(
          absl::AbortedError(fmt::format("migration {} was cancelled; vm {} still runs on {}", name,
                                         final_state.vm(), source)),
          kExitFailed);
    default:
      return withExitCode(
          absl::InternalError(fmt::format("migration {} failed: {}; vm {} still runs on {}", name,
                                          orDash(final_state.message()), final_state.vm(), source)),
          kExitFailed);
  }
}

absl::Status followDrain(ClusterClient& client, const std::string& host, std::ostream& out,
                         bool tty) {
  ProgressLine progress(out, tty);
  progress.setPrefix("drain/" + host);
  v1::DrainRecord final_state;
  auto poll = [&]() -> absl::StatusOr<v1::WatchEvent> {
    v1::NameRequest request;
    request.set_name(host);
    ASSIGN_OR_RETURN(v1::DrainRecord drain, client.call(CallKind::kRead, "GetDrain",
                                                        &ClusterClient::Stub::GetDrain, request));
    v1::WatchEvent event;
    event.set_type(v1::WatchEvent::TYPE_PUT);
    event.set_kind(v1::OBJECT_KIND_DRAIN);
    event.set_name(host);
    *event.mutable_drain() = std::move(drain);
    return event;
  };
  RETURN_IF_ERROR(
      followObject(client, v1::OBJECT_KIND_DRAIN, host, poll, [&](const v1::WatchEvent& event) {
        const v1::DrainRecord& drain = event.drain();
        const DrainCounts counts = countDrain(drain);
        std::string text = fmt::format("{}, {}/{} done, {} failed", drainPhaseWord(drain.phase()),
                                       counts.done, counts.total, counts.failed);
        if (!drain.message().empty()) text += ": " + drain.message();
        progress.update(counts.total == 0 ? (drainEnded(drain.phase()) ? 1.0 : 0.0)
                                          : static_cast<double>(counts.done + counts.failed) /
                                                static_cast<double>(counts.total),
                        text);
        final_state = drain;
        return drainEnded(drain.phase());
      }));
  progress.finish();
  const DrainCounts counts = countDrain(final_state);
  if (final_state.phase() == v1::DRAIN_PHASE_SUCCEEDED) {
    out << fmt::format("drain/{} succeeded: {} VM(s) moved; the host is empty and cordoned\n", host,
                       counts.done);
    return absl::OkStatus();
  }
  std::string message = final_state.phase() == v1::DRAIN_PHASE_CANCELLED
                            ? fmt::format("drain of host {} was cancelled: {}/{} VM(s) moved", host,
                                          counts.done, counts.total)
                            : fmt::format("drain of host {} failed: {} of {} VM(s) could not leave",
                                          host, counts.failed, counts.total);
  if (!final_state.message().empty()) message += " (" + final_state.message() + ")";
  for (const v1::DrainVm& vm : final_state.vms()) {
    if (vm.state() != v1::DrainVm::STATE_FAILED) continue;
    message += fmt::format("\n  vm {}: {}", vm.vm(), orDash(vm.message()));
  }
  return withExitCode(absl::AbortedError(message), kExitFailed);
}

}  // namespace flotilla::cli
