// LeaderLoop: campaigns for leadership with etcd's election API (key
// /flotilla/v1/election/, value: this replica's name) and, while leading, runs the
// Reconciler. It stops reconciling the moment leadership is in doubt: the lease is lost, it
// was not renewed for two thirds of its TTL (this replica may be cut off from etcd: another may
// lead soon), or a conditioned write found another leader. On SIGTERM it resigns, so that another
// replica takes over at once instead of after the lease's TTL.
//
// While it is not leading, it keeps its WatchedView current (a warm standby), so that when it
// is elected its first pass starts at once instead of after a read of the whole cluster.
#pragma once

#include <atomic>
#include <stop_token>
#include <string>

#include "common/etcd/client.h"
#include "common/log.h"
#include "controller/agent_clients.h"
#include "controller/config.h"
#include "controller/store/watched_view.h"

namespace flotilla::controller {

std::string electionName();

class LeaderLoop {
 public:
  LeaderLoop(const ControllerConfig& config, etcd::EtcdClient& etcd, AgentClients& agents)
      : config_(config), etcd_(etcd), agents_(agents), view_(etcd), log_(Logger("leader")) {}

  // Until `stop`: campaign, lead, and campaign again after losing leadership.
  void run(std::stop_token stop);
  bool leading() const { return leading_.load(); }

 private:
  void leadOnce(std::stop_token stop);
  // Keeps view_ current until `stop` (while campaigning).
  void standBy(std::stop_token stop);

  const ControllerConfig& config_;
  etcd::EtcdClient& etcd_;
  AgentClients& agents_;
  WatchedView view_;  // the standby thread's while campaigning, the reconciler's while leading
  const Logger log_;
  std::atomic<bool> leading_{false};
};

}  // namespace flotilla::controller
