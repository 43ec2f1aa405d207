// Leader election over etcd's v3election service (see election.h).
#include "common/etcd/election.h"

#include <utility>

#include "common/etcd/client.h"
#include "common/rpc/status.h"
#include "common/status.h"

namespace flotilla::etcd {
namespace {

v3electionpb::LeaderKey toProto(const LeaderKey& leader) {
  v3electionpb::LeaderKey proto;
  proto.set_name(leader.name);
  proto.set_key(leader.key);
  proto.set_rev(leader.revision);
  proto.set_lease(leader.lease);
  return proto;
}

// The v3election service reports "nobody leads" and "you no longer lead" as errors with
// these messages (etcd's rpctypes).
bool isNoLeader(const grpc::Status& status) {
  return status.error_message().find("election: no leader") != std::string::npos;
}
bool isNotLeader(const grpc::Status& status) {
  return status.error_message().find("election: not leader") != std::string::npos;
}

}  // namespace

Election::Election(EtcdClient& client, std::string name)
    : client_(client), name_(std::move(name)), log_(Logger("etcd").with("election", name_)) {}

absl::StatusOr<LeaderKey> Election::campaign(int64_t lease, std::string_view value,
                                             std::stop_token stop) {
  v3electionpb::CampaignRequest request;
  request.set_name(name_);
  request.set_lease(lease);
  request.set_value(std::string(value));
  Backoff backoff;
  while (true) {
    EtcdClient::Member member = client_.currentMember();
    if (stop.stop_requested()) {
      return absl::CancelledError(fmt::format("campaign in election {} was cancelled", name_));
    }
    if (!client_.connectMember(member)) {
      client_.memberFailed(member);
      absl::SleepFor(backoff.next());
      continue;
    }
    grpc::ClientContext context;
    // Campaign blocks on the member until this candidate leads; a stop request cancels it,
    // and the member then withdraws the candidacy.
    std::stop_callback cancel_on_stop(stop, [&context] { context.TryCancel(); });
    v3electionpb::CampaignResponse response;
    grpc::Status status =
        v3electionpb::Election::NewStub(member.channel)->Campaign(&context, request, &response);
    if (status.ok()) {
      const v3electionpb::LeaderKey& key = response.leader();
      log_.info("leads with key {} (revision {})", key.key(), key.rev());
      return LeaderKey{key.name(), key.key(), key.rev(), key.lease()};
    }
    if (stop.stop_requested()) {
      return absl::CancelledError(fmt::format("campaign in election {} was cancelled", name_));
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return fromGrpcStatus(
          status, fmt::format("etcd campaign in election {} at {}", name_, member.endpoint));
    }
    client_.memberFailed(member);
    log_.info("campaign interrupted at {} ({}); resuming on {}", member.endpoint,
              status.error_message(), client_.currentEndpoint());
    absl::SleepFor(backoff.next());
  }
}

absl::Status Election::proclaim(const LeaderKey& leader, std::string_view value) {
  v3electionpb::ProclaimRequest request;
  *request.mutable_leader() = toProto(leader);
  request.set_value(std::string(value));
  v3electionpb::ProclaimResponse response;
  grpc::Status rpc_status;
  absl::Status status = client_.callWithFailover(
      fmt::format("etcd proclaim in election {}", name_), /*idempotent=*/true,
      [&](const EtcdClient::Member& member, grpc::ClientContext& context) {
        rpc_status =
            v3electionpb::Election::NewStub(member.channel)->Proclaim(&context, request, &response);
        return rpc_status;
      });
  if (!status.ok() && isNotLeader(rpc_status)) {
    return absl::FailedPreconditionError(
        fmt::format("cannot proclaim in election {}: key {} no longer leads", name_, leader.key));
  }
  return status;
}

absl::StatusOr<KeyValue> Election::leader() {
  v3electionpb::LeaderRequest request;
  request.set_name(name_);
  v3electionpb::LeaderResponse response;
  grpc::Status rpc_status;
  absl::Status status = client_.callWithFailover(
      fmt::format("etcd leader of election {}", name_), /*idempotent=*/true,
      [&](const EtcdClient::Member& member, grpc::ClientContext& context) {
        rpc_status =
            v3electionpb::Election::NewStub(member.channel)->Leader(&context, request, &response);
        return rpc_status;
      });
  if (!status.ok() && isNoLeader(rpc_status)) {
    return absl::NotFoundError(fmt::format("election {} has no leader", name_));
  }
  RETURN_IF_ERROR(status);
  return KeyValue::fromProto(response.kv());
}

absl::Status Election::resign(const LeaderKey& leader) {
  v3electionpb::ResignRequest request;
  *request.mutable_leader() = toProto(leader);
  v3electionpb::ResignResponse response;
  RETURN_IF_ERROR(client_.callWithFailover(
      fmt::format("etcd resign from election {}", name_), /*idempotent=*/true,
      [&](const EtcdClient::Member& member, grpc::ClientContext& context) {
        return v3electionpb::Election::NewStub(member.channel)
            ->Resign(&context, request, &response);
      }));
  log_.info("resigned (key {})", leader.key);
  return absl::OkStatus();
}

std::unique_ptr<Observation> Election::observe() {
  return std::make_unique<Observation>(client_, name_);
}

Observation::Observation(EtcdClient& client, std::string name)
    : client_(client), name_(std::move(name)), log_(Logger("etcd").with("observe", name_)) {
  worker_.start("etcd-observe", [this] { run(); });
}

Observation::~Observation() {
  worker_.stop();
}

absl::StatusOr<KeyValue> Observation::next(absl::Duration timeout) {
  return queue_.next(timeout, fmt::format("observing election {}", name_));
}

void Observation::run() {
  Backoff backoff;
  while (!worker_.stopping()) {
    if (streamOnce(backoff)) break;
    reconnects_.fetch_add(1);
    if (!worker_.sleepFor(backoff.next())) break;
  }
  queue_.finish(absl::CancelledError(fmt::format("observation of election {} ended", name_)));
}

bool Observation::streamOnce(Backoff& backoff) {
  EtcdClient::Member member = client_.currentMember();
  if (!client_.connectMember(member)) {
    client_.memberFailed(member);
    log_.info("cannot connect to {}; trying {}", member.endpoint, client_.currentEndpoint());
    return false;
  }
  grpc::ClientContext context;
  context.AddMetadata("hasleader", "true");
  if (!worker_.attach(&context)) return true;
  v3electionpb::LeaderRequest request;
  request.set_name(name_);
  auto stream = v3electionpb::Election::NewStub(member.channel)->Observe(&context, request);
  v3electionpb::LeaderResponse response;
  while (stream->Read(&response)) {
    backoff.reset();  // a member that answers: the next failure retries soon
    KeyValue kv = KeyValue::fromProto(response.kv());
    // After a reconnection the member starts with the current leader again: skip it if it
    // was the last one delivered.
    if (kv.key == last_.key && kv.mod_revision == last_.mod_revision) continue;
    last_ = kv;
    queue_.push(std::move(kv));
  }
  grpc::Status status = stream->Finish();
  worker_.detach();
  if (worker_.stopping()) return true;
  client_.memberFailed(member);
  log_.info("stream from {} broke ({}); resuming on {}", member.endpoint, status.error_message(),
            client_.currentEndpoint());
  return false;
}

}  // namespace flotilla::etcd
