// Transactions (see txn.h).
#include "common/etcd/txn.h"

#include <string>

#include "common/etcd/client.h"

namespace flotilla::etcd {
namespace {

etcdserverpb::Compare::CompareResult toProto(CompareOp op) {
  switch (op) {
    case CompareOp::kEqual:
      return etcdserverpb::Compare::EQUAL;
    case CompareOp::kNotEqual:
      return etcdserverpb::Compare::NOT_EQUAL;
    case CompareOp::kLess:
      return etcdserverpb::Compare::LESS;
    case CompareOp::kGreater:
      return etcdserverpb::Compare::GREATER;
  }
  return etcdserverpb::Compare::EQUAL;
}

void addPut(google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>* ops, std::string_view key,
            std::string_view value, int64_t lease) {
  etcdserverpb::PutRequest* put = ops->Add()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  put->set_lease(lease);
}

void addDelete(google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>* ops,
               std::string_view key, bool prefix) {
  etcdserverpb::DeleteRangeRequest* del = ops->Add()->mutable_request_delete_range();
  del->set_key(std::string(key));
  if (prefix) del->set_range_end(prefixRangeEnd(key));
}

void addGet(google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>* ops, std::string_view key,
            bool prefix) {
  etcdserverpb::RangeRequest* range = ops->Add()->mutable_request_range();
  range->set_key(std::string(key));
  if (prefix) range->set_range_end(prefixRangeEnd(key));
}

}  // namespace

etcdserverpb::Compare& Txn::addCompare(std::string_view key, CompareOp op,
                                       etcdserverpb::Compare::CompareTarget target) {
  etcdserverpb::Compare* compare = request_.add_compare();
  compare->set_key(std::string(key));
  compare->set_result(toProto(op));
  compare->set_target(target);
  return *compare;
}

Txn& Txn::ifValue(std::string_view key, CompareOp op, std::string_view value) {
  addCompare(key, op, etcdserverpb::Compare::VALUE).set_value(std::string(value));
  return *this;
}

Txn& Txn::ifVersion(std::string_view key, CompareOp op, int64_t version) {
  addCompare(key, op, etcdserverpb::Compare::VERSION).set_version(version);
  return *this;
}

Txn& Txn::ifCreateRevision(std::string_view key, CompareOp op, int64_t revision) {
  addCompare(key, op, etcdserverpb::Compare::CREATE).set_create_revision(revision);
  return *this;
}

Txn& Txn::ifModRevision(std::string_view key, CompareOp op, int64_t revision) {
  addCompare(key, op, etcdserverpb::Compare::MOD).set_mod_revision(revision);
  return *this;
}

Txn& Txn::ifLease(std::string_view key, CompareOp op, int64_t lease) {
  addCompare(key, op, etcdserverpb::Compare::LEASE).set_lease(lease);
  return *this;
}

Txn& Txn::thenPut(std::string_view key, std::string_view value, int64_t lease) {
  addPut(request_.mutable_success(), key, value, lease);
  return *this;
}

Txn& Txn::thenDelete(std::string_view key, bool prefix) {
  addDelete(request_.mutable_success(), key, prefix);
  return *this;
}

Txn& Txn::thenGet(std::string_view key, bool prefix) {
  addGet(request_.mutable_success(), key, prefix);
  return *this;
}

Txn& Txn::elsePut(std::string_view key, std::string_view value, int64_t lease) {
  addPut(request_.mutable_failure(), key, value, lease);
  return *this;
}

Txn& Txn::elseDelete(std::string_view key, bool prefix) {
  addDelete(request_.mutable_failure(), key, prefix);
  return *this;
}

Txn& Txn::elseGet(std::string_view key, bool prefix) {
  addGet(request_.mutable_failure(), key, prefix);
  return *this;
}

TxnResult TxnResult::fromProto(const etcdserverpb::TxnResponse& response) {
  TxnResult result;
  result.succeeded = response.succeeded();
  result.revision = response.header().revision();
  for (const etcdserverpb::ResponseOp& op : response.responses()) {
    if (!op.has_response_range()) continue;
    const etcdserverpb::RangeResponse& range = op.response_range();
    RangeResult& get = result.gets.emplace_back();
    get.revision = result.revision;  // a transaction reads and writes at one revision
    get.more = range.more();
    get.count = range.count();
    for (const mvccpb::KeyValue& kv : range.kvs()) get.kvs.push_back(KeyValue::fromProto(kv));
  }
  return result;
}

}  // namespace flotilla::etcd
