// The ClusterService client with failover (see client.h).
#include "cli/client.h"

#include <algorithm>
#include <map>
#include <utility>

#include "common/rpc/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"
#include "google/protobuf/util/message_differencer.h"

namespace flotilla::cli {
namespace {

bool connectionLevel(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// Errors of a watch stream after which another endpoint will not do better.
bool finalForWatch(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return true;
    default:
      return false;
  }
}

// Connects `channel` within `timeout`: true once READY, false as soon as a connection attempt
// failed. (common/rpc/channel.h's waitConnected() misses an attempt that fails before it
// first sees CONNECTING, as a refused connection on loopback or a missing unix socket does,
// and then waits for the next attempt after the reconnect backoff: seconds per dead endpoint.)
// A channel still in TRANSIENT_FAILURE from an earlier attempt counts as failed at once; it
// retries by itself after its backoff, which the watch loop waits out.
bool connectWithin(grpc::Channel& channel, absl::Duration timeout) {
  const auto deadline = deadlineAfter(timeout);
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
    if (!channel.WaitForStateChange(state, deadline)) return false;
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return true;
}

std::string unreachableMessage(const std::vector<std::string>& failures) {
  return fmt::format(
      "no controller reachable ({}): check that flotilla-controller runs there, or fix the "
      "endpoints (--endpoint, or endpoints: in the clusterctl config file)",
      fmt::join(failures, "; "));
}

}  // namespace

ClusterClient::ClusterClient(ClientOptions options, const Interrupt& interrupt)
    : options_(std::move(options)), interrupt_(interrupt) {}

absl::StatusOr<std::unique_ptr<ClusterClient>> ClusterClient::create(ClientOptions options,
                                                                     const Interrupt& interrupt) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "no controller endpoints: give --endpoint HOST:PORT, or list them as endpoints: in "
        "~/.config/flotilla/clusterctl.yaml (deploy/local-cluster.sh writes it)");
  }
  std::unique_ptr<ClusterClient> client(new ClusterClient(std::move(options), interrupt));
  for (const std::string& target : client->options_.endpoints) {
    auto channel = makeChannel(target, client->options_.channel);
    if (!channel.ok()) return channel.status();
    Endpoint endpoint;
    endpoint.channel = *channel;
    endpoint.stub = v1::ClusterService::NewStub(endpoint.channel);
    client->endpoints_.push_back(std::move(endpoint));
  }
  return client;
}

ClusterClient::Stub* ClusterClient::connect(size_t index) {
  Endpoint& endpoint = endpoints_[index];
  if (!connectWithin(*endpoint.channel, options_.connect_timeout)) return nullptr;
  return endpoint.stub.get();
}

absl::Status ClusterClient::invoke(CallKind kind, std::string_view what, const CallFn& call) {
  std::vector<std::string> failures;
  const size_t count = endpoints_.size();
  for (size_t attempt = 0; attempt < count; ++attempt) {
    if (interrupt_.triggered()) return absl::CancelledError("interrupted");
    const size_t index = (preferred_ + attempt) % count;
    const std::string& target = options_.endpoints[index];
    Stub* stub = connect(index);
    if (stub == nullptr) {
      failures.push_back(fmt::format("{}: cannot connect", target));
      continue;
    }
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(options_.timeout));
    grpc::Status status;
    {
      auto cancel = interrupt_.subscribe([&context] { context.TryCancel(); });
      status = call(*stub, context);
    }
    if (status.ok()) {
      preferred_ = index;
      return absl::OkStatus();
    }
    if (interrupt_.triggered()) return absl::CancelledError("interrupted");
    if (connectionLevel(status.error_code())) {
      if (kind == CallKind::kWrite) {
        // The request was sent: it may have been applied. Repeating a write is the user's call.
        return absl::Status(
            static_cast<absl::StatusCode>(status.error_code()),
            fmt::format("{} at {}: {} (the request was sent and may have been applied: check "
                        "with clusterctl get before repeating it)",
                        what, target, status.error_message()));
      }
      failures.push_back(fmt::format("{}: {}", target, status.error_message()));
      continue;
    }
    // The controller's own answer: its message is the user's message.
    preferred_ = index;
    return fromGrpcStatus(status);
  }
  return absl::UnavailableError(unreachableMessage(failures));
}

