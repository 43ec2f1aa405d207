// gRPC client channels with Flotilla's defaults: TLS from PEM files (or plaintext when the
// configuration says so), keepalive pings that detect a dead peer on long-lived streams, and
// short reconnect backoff so that a restarted server is reached again within seconds.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/server_builder.h"

namespace flotilla {

struct TlsFiles {
  std::string ca_file;    // CA that signed the server certificates
  std::string cert_file;  // client certificate (optional, for mutual TLS)
  std::string key_file;   // client key (with cert_file)
};

struct ChannelOptions {
  bool tls = false;
  TlsFiles tls_files;
  // Keepalive pings while calls are open; servers that enforce a minimum interval (etcd's
  // --grpc-keepalive-min-time is 5s) must allow it.
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  absl::Duration max_reconnect_backoff = absl::Seconds(2);
  // How long one connection attempt may take.
  absl::Duration connect_timeout = absl::Seconds(1);
};

// A channel to `target` ("host:port", "unix:/path"). Fails only when TLS files cannot be
// read; connecting happens lazily.
absl::StatusOr<std::shared_ptr<grpc::Channel>> makeChannel(const std::string& target,
                                                           const ChannelOptions& options);

// A deadline `timeout` from now, for grpc::ClientContext::set_deadline.
std::chrono::system_clock::time_point deadlineAfter(absl::Duration timeout);

// Connects `channel` if it is not connected: true once it is READY; false when the
// connection attempt failed or `timeout` passed first. Callers that send nothing before it
// returns true know that a false means their request never left this process.
//
// Why this exists: with gRPC's synchronous API, a fail-fast call on a channel in
// TRANSIENT_FAILURE returns at once, and no thread polls the sockets of the reconnection
// attempts that follow (gRPC's backup poller runs every 5 s), so a server that came back is
// not seen for seconds. Waiting here polls the channel and finishes the attempt promptly.
bool waitConnected(grpc::Channel& channel, absl::Duration timeout);

// Whether something accepts connections on the unix socket `path` right now (one connect(2),
// closed at once). For waiting on a server that is starting: polling this costs a syscall,
// where polling with RPCs puts the channel into gRPC's reconnect backoff, which is shared by
// every channel to that address in the process and delays the first call by up to seconds.
bool unixSocketAccepts(const std::string& path);

// Lets a server's clients send the keepalive pings makeChannel() configures (gRPC servers
// otherwise answer pings more often than every 5 minutes with GOAWAY "too_many_pings").
void acceptClientKeepalives(grpc::ServerBuilder& builder);

}  // namespace flotilla
