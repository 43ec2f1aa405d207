// Many etcd leases kept alive over a few LeaseKeepAlive streams to the etcd leader (see
// lease_keeper.h).
#include "controller/sim/lease_keeper.h"

#include <algorithm>
#include <thread>

#include "common/clock.h"
#include "common/thread.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "fmt/format.h"
#include "grpcpp/client_context.h"

namespace flotilla::sim {
namespace {

constexpr absl::Duration kLeaderCheckInterval = absl::Seconds(1);
constexpr absl::Duration kLeaderCheckTimeout = absl::Milliseconds(500);
// How long a stream stays on the member it fell back to after the leader's member failed,
// before it follows the leader (again) when the leader is elsewhere.
constexpr absl::Duration kFallbackStay = absl::Seconds(10);

}  // namespace

absl::StatusOr<std::unique_ptr<LeaseKeeper>> LeaseKeeper::start(LeaseKeeperOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("LeaseKeeper: no etcd endpoint given");
  }
  if (options.streams < 1) return absl::InvalidArgumentError("LeaseKeeper: streams must be >= 1");
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const std::string& endpoint : options.endpoints) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = makeChannel(endpoint, options.channel);
    if (!channel.ok()) return channel.status();
    channels.push_back(std::move(*channel));
  }
  std::unique_ptr<LeaseKeeper> keeper(new LeaseKeeper(std::move(options), std::move(channels)));
  LeaseKeeper* raw = keeper.get();
  // Streams start at the leader when one answers now.
  raw->watchLeader();
  raw->leader_watch_.start("sim-lease-lead", [raw] {
    while (raw->leader_watch_.sleepFor(kLeaderCheckInterval)) raw->watchLeader();
  });
  for (auto& stream : raw->streams_) {
    Stream* s = stream.get();
    s->worker.start(fmt::format("sim-lease-{}", s->index), [raw, s] { raw->run(*s); });
  }
  return keeper;
}

LeaseKeeper::LeaseKeeper(LeaseKeeperOptions options,
                         std::vector<std::shared_ptr<grpc::Channel>> channels)
    : options_(std::move(options)),
      channels_(std::move(channels)),
      log_("sim.leases"),
      warnings_(systemClock(), 5, absl::Minutes(1)),
      expiries_(systemClock(), 10, absl::Minutes(1)) {
  for (int i = 0; i < options_.streams; ++i) {
    streams_.push_back(std::make_unique<Stream>());
    streams_.back()->index = static_cast<size_t>(i);
  }
}

LeaseKeeper::~LeaseKeeper() {
  leader_watch_.stop();
  for (auto& stream : streams_) stream->worker.stop();
}

void LeaseKeeper::add(int64_t lease) {
  absl::MutexLock lock(&mu_);
  if (stream_of_.contains(lease)) return;
  Stream* least = streams_.front().get();
  for (auto& stream : streams_) {
    if (stream->leases.size() < least->leases.size()) least = stream.get();
  }
  least->leases.insert(lease);
  stream_of_[lease] = least;
}

void LeaseKeeper::remove(int64_t lease) {
  absl::MutexLock lock(&mu_);
  auto it = stream_of_.find(lease);
  if (it == stream_of_.end()) return;
  it->second->leases.erase(lease);
  stream_of_.erase(it);
}

size_t LeaseKeeper::size() const {
  absl::MutexLock lock(&mu_);
  return stream_of_.size();
}

LeaseKeeper::Stats LeaseKeeper::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  stats.member = preferred_.load();
  return stats;
}

void LeaseKeeper::watchLeader() {
  for (size_t i = 0; i < channels_.size(); ++i) {
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(kLeaderCheckTimeout));
    etcdserverpb::StatusResponse status;
    auto stub = etcdserverpb::Maintenance::NewStub(channels_[i]);
    if (!stub->Status(&context, etcdserverpb::StatusRequest(), &status).ok()) continue;
    if (status.leader() != 0 && status.header().member_id() == status.leader()) {
      preferred_ = i;
      return;
    }
  }
}

void LeaseKeeper::onResponse(Stream& stream, const etcdserverpb::LeaseKeepAliveResponse& response) {
  bool lost = false;
  {
    absl::MutexLock lock(&mu_);
    ++stream.answers;
    if (response.ttl() > 0) {
      ++stats_.renewals;
    } else if (stream.leases.erase(response.id()) > 0) {
      stream_of_.erase(response.id());
      ++stats_.lost;
      lost = true;
    }
  }
  if (lost) {
    log_.limited(expiries_, LogLevel::kWarn,
                 "etcd lease {:x} has expired: its keys are gone (its host takes a new one)",
                 response.id());
    if (options_.on_lost) options_.on_lost(response.id());
  }
}

