// The fake ClusterService's bookkeeping: the change log that Watch streams follow, snapshots,
// scripted states, the Watch RPC itself, and the server (see fake_cluster_service.h).
#include "tests/unit/cli/fake_cluster_service.h"

#include <algorithm>

#include "fmt/format.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace flotilla::cli::testing {

// --- Internals.

std::optional<grpc::Status> FakeClusterService::enter(const std::string& method,
                                                      const google::protobuf::Message& request) {
  requests_.emplace_back(method, request.SerializeAsString());
  if (auto it = method_failures_.find(method); it != method_failures_.end()) return it->second;
  return failure_;
}

void FakeClusterService::publish(v1::WatchEvent event) {
  event.set_revision(++revision_);
  log_.push_back(std::move(event));
}

void FakeClusterService::publishHost(const std::string& name) {
  v1::WatchEvent event;
  event.set_kind(v1::OBJECT_KIND_HOST);
  event.set_name(name);
  if (auto it = hosts_.find(name); it != hosts_.end()) {
    event.set_type(v1::WatchEvent::TYPE_PUT);
    *event.mutable_host() = it->second;
  } else {
    event.set_type(v1::WatchEvent::TYPE_DELETE);
  }
  publish(std::move(event));
}

void FakeClusterService::publishVm(const std::string& name) {
  v1::WatchEvent event;
  event.set_kind(v1::OBJECT_KIND_VM);
  event.set_name(name);
  if (auto it = vms_.find(name); it != vms_.end()) {
    event.set_type(v1::WatchEvent::TYPE_PUT);
    *event.mutable_vm() = it->second;
  } else {
    event.set_type(v1::WatchEvent::TYPE_DELETE);
  }
  publish(std::move(event));
}

void FakeClusterService::publishMigration(const std::string& name) {
  v1::WatchEvent event;
  event.set_kind(v1::OBJECT_KIND_MIGRATION);
  event.set_name(name);
  if (auto it = migrations_.find(name); it != migrations_.end()) {
    event.set_type(v1::WatchEvent::TYPE_PUT);
    *event.mutable_migration() = it->second;
  } else {
    event.set_type(v1::WatchEvent::TYPE_DELETE);
  }
  publish(std::move(event));
}

void FakeClusterService::publishDrain(const std::string& name) {
  v1::WatchEvent event;
  event.set_kind(v1::OBJECT_KIND_DRAIN);
  event.set_name(name);
  if (auto it = drains_.find(name); it != drains_.end()) {
    event.set_type(v1::WatchEvent::TYPE_PUT);
    *event.mutable_drain() = it->second;
  } else {
    event.set_type(v1::WatchEvent::TYPE_DELETE);
  }
  publish(std::move(event));
}

void FakeClusterService::publishEvent(const v1::Event& record) {
  v1::WatchEvent event;
  event.set_kind(v1::OBJECT_KIND_EVENT);
  event.set_name(fmt::format("{:020}", events_.size()));
  event.set_type(v1::WatchEvent::TYPE_PUT);
  *event.mutable_event() = record;
  publish(std::move(event));
}

std::vector<v1::WatchEvent> FakeClusterService::snapshot(
    const std::vector<v1::ObjectKind>& kinds) const {
  auto wanted = [&kinds](v1::ObjectKind kind) {
    return kinds.empty() || std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
  };
  std::vector<v1::WatchEvent> events;
  auto put = [&](v1::ObjectKind kind, const std::string& name) {
    v1::WatchEvent event;
    event.set_type(v1::WatchEvent::TYPE_PUT);
    event.set_kind(kind);
    event.set_name(name);
    event.set_revision(revision_);
    return event;
  };
  if (wanted(v1::OBJECT_KIND_HOST)) {
    for (const auto& [name, host] : hosts_) {
      events.push_back(put(v1::OBJECT_KIND_HOST, name));
      *events.back().mutable_host() = host;
    }
  }
  if (wanted(v1::OBJECT_KIND_VM)) {
    for (const auto& [name, vm] : vms_) {
      events.push_back(put(v1::OBJECT_KIND_VM, name));
      *events.back().mutable_vm() = vm;
    }
  }
  if (wanted(v1::OBJECT_KIND_MIGRATION)) {
    for (const auto& [name, migration] : migrations_) {
      events.push_back(put(v1::OBJECT_KIND_MIGRATION, name));
      *events.back().mutable_migration() = migration;
    }
  }
  if (wanted(v1::OBJECT_KIND_DRAIN)) {
    for (const auto& [name, drain] : drains_) {
      events.push_back(put(v1::OBJECT_KIND_DRAIN, name));
      *events.back().mutable_drain() = drain;
    }
  }
  return events;
}

