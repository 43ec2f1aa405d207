// absl::Status <-> grpc::Status (see status.h).
#include "common/rpc/status.h"

#include <string>

#include "fmt/format.h"

namespace flotilla {

grpc::Status toGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status fromGrpcStatus(const grpc::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  if (context.empty()) return absl::Status(code, status.error_message());
  return absl::Status(code, fmt::format("{}: {}", context, status.error_message()));
}

}  // namespace flotilla