void LeaseKeeper::run(Stream& stream) {
  size_t member = preferred_.load();
  absl::Time stay_until = absl::InfinitePast();
  etcd::Backoff backoff;
  while (!stream.worker.stopping()) {
    bool renewed = false;
    const StreamEnd end = streamOnce(stream, member, stay_until, renewed);
    if (end == StreamEnd::kStopped || stream.worker.stopping()) return;
    // A stream that renewed its leases before it failed starts the pauses over.
    if (renewed) backoff.reset();
    {
      absl::MutexLock lock(&mu_);
      ++stats_.reconnects;
    }
    if (end == StreamEnd::kMoved) {
      member = preferred_.load();  // follow the leader
      stay_until = absl::InfinitePast();
      backoff.reset();
      continue;
    }
    // The member failed: the next one, for a while at least.
    member = (member + 1) % channels_.size();
    stay_until = absl::Now() + kFallbackStay;
    if (!stream.worker.sleepFor(backoff.next())) return;
  }
}

LeaseKeeper::StreamEnd LeaseKeeper::streamOnce(Stream& stream, size_t member, absl::Time stay_until,
                                               bool& renewed) {
  const std::string& endpoint = options_.endpoints[member];
  if (!waitConnected(*channels_[member], options_.channel.connect_timeout)) {
    log_.limited(warnings_, LogLevel::kWarn,
                 "cannot connect to etcd member {}: trying the next one", endpoint);
    return StreamEnd::kFailed;
  }
  grpc::ClientContext context;
  if (!stream.worker.attach(&context)) return StreamEnd::kStopped;
  auto stub = etcdserverpb::Lease::NewStub(channels_[member]);
  auto rpc = stub->LeaseKeepAlive(&context);
  {
    absl::MutexLock lock(&mu_);
    stream.reader_done = false;
  }
  std::jthread reader = namedThread("sim-lease-read", [this, &stream, &rpc] {
    etcdserverpb::LeaseKeepAliveResponse response;
    while (rpc->Read(&response)) onResponse(stream, response);
    absl::MutexLock lock(&mu_);
    stream.reader_done = true;
  });

  StreamEnd end = StreamEnd::kStopped;
  while (!stream.worker.stopping()) {
    if (preferred_.load() != member && absl::Now() >= stay_until) {
      end = StreamEnd::kMoved;
      break;
    }
    const absl::Time round_start = absl::Now();
    std::vector<int64_t> leases;
    uint64_t answered_before = 0;
    {
      absl::MutexLock lock(&mu_);
      leases.assign(stream.leases.begin(), stream.leases.end());
      answered_before = stream.answers;
      ++stats_.rounds;
    }
    etcdserverpb::LeaseKeepAliveRequest request;
    bool written = true;
    for (int64_t lease : leases) {
      request.set_id(lease);
      if (!rpc->Write(request)) {
        written = false;
        break;
      }
    }
    if (!written) {
      end = StreamEnd::kFailed;
      break;
    }
    // Every request of the round is answered, or the member is left when answers stop coming
    // for answer_timeout (progress is timed, not the whole round).
    const uint64_t expected = answered_before + leases.size();
    bool answered = false;
    {
      absl::MutexLock lock(&mu_);
      uint64_t seen = answered_before;
      while (stream.answers < expected && !stream.reader_done) {
        auto progressed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stream.answers != seen || stream.reader_done;
        };
        if (!mu_.AwaitWithTimeout(absl::Condition(&progressed), options_.answer_timeout)) {
          log_.limited(
              warnings_, LogLevel::kWarn,
              "etcd member {} answered {} of {} lease renewals, then nothing for {}: leaving it",
              endpoint, stream.answers - answered_before, leases.size(),
              absl::FormatDuration(options_.answer_timeout));
          break;
        }
        seen = stream.answers;
      }
      answered = stream.answers >= expected;
    }
    if (!answered) {
      end = StreamEnd::kFailed;
      break;
    }
    renewed = true;
    const absl::Duration spent = absl::Now() - round_start;
    if (spent < options_.interval && !stream.worker.sleepFor(options_.interval - spent)) break;
  }
  // A stream the member ended tells why; one we leave is cancelled.
  bool ended_by_member = false;
  {
    absl::MutexLock lock(&mu_);
    ended_by_member = stream.reader_done;
  }
  if (!ended_by_member) context.TryCancel();
  reader.join();
  grpc::Status status = rpc->Finish();
  stream.worker.detach();
  if (stream.worker.stopping()) return StreamEnd::kStopped;
  if (ended_by_member) {
    log_.limited(warnings_, LogLevel::kWarn, "lease keep-alive stream to {} ended: {}", endpoint,
                 status.ok() ? "closed by the member" : status.error_message());
    return StreamEnd::kFailed;
  }
  return end;
}

}  // namespace flotilla::sim
