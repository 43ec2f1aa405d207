// connectFlotillaApi (see flotilla_api.h).
#include "bench/flotilla_api.h"

#include "common/clock.h"
#include "common/rpc/channel.h"
#include "fmt/format.h"
#include "grpcpp/create_channel.h"

namespace flotilla::bench {

absl::StatusOr<std::unique_ptr<flotilla::v1::VmmService::Stub>> connectFlotillaApi(
    const std::string& socket, LaunchedVmm& vmm) {
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  const absl::Duration deadline = systemClock().monotonicNow() + absl::Seconds(30);
  while (!waitConnected(*channel, absl::Seconds(1))) {
    if (vmm.exited() || systemClock().monotonicNow() >= deadline) {
      return vmm.explain(
          absl::UnavailableError(fmt::format("API socket {} did not answer", socket)));
    }
    systemClock().sleepFor(absl::Milliseconds(10));
  }
  return flotilla::v1::VmmService::NewStub(channel);
}

}  // namespace flotilla::bench