absl::Status ClusterClient::invokeAt(size_t index, const CallFn& call) {
  const std::string& target = options_.endpoints[index];
  Stub* stub = connect(index);
  if (stub == nullptr) return absl::UnavailableError(fmt::format("{}: cannot connect", target));
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(options_.timeout));
  auto cancel = interrupt_.subscribe([&context] { context.TryCancel(); });
  grpc::Status status = call(*stub, context);
  return fromGrpcStatus(status);
}

absl::Status ClusterClient::watch(const v1::WatchRequest& request,
                                  const std::function<bool(const v1::WatchEvent&)>& on_event,
                                  const std::function<void(std::string_view)>& on_reconnect) {
  // The last event passed on per object (kind, name), without its revision, to drop the
  // replay of the current state that a new stream starts with.
  std::map<std::pair<int, std::string>, v1::WatchEvent> last;
  // Why each endpoint could not be connected to, since the last successful connection.
  std::vector<std::string> refusals(endpoints_.size());
  absl::Time unreachable_since = absl::InfinitePast();
  absl::Duration backoff = absl::Milliseconds(100);
  size_t index = preferred_;
  bool streamed = false;  // a stream was open before: the next connection is a reconnection
  while (!interrupt_.triggered()) {
    const std::string& target = options_.endpoints[index];
    if (streamed && on_reconnect) on_reconnect(fmt::format("reconnecting to {}", target));
    Stub* stub = connect(index);
    if (stub == nullptr) {
      refusals[index] = fmt::format("{}: cannot connect", target);
      if (unreachable_since == absl::InfinitePast()) unreachable_since = absl::Now();
      const bool all_refused = std::none_of(refusals.begin(), refusals.end(),
                                            [](const std::string& r) { return r.empty(); });
      if (all_refused && absl::Now() - unreachable_since >= options_.timeout) {
        return absl::UnavailableError(unreachableMessage(refusals));
      }
      index = (index + 1) % endpoints_.size();
      // After a whole round of refusals, wait a little before the next round.
      if (all_refused) {
        if (!interrupt_.sleepFor(backoff)) break;
        backoff = std::min(backoff * 2, absl::Seconds(2));
      }
      continue;
    }
    unreachable_since = absl::InfinitePast();
    std::fill(refusals.begin(), refusals.end(), std::string());
    preferred_ = index;

    grpc::ClientContext context;
    auto cancel = interrupt_.subscribe([&context] { context.TryCancel(); });
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader = stub->Watch(&context, request);
    streamed = true;
    v1::WatchEvent event;
    bool stopped = false;
    while (reader->Read(&event)) {
      backoff = absl::Milliseconds(100);
      auto key = std::make_pair(static_cast<int>(event.kind()), event.name());
      v1::WatchEvent comparable = event;
      comparable.set_revision(0);
      auto seen = last.find(key);
      if (seen != last.end() &&
          google::protobuf::util::MessageDifferencer::Equals(seen->second, comparable)) {
        continue;
      }
      last[key] = std::move(comparable);
      if (!on_event(event)) {
        stopped = true;
        context.TryCancel();
        break;
      }
    }
    grpc::Status status = reader->Finish();
    if (stopped || interrupt_.triggered()) return absl::OkStatus();
    if (finalForWatch(status.error_code())) {
      return fromGrpcStatus(status);
    }
    if (on_reconnect) {
      on_reconnect(
          fmt::format("the watch stream from {} ended ({})", target,
                      status.ok() ? std::string("closed by the server") : status.error_message()));
    }
    index = (index + 1) % endpoints_.size();
    if (!interrupt_.sleepFor(backoff)) break;
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::cli
