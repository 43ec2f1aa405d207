// Plain C++ views of etcd's key-value records, independent of the generated protobuf types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "etcd/mvcc/mvccpb/kv.pb.h"

namespace flotilla::etcd {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // 0 for a deleted key in a delete event
  int64_t lease = 0;

  static KeyValue fromProto(const mvccpb::KeyValue& kv);
  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  int64_t revision = 0;  // the store's revision when the range was read
  bool more = false;     // more keys matched than `limit`
  int64_t count = 0;     // keys that matched
};

}  // namespace flotilla::etcd
