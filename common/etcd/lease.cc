// Lease keep-alive (see lease.h).
#include "common/etcd/lease.h"

#include <algorithm>
#include <memory>

#include "common/clock.h"
#include "common/rpc/channel.h"

namespace flotilla::etcd {

LeaseKeepAlive::LeaseKeepAlive(EtcdClient& client, Lease lease)
    : client_(client),
      lease_(lease),
      log_(Logger("etcd").with("lease", fmt::format("{:x}", lease.id))),
      last_renewal_(systemClock().monotonicNow()) {
  worker_.start("etcd-lease", [this] { run(); });
}

LeaseKeepAlive::~LeaseKeepAlive() {
  worker_.stop();
}

absl::Duration LeaseKeepAlive::lastRenewal() const {
  absl::MutexLock lock(&mu_);
  return last_renewal_;
}

uint64_t LeaseKeepAlive::renewals() const {
  absl::MutexLock lock(&mu_);
  return renewals_;
}

bool LeaseKeepAlive::lost() const {
  absl::MutexLock lock(&mu_);
  return lost_;
}

bool LeaseKeepAlive::waitLost(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&lost_), timeout);
  return lost_;
}

void LeaseKeepAlive::run() {
  const absl::Duration interval = std::max(lease_.ttl / 3, absl::Milliseconds(100));
  Backoff backoff;
  while (!worker_.stopping()) {
    absl::Status status = renewOnce(std::min(interval, client_.options().attempt_timeout));
    if (status.ok()) {
      backoff.reset();
      if (!worker_.sleepFor(interval)) return;
      continue;
    }
    if (absl::IsNotFound(status)) {
      log_.error("{}", status.message());
      absl::MutexLock lock(&mu_);
      lost_ = true;
      return;
    }
    if (worker_.stopping()) return;
    log_.warn("renewal failed: {}; retrying on {}", status.message(), client_.currentEndpoint());
    if (!worker_.sleepFor(std::min(backoff.next(), interval / 2))) return;
  }
}

absl::Status LeaseKeepAlive::renewOnce(absl::Duration timeout) {
  EtcdClient::Member member = client_.currentMember();
  if (!client_.connectMember(member, timeout)) {
    client_.memberFailed(member);
    return absl::UnavailableError(fmt::format("cannot connect to {}", member.endpoint));
  }
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(timeout));
  if (!worker_.attach(&context)) return absl::CancelledError("stopping");

  auto stub = etcdserverpb::Lease::NewStub(member.channel);
  auto stream = stub->LeaseKeepAlive(&context);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease_.id);
  etcdserverpb::LeaseKeepAliveResponse response;
  // etcd restarts the TTL somewhere between this moment and its answer: counting from the
  // send keeps lastRenewal() at or before etcd's own renewal, so that a fencing deadline
  // derived from it never falls after the lease's real expiry.
  const absl::Duration sent = systemClock().monotonicNow();
  bool answered = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  worker_.detach();

  if (!answered) {
    client_.memberFailed(member);
    return absl::UnavailableError(
        fmt::format("no answer from {}: {}", member.endpoint, status.error_message()));
  }
  if (response.ttl() <= 0) {
    return absl::NotFoundError(
        fmt::format("etcd lease {:x} has expired: everything bound to it was deleted", lease_.id));
  }
  absl::MutexLock lock(&mu_);
  last_renewal_ = sent;
  ++renewals_;
  return absl::OkStatus();
}

}  // namespace flotilla::etcd
