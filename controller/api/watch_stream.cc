// ClusterServiceImpl::Watch: the server-streaming Watch of cluster.proto. It sends the
// current state of every object of the requested kinds, then follows an etcd watch of
// /flotilla/v1/ from the revision that state was read at, so that no change is missed in
// between. A host or VM is sent whole (record and status) whenever either key changes.
#include <set>

#include "common/etcd/watch.h"
#include "common/rpc/status.h"
#include "controller/api/cluster_service.h"

namespace flotilla::controller {
namespace {

struct KeyKind {
  v1::ObjectKind kind = v1::OBJECT_KIND_UNSPECIFIED;
  std::string name;  // host, vm, network, ... name; "POOL/NAME" for volumes
};

KeyKind classify(std::string_view key) {
  if (!key.starts_with(kKeyPrefix)) return {};
  std::string_view rest = key.substr(kKeyPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return {};
  const std::string_view kind = rest.substr(0, slash);
  const std::string name(rest.substr(slash + 1));
  if (kind == "hosts" || kind == "hosts-status") return {v1::OBJECT_KIND_HOST, name};
  if (kind == "vms" || kind == "vms-status") return {v1::OBJECT_KIND_VM, name};
  if (kind == "networks") return {v1::OBJECT_KIND_NETWORK, name};
  if (kind == "pools") return {v1::OBJECT_KIND_POOL, name};
  if (kind == "volumes") return {v1::OBJECT_KIND_VOLUME, name};
  if (kind == "migrations") return {v1::OBJECT_KIND_MIGRATION, name};
  if (kind == "drains") return {v1::OBJECT_KIND_DRAIN, name};
  if (kind == "events") return {v1::OBJECT_KIND_EVENT, name};
  return {};
}

template <typename M>
bool decodeInto(const etcd::KeyValue& kv, M* message) {
  return decodeValue(kv, *message).ok();
}

}  // namespace

grpc::Status ClusterServiceImpl::Watch(grpc::ServerContext* context,
                                       const v1::WatchRequest* request,
                                       grpc::ServerWriter<v1::WatchEvent>* writer) {
  std::set<int> kinds(request->kinds().begin(), request->kinds().end());
  auto wanted = [&](v1::ObjectKind kind) { return kinds.empty() || kinds.contains(kind); };

  // The current state, at one revision (only its revision when resuming).
  etcd::RangeOptions options;
  options.prefix = true;
  options.count_only = request->revision() > 0;
  auto all = etcd_.get(std::string(kKeyPrefix), options);
  if (!all.ok()) return toGrpcStatus(all.status());
  const int64_t from = request->revision() > 0 ? request->revision() : all->revision;
  std::set<std::pair<int, std::string>> composite_sent;
  auto sendObject = [&](const KeyKind& key_kind, int64_t revision) -> bool {
    v1::WatchEvent event;
    event.set_type(v1::WatchEvent::TYPE_PUT);
    event.set_kind(key_kind.kind);
    event.set_name(key_kind.name);
    event.set_revision(revision);
    if (key_kind.kind == v1::OBJECT_KIND_HOST) {
      auto host = readHost(key_kind.name);
      if (!host.ok()) {
        event.set_type(v1::WatchEvent::TYPE_DELETE);
      } else {
        *event.mutable_host() = std::move(*host);
      }
    } else if (key_kind.kind == v1::OBJECT_KIND_VM) {
      auto vm = readVm(key_kind.name);
      if (!vm.ok()) {
        event.set_type(v1::WatchEvent::TYPE_DELETE);
      } else {
        *event.mutable_vm() = std::move(*vm);
      }
    }
    return writer->Write(event);
  };
  auto sendKv = [&](const etcd::KeyValue& kv, bool deleted) -> bool {
    const KeyKind key_kind = classify(kv.key);
    if (key_kind.kind == v1::OBJECT_KIND_UNSPECIFIED || !wanted(key_kind.kind)) return true;
    if (key_kind.kind == v1::OBJECT_KIND_HOST || key_kind.kind == v1::OBJECT_KIND_VM) {
      return sendObject(key_kind, kv.mod_revision);
    }
    v1::WatchEvent event;
    event.set_type(deleted ? v1::WatchEvent::TYPE_DELETE : v1::WatchEvent::TYPE_PUT);
    event.set_kind(key_kind.kind);
    event.set_name(key_kind.name);
    event.set_revision(kv.mod_revision);
    if (!deleted) {
      bool ok = true;
      switch (key_kind.kind) {
        case v1::OBJECT_KIND_NETWORK:
          ok = decodeInto(kv, event.mutable_network());
          break;
        case v1::OBJECT_KIND_POOL:
          ok = decodeInto(kv, event.mutable_pool());
          break;
        case v1::OBJECT_KIND_VOLUME:
          ok = decodeInto(kv, event.mutable_volume());
          break;
        case v1::OBJECT_KIND_MIGRATION:
          ok = decodeInto(kv, event.mutable_migration());
          break;
        case v1::OBJECT_KIND_DRAIN:
          ok = decodeInto(kv, event.mutable_drain());
          break;
        case v1::OBJECT_KIND_EVENT:
          ok = decodeInto(kv, event.mutable_event());
          break;
        default:
          break;
      }
      if (!ok) return true;  // an undecodable value is skipped, not fatal to the stream
    }
    return writer->Write(event);
  };
  for (const etcd::KeyValue& kv : all->kvs) {
    const KeyKind key_kind = classify(kv.key);
    if (key_kind.kind == v1::OBJECT_KIND_HOST || key_kind.kind == v1::OBJECT_KIND_VM) {
      if (!wanted(key_kind.kind) || !composite_sent.insert({key_kind.kind, key_kind.name}).second) {
        continue;
      }
      if (!sendObject(key_kind, all->revision)) return grpc::Status::OK;
      continue;
    }
    if (key_kind.kind == v1::OBJECT_KIND_EVENT) continue;  // history: ListEvents
    if (!sendKv(kv, false)) return grpc::Status::OK;
  }

  etcd::Watch watch(etcd_, etcd::WatchOptions{.key = std::string(kKeyPrefix),
                                              .prefix = true,
                                              .start_revision = from + 1,
                                              .prev_kv = false});
  while (!context->IsCancelled()) {
    auto batch = watch.next(absl::Milliseconds(500));
    if (absl::IsDeadlineExceeded(batch.status())) continue;
    if (!batch.ok()) return toGrpcStatus(batch.status());
    for (const etcd::WatchEvent& event : batch->events) {
      if (!sendKv(event.kv, event.type == etcd::WatchEvent::Type::kDelete)) {
        return grpc::Status::OK;
      }
    }
  }
  return grpc::Status::OK;
}

}  // namespace flotilla::controller
