// MigrationRegistry: the simulated live migrations between simulated hosts. PrepareIncoming on
// the target registers an incoming VM under a one-time token; StartMigration on the source
// presents that token (as a real source VMM presents it to the target VMM) and starts the
// transfer, which completes `duration` later, or fails when a failure was injected or one side
// went away. Both sides read the migration's progress from here, so the source and the target
// never need each other's locks: this registry's mutex is a leaf (nothing is called while it
// is held), and hosts call it with their own lock held.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "flotilla/v1/vmm.pb.h"

namespace flotilla::sim {

struct SimMigration {
  enum class State { kWaiting, kTransferring, kCompleted, kFailed };

  std::string token;
  std::string vm;
  std::string address;  // what PrepareIncoming answered
  std::string target_host;
  std::string source_host;  // set by start()
  uint64_t memory_bytes = 0;
  State state = State::kWaiting;
  absl::Duration started;  // monotonic
  absl::Duration ends;     // monotonic: the transfer's end
  bool inject_failure = false;
  std::string error;  // why it failed
  bool source_released = false;
  bool target_released = false;
};

class MigrationRegistry {
 public:
  enum class Side { kSource, kTarget };

  MigrationRegistry(Clock& clock, absl::Duration duration) : clock_(clock), duration_(duration) {}

  // Registers the incoming side of a migration of `vm` into `target_host`; returns the token.
  std::string addIncoming(std::string_view vm, std::string_view target_host,
                          std::string_view address, uint64_t memory_bytes);

  // The source starts sending `vm` to the incoming VM waiting at `address` with `token`.
  // FailedPrecondition when no incoming VM waits there (the real source VMM would fail to
  // connect or be refused), or the migration already started.
  absl::Status start(std::string_view token, std::string_view address, std::string_view vm,
                     std::string_view source_host, bool inject_failure);

  // The migration as of now (a transfer past its end has completed or failed); nullopt when
  // the token is unknown (released by both sides).
  std::optional<SimMigration> get(std::string_view token);

  // Fails the migration unless it completed already (one side went away, or aborted).
  void fail(std::string_view token, std::string_view reason);

  // One side no longer follows the migration; once both did, it is forgotten.
  void release(std::string_view token, Side side);

  // The status GetMigration answers on `side`, with the real VMM's phase names: the source
  // says precopy, completed or failed; the target waiting, memory, resumed or failed.
  flotilla::v1::MigrationStatus statusFor(const SimMigration& migration, Side side) const;

  size_t size() const;

 private:
  void settleLocked(SimMigration& migration) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string newToken() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock& clock_;
  const absl::Duration duration_;
  mutable absl::Mutex mu_;
  std::map<std::string, SimMigration, std::less<>> migrations_ ABSL_GUARDED_BY(mu_);
  uint64_t counter_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::sim
