// Txn: an etcd transaction (compare → then-ops, else-ops) built fluently:
//   Txn().ifModRevision(key, CompareOp::kEqual, read_rev).thenPut(key, value)
// The writer of cluster state conditions each write on the revision it read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/etcd/types.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"

namespace flotilla::etcd {

enum class CompareOp { kEqual, kNotEqual, kLess, kGreater };

class Txn {
 public:
  Txn& ifValue(std::string_view key, CompareOp op, std::string_view value);
  Txn& ifVersion(std::string_view key, CompareOp op, int64_t version);  // 0: absent
  Txn& ifCreateRevision(std::string_view key, CompareOp op, int64_t revision);
  Txn& ifModRevision(std::string_view key, CompareOp op, int64_t revision);
  Txn& ifLease(std::string_view key, CompareOp op, int64_t lease);

  Txn& thenPut(std::string_view key, std::string_view value, int64_t lease = 0);
  Txn& thenDelete(std::string_view key, bool prefix = false);
  Txn& thenGet(std::string_view key, bool prefix = false);
  Txn& elsePut(std::string_view key, std::string_view value, int64_t lease = 0);
  Txn& elseDelete(std::string_view key, bool prefix = false);
  Txn& elseGet(std::string_view key, bool prefix = false);

  const etcdserverpb::TxnRequest& request() const { return request_; }

 private:
  etcdserverpb::Compare& addCompare(std::string_view key, CompareOp op,
                                    etcdserverpb::Compare::CompareTarget target);

  etcdserverpb::TxnRequest request_;
};

struct TxnResult {
  bool succeeded = false;  // the compares held and the then-ops ran
  int64_t revision = 0;
  // One result per get of the branch that ran, in order.
  std::vector<RangeResult> gets;

  static TxnResult fromProto(const etcdserverpb::TxnResponse& response);
};

}  // namespace flotilla::etcd
