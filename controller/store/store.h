// Store: the controller's typed access to the cluster state in etcd (docs/controller.md
// "etcd layout"). Values are binary protobuf; every write is a transaction conditioned on
// the revision its writer read, so that concurrent writers never lose each other's updates:
// - API writes compare the object's mod_revision as read (ABORTED: read again and retry);
// - the leader's writes compare "not modified since the view's revision" and its own
//   election key, so that a deposed leader's writes fail (LeaderWrite).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/etcd/client.h"
#include "common/etcd/election.h"
#include "common/etcd/txn.h"
#include "controller/model/cluster_view.h"
#include "google/protobuf/message_lite.h"

namespace flotilla::controller {

inline constexpr std::string_view kKeyPrefix = "/flotilla/v1/";

std::string hostKey(std::string_view name);
std::string hostStatusKey(std::string_view name);
std::string vmKey(std::string_view name);
std::string vmStatusKey(std::string_view name);
std::string networkKey(std::string_view name);
std::string poolKey(std::string_view name);
std::string volumeKey(std::string_view pool, std::string_view name);
std::string migrationKey(std::string_view name);
std::string drainKey(std::string_view host);
std::string eventsPrefix();
// network-vlans/VLAN: the network that holds the VLAN (keeps VLANs unique).
std::string vlanClaimKey(uint32_t vlan);
std::string kindPrefix(std::string_view kind);  // "/flotilla/v1/<kind>/"

// A value read from etcd with the revision it was last modified at.
template <typename M>
struct Versioned {
  std::string key;
  M value;
  int64_t mod_revision = 0;
};

// Parses a stored value; the error names the key.
absl::Status decodeValue(const etcd::KeyValue& kv, google::protobuf::MessageLite& message);
std::string encodeValue(const google::protobuf::MessageLite& message);

class Store {
 public:
  explicit Store(etcd::EtcdClient& client) : client_(client) {}

  etcd::EtcdClient& client() { return client_; }

  // Every object the reconcilers decide on, read at one revision.
  absl::StatusOr<ClusterView> readView();

  template <typename M>
  absl::StatusOr<std::optional<Versioned<M>>> get(const std::string& key, int64_t revision = 0);
  // Every value under `prefix` (sorted by key).
  template <typename M>
  absl::StatusOr<std::vector<Versioned<M>>> list(const std::string& prefix, int64_t revision = 0,
                                                 int64_t* read_revision = nullptr);

 private:
  etcd::EtcdClient& client_;
};

// The leader's conditioned writes: each transaction holds only while `leader` still leads.
class LeaderWrite {
 public:
  LeaderWrite(etcd::EtcdClient& client, etcd::LeaderKey leader)
      : client_(client), leader_(std::move(leader)) {}

  // A transaction that holds only while this replica leads; add compares and ops to it.
  etcd::Txn txn() const;
  // Commits it. FailedPrecondition (with `what` in the message) when a compare failed:
  // leadership was lost or a key changed after it was read.
  absl::Status commit(const etcd::Txn& txn, std::string_view what);

  const etcd::LeaderKey& leader() const { return leader_; }

 private:
  etcd::EtcdClient& client_;
  const etcd::LeaderKey leader_;
};

// ---- implementation of the templates ----

template <typename M>
absl::StatusOr<std::optional<Versioned<M>>> Store::get(const std::string& key, int64_t revision) {
  etcd::RangeOptions options;
  options.revision = revision;
  absl::StatusOr<etcd::RangeResult> result = client_.get(key, options);
  if (!result.ok()) return result.status();
  if (result->kvs.empty()) return std::optional<Versioned<M>>();
  Versioned<M> out;
  out.key = key;
  out.mod_revision = result->kvs[0].mod_revision;
  absl::Status status = decodeValue(result->kvs[0], out.value);
  if (!status.ok()) return status;
  return std::optional<Versioned<M>>(std::move(out));
}

template <typename M>
absl::StatusOr<std::vector<Versioned<M>>> Store::list(const std::string& prefix, int64_t revision,
                                                      int64_t* read_revision) {
  etcd::RangeOptions options;
  options.prefix = true;
  options.revision = revision;
  absl::StatusOr<etcd::RangeResult> result = client_.get(prefix, options);
  if (!result.ok()) return result.status();
  if (read_revision != nullptr) *read_revision = result->revision;
  std::vector<Versioned<M>> out;
  out.reserve(result->kvs.size());
  for (const etcd::KeyValue& kv : result->kvs) {
    Versioned<M> item;
    item.key = kv.key;
    item.mod_revision = kv.mod_revision;
    absl::Status status = decodeValue(kv, item.value);
    if (!status.ok()) return status;
    out.push_back(std::move(item));
  }
  return out;
}

// The last path element of a key ("/flotilla/v1/vms/web" -> "web").
std::string_view keyName(std::string_view key);

}  // namespace flotilla::controller
