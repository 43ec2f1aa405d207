// Store: typed access to the cluster state in etcd (see store.h).
#include "controller/store/store.h"

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::controller {

std::string kindPrefix(std::string_view kind) {
  return fmt::format("{}{}/", kKeyPrefix, kind);
}
std::string hostKey(std::string_view name) {
  return kindPrefix("hosts") + std::string(name);
}
std::string hostStatusKey(std::string_view name) {
  return kindPrefix("hosts-status") + std::string(name);
}
std::string vmKey(std::string_view name) {
  return kindPrefix("vms") + std::string(name);
}
std::string vmStatusKey(std::string_view name) {
  return kindPrefix("vms-status") + std::string(name);
}
std::string networkKey(std::string_view name) {
  return kindPrefix("networks") + std::string(name);
}
std::string poolKey(std::string_view name) {
  return kindPrefix("pools") + std::string(name);
}
std::string volumeKey(std::string_view pool, std::string_view name) {
  return fmt::format("{}{}/{}", kindPrefix("volumes"), pool, name);
}
std::string migrationKey(std::string_view name) {
  return kindPrefix("migrations") + std::string(name);
}
std::string drainKey(std::string_view host) {
  return kindPrefix("drains") + std::string(host);
}
std::string eventsPrefix() {
  return kindPrefix("events");
}
std::string vlanClaimKey(uint32_t vlan) {
  return kindPrefix("network-vlans") + std::to_string(vlan);
}

std::string_view keyName(std::string_view key) {
  size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

absl::Status decodeValue(const etcd::KeyValue& kv, google::protobuf::MessageLite& message) {
  if (!message.ParseFromString(kv.value)) {
    return absl::DataLossError(
        fmt::format("etcd key {} does not hold a valid {} (written by an incompatible version?)",
                    kv.key, message.GetTypeName()));
  }
  return absl::OkStatus();
}

std::string encodeValue(const google::protobuf::MessageLite& message) {
  return message.SerializeAsString();
}

namespace {

template <typename M, typename Fn>
absl::Status readKind(Store& store, std::string_view kind, int64_t revision, Fn&& fn) {
  ASSIGN_OR_RETURN(std::vector<Versioned<M>> items, store.list<M>(kindPrefix(kind), revision));
  for (Versioned<M>& item : items) fn(std::string(keyName(item.key)), item);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ClusterView> Store::readView() {
  ClusterView view;
  // The first read fixes the revision; the others read at it, so the view is consistent.
  int64_t revision = 0;
  ASSIGN_OR_RETURN(std::vector<Versioned<v1::HostRecord>> hosts,
                   list<v1::HostRecord>(kindPrefix("hosts"), 0, &revision));
  view.revision = revision;
  for (Versioned<v1::HostRecord>& host : hosts) {
    std::string name(keyName(host.key));
    host.value.mutable_meta()->set_revision(host.mod_revision);
    view.hosts[name] = HostView{.name = name, .record = std::move(host.value), .status = {}};
  }
  RETURN_IF_ERROR(readKind<v1::HostStatus>(*this, "hosts-status", revision,
                                           [&](std::string name, Versioned<v1::HostStatus>& item) {
                                             HostView& host = view.hosts[name];
                                             host.name = name;
                                             host.status = std::move(item.value);
                                           }));
  RETURN_IF_ERROR(readKind<v1::VmRecord>(
      *this, "vms", revision, [&](std::string name, Versioned<v1::VmRecord>& item) {
        item.value.mutable_meta()->set_revision(item.mod_revision);
        VmView& vm = view.vms[name];
        vm.name = name;
        vm.record = std::move(item.value);
      }));
  RETURN_IF_ERROR(readKind<v1::VmStatus>(*this, "vms-status", revision,
                                         [&](std::string name, Versioned<v1::VmStatus>& item) {
                                           auto it = view.vms.find(name);
                                           if (it != view.vms.end())
                                             it->second.status = std::move(item.value);
                                         }));
  RETURN_IF_ERROR(readKind<v1::NetworkRecord>(
      *this, "networks", revision, [&](std::string name, Versioned<v1::NetworkRecord>& item) {
        view.networks[name] = std::move(item.value);
      }));
  RETURN_IF_ERROR(readKind<v1::PoolRecord>(*this, "pools", revision,
                                           [&](std::string name, Versioned<v1::PoolRecord>& item) {
                                             view.pools[name] = std::move(item.value);
                                           }));
  RETURN_IF_ERROR(readKind<v1::MigrationRecord>(
      *this, "migrations", revision, [&](std::string name, Versioned<v1::MigrationRecord>& item) {
        item.value.mutable_meta()->set_revision(item.mod_revision);
        view.migrations[name] = std::move(item.value);
      }));
  RETURN_IF_ERROR(readKind<v1::DrainRecord>(
      *this, "drains", revision, [&](std::string name, Versioned<v1::DrainRecord>& item) {
        item.value.mutable_meta()->set_revision(item.mod_revision);
        view.drains[name] = std::move(item.value);
      }));
  return view;
}

etcd::Txn LeaderWrite::txn() const {
  etcd::Txn txn;
  txn.ifCreateRevision(leader_.key, etcd::CompareOp::kEqual, leader_.revision);
  return txn;
}

absl::Status LeaderWrite::commit(const etcd::Txn& txn, std::string_view what) {
  ASSIGN_OR_RETURN(etcd::TxnResult result, client_.txn(txn));
  if (!result.succeeded) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: not written (this replica no longer leads, or the object changed meanwhile)", what));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::controller
