// AgentClients (see agent_clients.h).
#include "controller/agent_clients.h"

#include "common/rpc/status.h"
#include "fmt/format.h"

namespace flotilla::controller {

absl::StatusOr<std::shared_ptr<AgentClients::Client>> AgentClients::client(
    const std::string& host, const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(host);
  if (it != clients_.end() && it->second->address == address) return it->second;
  auto channel = makeChannel(address, options_);
  if (!channel.ok()) return channel.status();
  auto made = std::make_shared<Client>();
  made->address = address;
  made->channel = *channel;
  made->stub = v1::AgentService::NewStub(*channel);
  clients_[host] = made;
  return made;
}

absl::Status AgentClients::call(const std::string& host, const std::string& address,
                                std::string_view what, const Call& call, absl::Duration timeout) {
  if (address.empty()) {
    return absl::UnavailableError(
        fmt::format("{} on host {}: the host's agent reports no address", what, host));
  }
  auto agent = client(host, address);
  if (!agent.ok()) return agent.status();
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(timeout > absl::ZeroDuration() ? timeout : timeout_));
  context.AddMetadata(kHostMetadata, host);
  grpc::Status status = call(*(*agent)->stub, context);
  if (status.ok()) return absl::OkStatus();
  return fromGrpcStatus(status, fmt::format("{} on host {} ({})", what, host, address));
}

}  // namespace flotilla::controller
