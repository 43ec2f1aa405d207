// The ClusterService client with failover between controller replicas (docs/clusterctl.md
// "Failover"). Endpoints are tried in order, starting with the one that answered last:
// - an endpoint that cannot be connected to is skipped: the request never left this process,
//   so reads and writes alike move on to the next endpoint;
// - a read that fails with UNAVAILABLE or DEADLINE_EXCEEDED after it was sent is retried on the
//   next endpoint;
// - a write that fails that way is NOT retried (it may have been applied): the error says so;
// - any other answer (OK or an error of the controller) is final.
// When no endpoint answers, the error is UNAVAILABLE (exit 4) and names every endpoint.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/interrupt.h"
#include "common/rpc/channel.h"
#include "flotilla/v1/cluster.grpc.pb.h"

namespace flotilla::cli {

struct ClientOptions {
  std::vector<std::string> endpoints;  // HOST:PORT or unix:PATH
  ChannelOptions channel{};
  absl::Duration timeout = absl::Seconds(10);  // deadline of each call
  // How long connecting to one endpoint may take before the next one is tried.
  absl::Duration connect_timeout = absl::Seconds(2);
};

enum class CallKind { kRead, kWrite };

class ClusterClient {
 public:
  using Stub = v1::ClusterService::Stub;
  // Makes the call on a stub with a prepared context (deadline set).
  using CallFn = std::function<grpc::Status(Stub& stub, grpc::ClientContext& context)>;

  // Fails when there is no endpoint or TLS files cannot be read. Connects lazily.
  static absl::StatusOr<std::unique_ptr<ClusterClient>> create(ClientOptions options,
                                                               const Interrupt& interrupt);

  // One unary call with failover; `what` names it in errors ("GetVm web1").
  absl::Status invoke(CallKind kind, std::string_view what, const CallFn& call);

  // Typed convenience: client.call(CallKind::kRead, "GetVm", &Stub::GetVm, request).
  template <typename Request, typename Response>
  absl::StatusOr<Response> call(CallKind kind, std::string_view what,
                                grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                             Response*),
                                const Request& request) {
    Response response;
    absl::Status status = invoke(kind, what, [&](Stub& stub, grpc::ClientContext& context) {
      return (stub.*method)(&context, request, &response);
    });
    if (!status.ok()) return status;
    return response;
  }

  // The same call on one endpoint only, without failover (for `clusterctl info`).
  absl::Status invokeAt(size_t index, const CallFn& call);

  // Streams Watch(request) and passes each event to `on_event` until it returns false, the
  // interrupt fires (OK), or no endpoint could be connected to for `timeout` (UNAVAILABLE).
  // A stream that breaks is reopened on the next endpoint; since a new stream starts with the
  // current state of every object, events identical to the last one passed on for the same
  // object are dropped. `on_reconnect` (optional) hears about each reconnection.
  absl::Status watch(const v1::WatchRequest& request,
                     const std::function<bool(const v1::WatchEvent&)>& on_event,
                     const std::function<void(std::string_view message)>& on_reconnect = {});

  const std::vector<std::string>& endpoints() const { return options_.endpoints; }
  // The endpoint that answered last (the first endpoint before any call).
  const std::string& currentEndpoint() const { return options_.endpoints[preferred_]; }
  absl::Duration timeout() const { return options_.timeout; }
  const Interrupt& interrupt() const { return interrupt_; }

 private:
  struct Endpoint {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<Stub> stub;
  };

  ClusterClient(ClientOptions options, const Interrupt& interrupt);
  // The endpoint's stub once its channel is connected; nullptr when it cannot be reached.
  Stub* connect(size_t index);

  ClientOptions options_;
  const Interrupt& interrupt_;
  std::vector<Endpoint> endpoints_;
  size_t preferred_ = 0;
};

}  // namespace flotilla::cli
