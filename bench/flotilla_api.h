// A client of a running flotilla-vmm's API socket (gRPC flotilla.v1.VmmService), for the
// benchmarks that drive Flotilla's VMM as a management stack would.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bench/vmm_launch.h"
#include "flotilla/v1/vmm.grpc.pb.h"

namespace flotilla::bench {

// A stub on the API socket `socket` of `vmm`, once the socket accepts connections (within
// 30 s); an error with `vmm`'s output when it exits first or the socket stays silent.
absl::StatusOr<std::unique_ptr<flotilla::v1::VmmService::Stub>> connectFlotillaApi(
    const std::string& socket, LaunchedVmm& vmm);

}  // namespace flotilla::bench