void FakeClusterService::delivered(const v1::WatchEvent& event) {
  ++delivered_;
  if (event.has_migration() && event.name() == scripted_migration_ && !migration_script_.empty()) {
    v1::MigrationRecord next = migration_script_.front();
    migration_script_.pop_front();
    next.mutable_meta()->set_name(event.name());
    migrations_[event.name()] = next;
    publishMigration(event.name());
  }
  if (event.has_drain() && event.name() == scripted_drain_ && !drain_script_.empty()) {
    v1::DrainRecord next = drain_script_.front();
    drain_script_.pop_front();
    next.mutable_meta()->set_name(event.name());
    drains_[event.name()] = next;
    publishDrain(event.name());
  }
}

// --- Watch.

grpc::Status FakeClusterService::Watch(grpc::ServerContext* context,
                                       const v1::WatchRequest* request,
                                       grpc::ServerWriter<v1::WatchEvent>* writer) {
  std::vector<v1::ObjectKind> kinds;
  for (int kind : request->kinds()) kinds.push_back(static_cast<v1::ObjectKind>(kind));
  auto wanted = [&kinds](const v1::WatchEvent& event) {
    return kinds.empty() || std::find(kinds.begin(), kinds.end(), event.kind()) != kinds.end();
  };
  std::vector<v1::WatchEvent> pending;
  size_t position = 0;
  int break_after = -1;
  int generation = 0;
  {
    absl::MutexLock lock(&mu_);
    if (auto failure = enter("Watch", *request)) return *failure;
    if (watch_disabled_) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no Watch here");
    if (request->revision() > 0) {
      // Resuming: only the changes after that revision, if the log still has them.
      if (request->revision() < compacted_revision_) {
        return grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                            fmt::format("revision {} was compacted (oldest kept: {}): watch "
                                        "again from revision 0",
                                        request->revision(), compacted_revision_));
      }
      for (const v1::WatchEvent& event : log_) {
        if (event.revision() > request->revision() && wanted(event)) pending.push_back(event);
      }
    } else {
      pending = snapshot(kinds);
    }
    position = log_.size();
    break_after = break_watch_after_;
    generation = watch_generation_;
  }
  int sent = 0;
  const grpc::Status broken(grpc::StatusCode::UNAVAILABLE, "fake: the watch stream broke");
  auto brokenNow = [this, generation] {
    absl::MutexLock lock(&mu_);
    return watch_generation_ != generation;
  };
  while (!context->IsCancelled()) {
    if (brokenNow()) return broken;
    for (const v1::WatchEvent& event : pending) {
      if (break_after >= 0 && sent >= break_after) return broken;
      if (brokenNow()) return broken;
      if (!writer->Write(event)) return grpc::Status::OK;
      ++sent;
      absl::MutexLock lock(&mu_);
      delivered(event);
    }
    pending.clear();
    absl::MutexLock lock(&mu_);
    auto changed = [this, position, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return log_.size() > position || watch_generation_ != generation;
    };
    // Wakes up now and then to notice a cancelled stream.
    mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Milliseconds(20));
    for (; position < log_.size(); ++position) {
      if (wanted(log_[position])) pending.push_back(log_[position]);
    }
  }
  return grpc::Status::OK;
}

// --- The server.

FakeClusterServer::FakeClusterServer(std::string replica) : service_(std::move(replica)) {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  endpoint_ = fmt::format("127.0.0.1:{}", port);
}

FakeClusterServer::~FakeClusterServer() {
  // Open Watch streams end when their clients cancel; give them a deadline anyway.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

}  // namespace flotilla::cli::testing
