// EtcdClient: member failover, KV, transactions and leases (see client.h).
#include "common/etcd/client.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/etcd/lease.h"
#include "common/etcd/watch.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::etcd {
namespace {

// How a failed attempt against one member relates to failover.
enum class Failure {
  kFinal,           // another member would answer the same (bad request, compacted, ...)
  kNotSent,         // the request never reached a member that could apply it: retry
  kOutcomeUnknown,  // it may have been applied: retry only idempotent requests
};

Failure classify(const grpc::Status& status) {
  const std::string& message = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      // gRPC's words when no connection could be made; etcd's when the member has no leader
      // (it is partitioned or the cluster is electing) and so refused the request.
      if (message.starts_with("failed to connect to all addresses") ||
          message == "etcdserver: no leader") {
        return Failure::kNotSent;
      }
      return Failure::kOutcomeUnknown;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Failure::kOutcomeUnknown;
    default:
      return Failure::kFinal;
  }
}

absl::StatusOr<std::string> parseEndpoint(std::string_view endpoint, bool tls) {
  std::string_view rest = endpoint;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    if (!tls) {
      return absl::InvalidArgumentError(fmt::format(
          "etcd endpoint '{}' uses https but no TLS files are configured: give the CA file, or "
          "use http://",
          endpoint));
    }
    rest.remove_prefix(8);
  }
  size_t colon = rest.rfind(':');
  unsigned port = 0;
  std::string_view port_text = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
  auto [end, error] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (colon == 0 || colon == std::string_view::npos || error != std::errc() ||
      end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(fmt::format(
        "etcd endpoint '{}' is not host:port (e.g. 127.0.0.1:2379 or http://etcd1:2379)",
        endpoint));
  }
  return std::string(rest);
}

}  // namespace

std::string prefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  // The smallest key greater than every key with this prefix: drop trailing 0xff bytes, then
  // increment the last byte. A prefix of only 0xff bytes (or empty) has no such key; etcd
  // reads "\0" as "to the end of the keyspace".
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return std::string(1, '\0');
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

EtcdClient::EtcdClient(ClientOptions options, std::vector<std::string> endpoints,
                       std::vector<std::shared_ptr<grpc::Channel>> channels)
    : options_(std::move(options)),
      endpoints_(std::move(endpoints)),
      channels_(std::move(channels)),
      log_(Logger("etcd")) {}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::connect(const ClientOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "no etcd endpoints configured: give at least one host:port (e.g. 127.0.0.1:2379)");
  }
  std::vector<std::string> endpoints;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const std::string& endpoint : options.endpoints) {
    ASSIGN_OR_RETURN(std::string target, parseEndpoint(endpoint, options.channel.tls));
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, makeChannel(target, options.channel));
    endpoints.push_back(std::move(target));
    channels.push_back(std::move(channel));
  }
  return std::unique_ptr<EtcdClient>(
      new EtcdClient(options, std::move(endpoints), std::move(channels)));
}

EtcdClient::Member EtcdClient::currentMember() const {
  absl::MutexLock lock(&mu_);
  return Member{current_, endpoints_[current_], channels_[current_]};
}

std::string EtcdClient::currentEndpoint() const {
  return currentMember().endpoint;
}

bool EtcdClient::connectMember(const Member& member, absl::Duration timeout) const {
  return waitConnected(*member.channel, std::min(timeout, options_.channel.connect_timeout));
}

void EtcdClient::memberFailed(const Member& member) {
  absl::MutexLock lock(&mu_);
  if (current_ == member.index) {
    current_ = (current_ + 1) % endpoints_.size();
    log_.debug("member {} failed; next calls go to {}", member.endpoint, endpoints_[current_]);
  }
}

absl::Status EtcdClient::callWithFailover(std::string_view what, bool idempotent,
                                          const Attempt& attempt) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + options_.request_timeout;
  absl::Duration backoff = absl::Milliseconds(50);
  grpc::Status last_error;
  std::string last_endpoint;
  for (size_t failures = 0;; ++failures) {
    absl::Duration remaining = deadline - clock.monotonicNow();
    if (remaining <= absl::ZeroDuration()) break;
    Member member = currentMember();
    grpc::Status status;
    Failure failure = Failure::kNotSent;
    if (!connectMember(member, remaining)) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot connect");
    } else {
      grpc::ClientContext context;
      context.set_deadline(deadlineAfter(std::min(remaining, options_.attempt_timeout)));
      status = attempt(member, context);
      if (status.ok()) return absl::OkStatus();
      failure = classify(status);
    }
    last_error = status;
    last_endpoint = member.endpoint;
    if (failure == Failure::kFinal) {
      return fromGrpcStatus(status, fmt::format("{} at {}", what, member.endpoint));
    }
    memberFailed(member);
    if (failure == Failure::kOutcomeUnknown && !idempotent) {
      return absl::UnavailableError(fmt::format(
          "{} at {}: {}; it may or may not have been applied: read the key before retrying", what,
          member.endpoint, status.error_message()));
    }
    // Every member failed once more: pause before the next round.
    if ((failures + 1) % endpoints_.size() == 0) {
      clock.sleepFor(std::min(backoff, deadline - clock.monotonicNow()));
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
  }
  return absl::UnavailableError(
      fmt::format("{}: no etcd member answered within {} (endpoints {}); last error from {}: {}",
                  what, absl::FormatDuration(options_.request_timeout), fmt::join(endpoints_, ", "),
                  last_endpoint.empty() ? "none" : last_endpoint, last_error.error_message()));
}

