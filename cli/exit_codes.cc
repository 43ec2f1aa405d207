// Exit statuses of clusterctl (see exit_codes.h).
#include "cli/exit_codes.h"

#include <string>

#include "absl/strings/cord.h"

namespace flotilla::cli {
namespace {

constexpr char kExitCodePayload[] = "flotilla.dev/clusterctl-exit-code";

}  // namespace

absl::Status withExitCode(absl::Status status, int code) {
  if (!status.ok()) status.SetPayload(kExitCodePayload, absl::Cord(std::to_string(code)));
  return status;
}

int exitCodeFor(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  if (auto payload = status.GetPayload(kExitCodePayload); payload.has_value()) {
    return std::stoi(std::string(*payload));
  }
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return kExitUsage;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return kExitConflict;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnreachable;
    case absl::StatusCode::kCancelled:
      return kExitInterrupted;
    default:
      return kExitFailed;
  }
}

absl::Status usageError(std::string_view message) {
  return withExitCode(absl::InvalidArgumentError(std::string(message)), kExitUsage);
}

}  // namespace flotilla::cli
