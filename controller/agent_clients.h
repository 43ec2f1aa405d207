// AgentClients: the controller's channels to the agents (AgentService), one per host, made
// on first use and replaced when the host's advertised address changes. Every call carries
// the metadata `x-flotilla-host: HOST`, so that a call can never act on the wrong host (the
// agent simulator serves many hosts on one port and dispatches on it).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/channel.h"
#include "flotilla/v1/agent.grpc.pb.h"

namespace flotilla::controller {

inline constexpr char kHostMetadata[] = "x-flotilla-host";

class AgentClients {
 public:
  AgentClients(ChannelOptions options, absl::Duration timeout)
      : options_(std::move(options)), timeout_(timeout) {}

  using Call = std::function<grpc::Status(v1::AgentService::Stub&, grpc::ClientContext&)>;
  // Runs `call` against the agent of `host` at `address`. Errors say which host and what
  // (`what`, e.g. "CreateVm web-1").
  absl::Status call(const std::string& host, const std::string& address, std::string_view what,
                    const Call& call, absl::Duration timeout = absl::ZeroDuration());

 private:
  struct Client {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::AgentService::Stub> stub;
  };
  absl::StatusOr<std::shared_ptr<Client>> client(const std::string& host,
                                                 const std::string& address);

  const ChannelOptions options_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::controller
