// Conversion between absl::Status (used inside Flotilla) and grpc::Status (on the wire).
// The numeric codes are the same google.rpc.Code values, so codes map one to one.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace flotilla {

grpc::Status toGrpcStatus(const absl::Status& status);

// `context` prefixes the message ("etcd Range /flotilla/v1/vms/ at 127.0.0.1:2379: ...").
absl::Status fromGrpcStatus(const grpc::Status& status, std::string_view context = {});

}  // namespace flotilla
