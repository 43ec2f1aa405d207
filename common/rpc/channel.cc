// Client channels (see channel.h).
#include "common/rpc/channel.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "common/unique_fd.h"
#include "fmt/format.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace flotilla {
namespace {

absl::StatusOr<std::string> readPem(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(fmt::format(
        "cannot read the TLS {} file '{}': check the path in the configuration", what, path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int toMillis(absl::Duration d) {
  return static_cast<int>(absl::ToInt64Milliseconds(d));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> makeChannel(const std::string& target,
                                                           const ChannelOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_files.ca_file.empty()) {
      auto ca = readPem(options.tls_files.ca_file, "CA");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.tls_files.cert_file.empty()) {
      auto cert = readPem(options.tls_files.cert_file, "certificate");
      if (!cert.ok()) return cert.status();
      auto key = readPem(options.tls_files.key_file, "key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, toMillis(options.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, toMillis(options.keepalive_timeout));
  // Without this, gRPC stops pinging after two pings on a stream that carries no data, and a
  // watch on a dead server would never notice.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // Also the shortest time a connection attempt may take before it is abandoned (gRPC's
  // default is 20 s, far too long to notice a hung server).
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, toMillis(options.connect_timeout));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, toMillis(options.max_reconnect_backoff));
  // Cluster listings can exceed gRPC's 4 MiB default; the servers bound what they send.
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(target, credentials, args);
}

std::chrono::system_clock::time_point deadlineAfter(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
}

bool waitConnected(grpc::Channel& channel, absl::Duration timeout) {
  const auto deadline = deadlineAfter(timeout);
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  bool attempting = false;
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_CONNECTING) {
      attempting = true;
    } else if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && attempting) {
      return false;  // the attempt we watched failed
    }
    if (!channel.WaitForStateChange(state, deadline)) return false;
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return true;
}

bool unixSocketAccepts(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
}

void acceptClientKeepalives(grpc::ServerBuilder& builder) {
  // Below ChannelOptions' keepalive_time default (10 s), so that no ping is ever a strike.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
}

}  // namespace flotilla
