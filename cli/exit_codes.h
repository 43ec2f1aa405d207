// clusterctl's exit statuses (docs/clusterctl.md "Exit codes") and how an error maps to one:
// by the gRPC/absl code of the controller's answer, or by an explicit override attached to the
// status where clusterctl itself knows better (a failed migration, a bad config file).
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace flotilla::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;         // the operation failed (server error, failed drain)
inline constexpr int kExitUsage = 2;          // bad flags, arguments, spec or config file
inline constexpr int kExitNotFound = 3;       // the object does not exist
inline constexpr int kExitUnreachable = 4;    // no controller answered
inline constexpr int kExitConflict = 5;       // exists already, wrong state, concurrent update
inline constexpr int kExitInterrupted = 130;  // Ctrl-C (128 + SIGINT), as shells report it

// Attaches the exit status `code` to a non-OK status (OK stays OK).
absl::Status withExitCode(absl::Status status, int code);

// The exit status for `status`: the attached one, else by code: NotFound 3, InvalidArgument 2,
// AlreadyExists/FailedPrecondition/Aborted 5, Unavailable/DeadlineExceeded 4, Cancelled 130,
// anything else 1.
int exitCodeFor(const absl::Status& status);

// A usage error (exit 2) with `message`.
absl::Status usageError(std::string_view message);

}  // namespace flotilla::cli
