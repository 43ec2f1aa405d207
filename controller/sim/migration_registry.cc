// Simulated live migrations between simulated hosts (see migration_registry.h).
#include "controller/sim/migration_registry.h"

#include <sys/random.h>

#include <algorithm>

#include "fmt/format.h"

namespace flotilla::sim {
namespace {

// splitmix64: a well-mixed 64-bit value from a counter.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The simulated pause at the switchover.
constexpr uint64_t kDowntimeUs = 3000;

}  // namespace

std::string MigrationRegistry::newToken() {
  if (seed_ == 0) {
    uint64_t seed = 0;
    if (::getrandom(&seed, sizeof(seed), 0) != sizeof(seed) || seed == 0) {
      seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) | 1;
    }
    seed_ = seed;
  }
  ++counter_;
  return fmt::format("{:016x}{:016x}", mix(seed_ ^ counter_), mix(seed_ + 2 * counter_));
}

std::string MigrationRegistry::addIncoming(std::string_view vm, std::string_view target_host,
                                           std::string_view address, uint64_t memory_bytes) {
  absl::MutexLock lock(&mu_);
  SimMigration migration;
  migration.token = newToken();
  migration.vm = std::string(vm);
  migration.address = std::string(address);
  migration.target_host = std::string(target_host);
  migration.memory_bytes = memory_bytes;
  std::string token = migration.token;
  migrations_.emplace(token, std::move(migration));
  return token;
}

absl::Status MigrationRegistry::start(std::string_view token, std::string_view address,
                                      std::string_view vm, std::string_view source_host,
                                      bool inject_failure) {
  absl::MutexLock lock(&mu_);
  auto it = migrations_.find(token);
  if (it == migrations_.end() || it->second.address != address || it->second.target_released) {
    return absl::FailedPreconditionError(fmt::format(
        "no incoming VM waits at {} with this token: PrepareIncoming on the target first, and "
        "pass the address and token it answered",
        address));
  }
  SimMigration& migration = it->second;
  if (migration.vm != vm) {
    return absl::FailedPreconditionError(
        fmt::format("the VM waiting at {} is '{}', not '{}'", address, migration.vm, vm));
  }
  if (migration.state != SimMigration::State::kWaiting) {
    return absl::FailedPreconditionError(fmt::format(
        "the incoming VM at {} was already used by a migration: prepare a new one", address));
  }
  migration.state = SimMigration::State::kTransferring;
  migration.source_host = std::string(source_host);
  migration.started = clock_.monotonicNow();
  migration.ends = migration.started + duration_;
  migration.inject_failure = inject_failure;
  return absl::OkStatus();
}

void MigrationRegistry::settleLocked(SimMigration& migration) {
  if (migration.state != SimMigration::State::kTransferring) return;
  if (clock_.monotonicNow() < migration.ends) return;
  if (migration.inject_failure) {
    migration.state = SimMigration::State::kFailed;
    migration.error = "injected failure (the simulator was told to fail this VM's next migration)";
  } else {
    migration.state = SimMigration::State::kCompleted;
  }
}

std::optional<SimMigration> MigrationRegistry::get(std::string_view token) {
  absl::MutexLock lock(&mu_);
  auto it = migrations_.find(token);
  if (it == migrations_.end()) return std::nullopt;
  settleLocked(it->second);
  return it->second;
}

void MigrationRegistry::fail(std::string_view token, std::string_view reason) {
  absl::MutexLock lock(&mu_);
  auto it = migrations_.find(token);
  if (it == migrations_.end()) return;
  SimMigration& migration = it->second;
  settleLocked(migration);
  if (migration.state == SimMigration::State::kCompleted ||
      migration.state == SimMigration::State::kFailed) {
    return;
  }
  migration.state = SimMigration::State::kFailed;
  migration.error = std::string(reason);
}

void MigrationRegistry::release(std::string_view token, Side side) {
  absl::MutexLock lock(&mu_);
  auto it = migrations_.find(token);
  if (it == migrations_.end()) return;
  SimMigration& migration = it->second;
  (side == Side::kSource ? migration.source_released : migration.target_released) = true;
  // A migration the source never started has only its target to wait for.
  const bool source_done =
      migration.source_released || migration.state == SimMigration::State::kWaiting;
  if (source_done && migration.target_released) migrations_.erase(it);
}

flotilla::v1::MigrationStatus MigrationRegistry::statusFor(const SimMigration& migration,
                                                           Side side) const {
  flotilla::v1::MigrationStatus status;
  const absl::Duration now = clock_.monotonicNow();
  const bool source = side == Side::kSource;
  status.set_role(source ? "source" : "target");
  status.set_streams(1);
  double progress = 0;
  switch (migration.state) {
    case SimMigration::State::kWaiting:
      status.set_phase(source ? "idle" : "waiting");
      break;
    case SimMigration::State::kTransferring: {
      status.set_phase(source ? "precopy" : "memory");
      const absl::Duration total = migration.ends - migration.started;
      progress = total <= absl::ZeroDuration()
                     ? 1.0
                     : std::clamp(absl::FDivDuration(now - migration.started, total), 0.0, 1.0);
      status.set_total_time_us(
          static_cast<uint64_t>(absl::ToInt64Microseconds(now - migration.started)));
      break;
    }
    case SimMigration::State::kCompleted:
      status.set_phase(source ? "completed" : "resumed");
      progress = 1.0;
      status.set_downtime_us(kDowntimeUs);
      status.set_total_time_us(
          static_cast<uint64_t>(absl::ToInt64Microseconds(migration.ends - migration.started)));
      break;
    case SimMigration::State::kFailed:
      status.set_phase("failed");
      status.set_error(migration.error);
      break;
  }
  const uint64_t bytes =
      static_cast<uint64_t>(progress * static_cast<double>(migration.memory_bytes));
  status.set_round(migration.state == SimMigration::State::kWaiting
                       ? 0
                       : 1 + static_cast<uint32_t>(progress * 3));
  if (source) {
    status.set_bytes_sent(bytes);
    status.set_pages_sent(bytes / 4096);
    status.set_remaining_bytes(migration.memory_bytes - bytes);
  } else {
    status.set_bytes_received(bytes);
    status.set_pages_received(bytes / 4096);
  }
  return status;
}

size_t MigrationRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return migrations_.size();
}

}  // namespace flotilla::sim
