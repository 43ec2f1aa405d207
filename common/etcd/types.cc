// Conversions from etcd's protobuf records (see types.h).
#include "common/etcd/types.h"

namespace flotilla::etcd {

KeyValue KeyValue::fromProto(const mvccpb::KeyValue& kv) {
  return KeyValue{kv.key(),          kv.value(),   kv.create_revision(),
                  kv.mod_revision(), kv.version(), kv.lease()};
}

}  // namespace flotilla::etcd