absl::StatusOr<RangeResult> EtcdClient::get(std::string_view key, const RangeOptions& options) {
  etcdserverpb::RangeRequest request;
  request.set_key(std::string(key));
  if (options.prefix) request.set_range_end(prefixRangeEnd(key));
  request.set_limit(options.limit);
  request.set_revision(options.revision);
  request.set_keys_only(options.keys_only);
  request.set_count_only(options.count_only);
  request.set_serializable(options.serializable);
  etcdserverpb::RangeResponse response;
  RETURN_IF_ERROR(callWithFailover(
      fmt::format("etcd get {}", key), /*idempotent=*/true,
      [&](const Member& member, grpc::ClientContext& context) {
        return etcdserverpb::KV::NewStub(member.channel)->Range(&context, request, &response);
      }));
  RangeResult result;
  result.revision = response.header().revision();
  result.more = response.more();
  result.count = response.count();
  result.kvs.reserve(static_cast<size_t>(response.kvs_size()));
  for (const mvccpb::KeyValue& kv : response.kvs()) result.kvs.push_back(KeyValue::fromProto(kv));
  return result;
}

absl::StatusOr<int64_t> EtcdClient::put(std::string_view key, std::string_view value,
                                        int64_t lease) {
  etcdserverpb::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_lease(lease);
  etcdserverpb::PutResponse response;
  RETURN_IF_ERROR(callWithFailover(
      fmt::format("etcd put {}", key), /*idempotent=*/false,
      [&](const Member& member, grpc::ClientContext& context) {
        return etcdserverpb::KV::NewStub(member.channel)->Put(&context, request, &response);
      }));
  return response.header().revision();
}

absl::StatusOr<int64_t> EtcdClient::del(std::string_view key, bool prefix) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(std::string(key));
  if (prefix) request.set_range_end(prefixRangeEnd(key));
  etcdserverpb::DeleteRangeResponse response;
  RETURN_IF_ERROR(callWithFailover(
      fmt::format("etcd delete {}", key), /*idempotent=*/false,
      [&](const Member& member, grpc::ClientContext& context) {
        return etcdserverpb::KV::NewStub(member.channel)->DeleteRange(&context, request, &response);
      }));
  return response.deleted();
}

absl::StatusOr<TxnResult> EtcdClient::txn(const Txn& txn) {
  const etcdserverpb::TxnRequest& request = txn.request();
  std::string first_key = request.compare_size() > 0 ? request.compare(0).key() : "";
  etcdserverpb::TxnResponse response;
  RETURN_IF_ERROR(callWithFailover(
      fmt::format("etcd transaction on {}", first_key), /*idempotent=*/false,
      [&](const Member& member, grpc::ClientContext& context) {
        return etcdserverpb::KV::NewStub(member.channel)->Txn(&context, request, &response);
      }));
  return TxnResult::fromProto(response);
}

absl::Status EtcdClient::compact(int64_t revision) {
  etcdserverpb::CompactionRequest request;
  request.set_revision(revision);
  etcdserverpb::CompactionResponse response;
  return callWithFailover(
      fmt::format("etcd compact to revision {}", revision), /*idempotent=*/true,
      [&](const Member& member, grpc::ClientContext& context) {
        return etcdserverpb::KV::NewStub(member.channel)->Compact(&context, request, &response);
      });
}

absl::StatusOr<Lease> EtcdClient::grantLease(absl::Duration ttl) {
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse response;
  // Idempotent in effect: a grant repeated after an unknown outcome can only leave an unused
  // lease behind, which expires after its TTL.
  RETURN_IF_ERROR(callWithFailover("etcd lease grant", /*idempotent=*/true,
                                   [&](const Member& member, grpc::ClientContext& context) {
                                     return etcdserverpb::Lease::NewStub(member.channel)
                                         ->LeaseGrant(&context, request, &response);
                                   }));
  if (!response.error().empty()) {
    return absl::UnavailableError(fmt::format("etcd lease grant: {}", response.error()));
  }
  return Lease{response.id(), absl::Seconds(response.ttl())};
}

absl::Status EtcdClient::revokeLease(int64_t lease) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  absl::Status status =
      callWithFailover(fmt::format("etcd lease revoke {:x}", lease), /*idempotent=*/true,
                       [&](const Member& member, grpc::ClientContext& context) {
                         return etcdserverpb::Lease::NewStub(member.channel)
                             ->LeaseRevoke(&context, request, &response);
                       });
  // The caller wants the lease gone: one that expired or was revoked by a first attempt whose
  // answer was lost is gone.
  if (absl::IsNotFound(status)) return absl::OkStatus();
  return status;
}

absl::StatusOr<absl::Duration> EtcdClient::leaseTimeToLive(int64_t lease) {
  etcdserverpb::LeaseTimeToLiveRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseTimeToLiveResponse response;
  RETURN_IF_ERROR(callWithFailover(fmt::format("etcd lease time-to-live {:x}", lease),
                                   /*idempotent=*/true,
                                   [&](const Member& member, grpc::ClientContext& context) {
                                     return etcdserverpb::Lease::NewStub(member.channel)
                                         ->LeaseTimeToLive(&context, request, &response);
                                   }));
  if (response.ttl() < 0) {
    return absl::NotFoundError(fmt::format("etcd lease {:x} has expired or never existed", lease));
  }
  return absl::Seconds(response.ttl());
}

std::unique_ptr<LeaseKeepAlive> EtcdClient::keepAlive(const Lease& lease) {
  return std::make_unique<LeaseKeepAlive>(*this, lease);
}

std::unique_ptr<Watch> EtcdClient::watch(const WatchOptions& options) {
  return std::make_unique<Watch>(*this, options);
}

}  // namespace flotilla::etcd
