// Test hook of the migration engine: named points of the switchover at which a test can
// stop a VMM, to kill its peer there deterministically (docs/migration.md, "Test hook").
//
// flotilla-vmm stops itself (raise(SIGSTOP): every thread, until SIGCONT) at the point the
// environment variable FLOTILLA_MIGRATION_TEST_STOP names. Points:
//   source-ready    the source got `ready` and has not sent `go`
//   target-loading  the target got `complete` and has not loaded the state (no `ready`)
//   target-ready    the target sent `ready` and has not read `go`
//   target-go       the target read `go` and has not resumed the guest
// Not for production: nothing sets the variable but tests.
#pragma once

#include <functional>
#include <string_view>

namespace flotilla::migration {

// Called at each point with its name; unit tests pass their own.
using StopPoint = std::function<void(std::string_view point)>;

inline constexpr char kTestStopVariable[] = "FLOTILLA_MIGRATION_TEST_STOP";

// The default hook: raises SIGSTOP when FLOTILLA_MIGRATION_TEST_STOP equals `point` (read
// once, at the first call), after logging the point.
void stopIfAsked(std::string_view point);

}  // namespace flotilla::migration
