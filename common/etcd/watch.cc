// Resumable watch (see watch.h).
#include "common/etcd/watch.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "common/etcd/client.h"
#include "common/status.h"

namespace flotilla::etcd {

Watch::Watch(EtcdClient& client, WatchOptions options)
    : client_(client),
      options_(std::move(options)),
      log_(Logger("etcd").with("watch", options_.key)),
      next_revision_(options_.start_revision) {
  worker_.start("etcd-watch", [this] { run(); });
}

Watch::~Watch() {
  worker_.stop();
}

void Watch::cancel() {
  worker_.stop();
  queue_.finish(absl::CancelledError(fmt::format("etcd watch on {} was cancelled", options_.key)));
}

absl::StatusOr<WatchBatch> Watch::next(absl::Duration timeout) {
  return queue_.next(timeout, fmt::format("etcd watch on {}", options_.key));
}

void Watch::run() {
  Backoff backoff;
  while (!worker_.stopping()) {
    if (streamOnce(backoff)) return;
    reconnects_.fetch_add(1);
    if (!worker_.sleepFor(backoff.next())) break;
  }
  queue_.finish(absl::CancelledError(fmt::format("etcd watch on {} was cancelled", options_.key)));
}

bool Watch::streamOnce(Backoff& backoff) {
  EtcdClient::Member member = client_.currentMember();
  if (!client_.connectMember(member)) {
    client_.memberFailed(member);
    log_.info("cannot connect to {}; trying {}", member.endpoint, client_.currentEndpoint());
    return false;
  }
  grpc::ClientContext context;
  // Ask the member to end the watch when it loses its leader, as etcd's own client does
  // (WithRequireLeader): a partitioned member would otherwise keep a watch that sees nothing.
  context.AddMetadata("hasleader", "true");
  if (!worker_.attach(&context)) return true;

  auto stub = etcdserverpb::Watch::NewStub(member.channel);
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      stream = stub->Watch(&context);

  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(options_.key);
  if (options_.prefix) create->set_range_end(prefixRangeEnd(options_.key));
  create->set_start_revision(next_revision_);
  create->set_prev_kv(options_.prev_kv);
  create->set_progress_notify(true);

  bool ended = false;      // the watch is over for good (compacted)
  bool cut_by_us = false;  // we stop reading before the server closed the stream
  std::string reason;
  etcdserverpb::WatchResponse response;
  if (stream->Write(request)) {
    while (stream->Read(&response)) {
      if (response.compact_revision() != 0) {
        queue_.finish(absl::OutOfRangeError(fmt::format(
            "etcd watch on {} from revision {}: the history was compacted up to revision {}; "
            "re-read the keys and watch again from the revision of that read",
            options_.key, next_revision_, response.compact_revision())));
        ended = cut_by_us = true;
        break;
      }
      if (response.canceled()) {
        reason = fmt::format("the member ended the watch: {}", response.cancel_reason());
        cut_by_us = true;
        break;
      }
      if (response.created()) {
        backoff.reset();  // a member that took the watch: the next failure retries soon
        // With start revision 0 the watch begins after the revision current at creation.
        if (next_revision_ == 0) next_revision_ = response.header().revision() + 1;
        continue;
      }
      if (response.events_size() == 0) {
        // A progress notification: every event up to the header's revision was delivered.
        next_revision_ = std::max(next_revision_, response.header().revision() + 1);
        continue;
      }
      WatchBatch batch;
      for (const mvccpb::Event& event : response.events()) {
        // Defensive: never deliver a revision twice, whatever a member resends.
        if (event.kv().mod_revision() < next_revision_) continue;
        WatchEvent& out = batch.events.emplace_back();
        out.type = event.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                         : WatchEvent::Type::kPut;
        out.kv = KeyValue::fromProto(event.kv());
        if (event.has_prev_kv()) out.prev_kv = KeyValue::fromProto(event.prev_kv());
      }
      if (batch.events.empty()) continue;
      next_revision_ = batch.events.back().kv.mod_revision + 1;
      queue_.push(std::move(batch));
    }
  }
  if (cut_by_us) context.TryCancel();
  grpc::Status status = stream->Finish();
  worker_.detach();
  if (ended || worker_.stopping()) return true;

  if (reason.empty()) reason = fmt::format("stream broke: {}", status.error_message());
  client_.memberFailed(member);
  log_.info("{} at {}; resuming from revision {} on {}", reason, member.endpoint, next_revision_,
            client_.currentEndpoint());
  return false;
}

}  // namespace flotilla::etcd
