// The console's Watch stream (see cluster_watcher.h).
#include "gui/cluster_watcher.h"

#include <QMetaObject>
#include <algorithm>
#include <vector>

#include "common/rpc/channel.h"
#include "flotilla/v1/cluster.grpc.pb.h"

namespace flotilla::console {
namespace {

// Errors after which retrying the same request cannot help until the user changes something
// (endpoints, TLS files, the controller's version); the watcher keeps retrying slowly.
bool configurationError(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return true;
    default:
      return false;
  }
}

// Connects `channel` within `timeout`, checking `interrupt` every 100 ms: true once READY,
// false as soon as an attempt failed (see connectWithin in cli/client.cc for why
// TRANSIENT_FAILURE counts as failed at once).
bool connectWithin(grpc::Channel& channel, absl::Duration timeout,
                   const cli::Interrupt& interrupt) {
  const absl::Time deadline = absl::Now() + timeout;
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) return false;
    if (interrupt.triggered() || absl::Now() >= deadline) return false;
    const absl::Duration slice = std::min(absl::Milliseconds(100), deadline - absl::Now());
    channel.WaitForStateChange(state, deadlineAfter(slice));
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return true;
}

}  // namespace

ClusterWatcher::ClusterWatcher(cli::ClientOptions options, QObject* parent)
    : QObject(parent), options_(std::move(options)) {}

ClusterWatcher::~ClusterWatcher() {
  stop();
}

void ClusterWatcher::start() {
  if (thread_.joinable() || interrupt_.triggered()) return;
  thread_ = std::thread([this] { loop(); });
}

void ClusterWatcher::stop() {
  interrupt_.trigger();
  if (thread_.joinable()) thread_.join();
}

void ClusterWatcher::postState(State state, const QString& text) {
  QMetaObject::invokeMethod(
      this,
      [this, state, text] {
        state_ = state;
        state_text_ = text;
        Q_EMIT stateChanged(state, text);
      },
      Qt::QueuedConnection);
}

void ClusterWatcher::postEvent(const v1::WatchEvent& event) {
  QMetaObject::invokeMethod(
      this,
      [this, event] {
        revision_ = std::max(revision_, event.revision());
        Q_EMIT eventReceived(event);
      },
      Qt::QueuedConnection);
}

void ClusterWatcher::loop() {
  const std::vector<std::string>& targets = options_.endpoints;
  if (targets.empty()) {
    postState(State::kFailed, tr("no controller endpoints: use File → Connect"));
    return;
  }
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const std::string& target : targets) {
    auto channel = makeChannel(target, options_.channel);
    if (!channel.ok()) {
      postState(State::kFailed, QString::fromStdString(std::string(channel.status().message())));
      return;
    }
    channels.push_back(*channel);
  }

  int64_t revision = 0;  // the last revision seen on this thread (0: from the full state)
  size_t index = 0;
  size_t refused = 0;  // endpoints refused in a row
  absl::Duration backoff = absl::Milliseconds(100);
  bool streamed = false;
  while (!interrupt_.triggered()) {
    const QString target = QString::fromStdString(targets[index]);
    postState(streamed ? State::kReconnecting : State::kConnecting,
              tr("connecting to %1").arg(target));
    if (!connectWithin(*channels[index], options_.connect_timeout, interrupt_)) {
      if (interrupt_.triggered()) break;
      index = (index + 1) % targets.size();
      if (++refused >= targets.size()) {
        // A whole round refused: say so, wait a little before the next round.
        postState(State::kReconnecting,
                  tr("no controller reachable (%1 endpoint(s)); retrying").arg(targets.size()));
        refused = 0;
        if (!interrupt_.sleepFor(backoff)) break;
        backoff = std::min(backoff * 2, absl::Seconds(5));
      }
      continue;
    }
    refused = 0;

    auto stub = v1::ClusterService::NewStub(channels[index]);
    grpc::ClientContext context;
    auto cancel = interrupt_.subscribe([&context] { context.TryCancel(); });
    v1::WatchRequest request;
    request.set_revision(revision);
    // What the console shows (networks, pools and volumes are not).
    for (v1::ObjectKind kind : {v1::OBJECT_KIND_HOST, v1::OBJECT_KIND_VM, v1::OBJECT_KIND_MIGRATION,
                                v1::OBJECT_KIND_DRAIN, v1::OBJECT_KIND_EVENT}) {
      request.add_kinds(kind);
    }
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader = stub->Watch(&context, request);
    streamed = true;
    postState(State::kConnected, tr("connected to %1").arg(target));
    v1::WatchEvent event;
    while (reader->Read(&event)) {
      backoff = absl::Milliseconds(100);
      revision = std::max(revision, event.revision());
      postEvent(event);
    }
    const grpc::Status status = reader->Finish();
    if (interrupt_.triggered()) break;
    if (status.error_code() == grpc::StatusCode::OUT_OF_RANGE) {
      // The history after `revision` was compacted: start again from the full state.
      revision = 0;
      QMetaObject::invokeMethod(
          this,
          [this] {
            revision_ = 0;
            Q_EMIT resetting();
          },
          Qt::QueuedConnection);
      continue;
    }
    const QString why =
        status.ok() ? tr("closed by the server") : QString::fromStdString(status.error_message());
    if (configurationError(status.error_code())) {
      postState(State::kFailed, tr("watch refused by %1: %2").arg(target, why));
      if (!interrupt_.sleepFor(absl::Seconds(5))) break;
    } else {
      postState(State::kReconnecting, tr("the watch stream from %1 ended (%2)").arg(target, why));
    }
    index = (index + 1) % targets.size();
    if (!interrupt_.sleepFor(backoff)) break;
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace flotilla::console
