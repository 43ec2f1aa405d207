// Events: a bounded log of what happened in the cluster (events/ in etcd), written by API
// replicas and the leader, listed by clusterctl and the console. Keys sort by time:
// events/UNIX_MS-REPLICA-SEQ. The leader trims the oldest beyond `max_events`.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "common/etcd/client.h"
#include "common/etcd/txn.h"
#include "flotilla/v1/cluster_state.pb.h"

namespace flotilla::controller {

class EventLog {
 public:
  EventLog(etcd::EtcdClient& client, std::string replica) : client_(client), replica_(replica) {}

  static v1::Event make(std::string_view kind, std::string_view object,
                        v1::Event::Severity severity, std::string_view reason, std::string message);
  // Adds the event's put to `txn` (so that it is written with the change it describes).
  void add(etcd::Txn& txn, const v1::Event& event);
  // Writes the event on its own; failures are logged, not returned (events are best effort).
  void record(const v1::Event& event);
  // Deletes the oldest events beyond `max_events`.
  absl::Status trim(uint32_t max_events);

 private:
  std::string nextKey(int64_t unix_ms);

  etcd::EtcdClient& client_;
  const std::string replica_;
  std::atomic<uint64_t> sequence_{0};
};

}  // namespace flotilla::controller
