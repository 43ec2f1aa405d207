// ViewCache (see view_cache.h).
#include "controller/store/view_cache.h"

#include <algorithm>

#include "common/status.h"

namespace flotilla::controller {
namespace {

template <typename M>
absl::StatusOr<M> decode(const etcd::KeyValue& kv) {
  M message;
  RETURN_IF_ERROR(decodeValue(kv, message));
  return message;
}

}  // namespace

absl::Status ViewCache::reload() {
  ASSIGN_OR_RETURN(ClusterView view, store_.readView());
  view_ = std::move(view);
  unattached_.clear();
  return absl::OkStatus();
}

absl::Status ViewCache::apply(const etcd::WatchBatch& batch) {
  // A transaction's events share its revision: the view reaches it after the last of them.
  const int64_t seen = view_.revision;
  for (const etcd::WatchEvent& event : batch.events) {
    if (event.kv.mod_revision <= seen) continue;  // the view has it already
    RETURN_IF_ERROR(applyEvent(event));
    view_.revision = std::max(view_.revision, event.kv.mod_revision);
  }
  return absl::OkStatus();
}

absl::Status ViewCache::applyEvent(const etcd::WatchEvent& event) {
  std::string_view rest = event.kv.key;
  if (!rest.starts_with(kKeyPrefix)) return absl::OkStatus();
  rest.remove_prefix(kKeyPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return absl::OkStatus();
  const std::string_view kind = rest.substr(0, slash);
  const std::string name(rest.substr(slash + 1));
  const bool put = event.type == etcd::WatchEvent::Type::kPut;
  const int64_t revision = event.kv.mod_revision;

  if (kind == "hosts") {
    if (put) {
      ASSIGN_OR_RETURN(v1::HostRecord record, decode<v1::HostRecord>(event.kv));
      record.mutable_meta()->set_revision(revision);
      HostView& host = view_.hosts[name];
      host.name = name;
      host.record = std::move(record);
    } else if (auto host = view_.hosts.find(name); host != view_.hosts.end()) {
      if (host->second.status) {
        host->second.record = v1::HostRecord();
      } else {
        view_.hosts.erase(host);
      }
    }
  } else if (kind == "hosts-status") {
    if (put) {
      ASSIGN_OR_RETURN(v1::HostStatus status, decode<v1::HostStatus>(event.kv));
      HostView& host = view_.hosts[name];
      host.name = name;
      host.status = std::move(status);
    } else if (auto host = view_.hosts.find(name); host != view_.hosts.end()) {
      // A host that never got a record (the leader had not seen it yet) leaves with it.
      if (host->second.record.meta().name().empty()) {
        view_.hosts.erase(host);
      } else {
        host->second.status.reset();
      }
    }
  } else if (kind == "vms") {
    if (put) {
      ASSIGN_OR_RETURN(v1::VmRecord record, decode<v1::VmRecord>(event.kv));
      record.mutable_meta()->set_revision(revision);
      VmView& vm = view_.vms[name];
      vm.name = name;
      vm.record = std::move(record);
      if (auto status = unattached_.find(name); status != unattached_.end()) {
        vm.status = std::move(status->second);
        unattached_.erase(status);
      }
    } else {
      view_.vms.erase(name);
    }
  } else if (kind == "vms-status") {
    auto vm = view_.vms.find(name);
    if (put) {
      ASSIGN_OR_RETURN(v1::VmStatus status, decode<v1::VmStatus>(event.kv));
      if (vm != view_.vms.end()) {
        vm->second.status = std::move(status);
      } else {
        unattached_[name] = std::move(status);
      }
    } else {
      unattached_.erase(name);
      if (vm != view_.vms.end()) vm->second.status = v1::VmStatus();
    }
  } else if (kind == "networks") {
    if (put) {
      ASSIGN_OR_RETURN(view_.networks[name], decode<v1::NetworkRecord>(event.kv));
    } else {
      view_.networks.erase(name);
    }
  } else if (kind == "pools") {
    if (put) {
      ASSIGN_OR_RETURN(view_.pools[name], decode<v1::PoolRecord>(event.kv));
    } else {
      view_.pools.erase(name);
    }
  } else if (kind == "migrations") {
    if (put) {
      ASSIGN_OR_RETURN(v1::MigrationRecord migration, decode<v1::MigrationRecord>(event.kv));
      migration.mutable_meta()->set_revision(revision);
      view_.migrations[name] = std::move(migration);
    } else {
      view_.migrations.erase(name);
    }
  } else if (kind == "drains") {
    if (put) {
      ASSIGN_OR_RETURN(v1::DrainRecord drain, decode<v1::DrainRecord>(event.kv));
      drain.mutable_meta()->set_revision(revision);
      view_.drains[name] = std::move(drain);
    } else {
      view_.drains.erase(name);
    }
  }
  return absl::OkStatus();
}

}  // namespace flotilla::controller
