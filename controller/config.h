// flotilla-controller's configuration (/etc/flotilla/controller.yaml;
// deploy/controller.example.yaml shows every key). Errors name the file, line and key.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/channel.h"

namespace flotilla::controller {

struct MigrationLimits {
  uint32_t per_source = 2;
  uint32_t per_target = 2;
  uint32_t per_cluster = 8;
  uint32_t downtime_limit_ms = 300;
  uint32_t attempts = 3;  // a drain retries a VM's failed migration this often
};

struct RebalanceConfig {
  bool automatic = false;
  absl::Duration interval = absl::Seconds(60);
  double threshold = 0.1;
  uint32_t max_moves = 10;
  absl::Duration cooldown = absl::Minutes(10);  // a moved VM stays put this long
};

struct SchedulerConfig {
  std::string strategy = "spread";  // spread or pack
  double cpu_overcommit = 4.0;
  double memory_overcommit = 1.0;
};

struct ControllerConfig {
  std::string name;  // this replica; default: the host name
  std::string listen = "0.0.0.0:7000";
  bool plaintext = false;  // no TLS on `listen`: tests only
  TlsFiles tls;
  std::vector<std::string> etcd_endpoints;
  TlsFiles etcd_tls;  // empty: plaintext to etcd
  bool agents_plaintext = false;
  TlsFiles agents_tls;  // the client certificate shown to agents, and the CA that signed them
  absl::Duration election_ttl = absl::Seconds(5);
  // After a host's lease expired, wait this long before its HA VMs restart elsewhere; the
  // agent has stopped them `fence_after` after its last renewal, before the lease expired.
  absl::Duration host_fence_timeout = absl::Seconds(10);
  absl::Duration resync_interval = absl::Seconds(1);  // a full reconcile pass at least this often
  absl::Duration agent_timeout = absl::Seconds(30);   // one AgentService call
  uint32_t agent_parallelism = 32;  // VM tasks (agent calls and their status writes) at once
  SchedulerConfig scheduler;
  MigrationLimits migrations;
  RebalanceConfig rebalance;
  uint32_t max_events = 1000;
  std::string log_level = "info";
  std::string log_file;
};

absl::StatusOr<ControllerConfig> loadControllerConfig(const std::string& path);
absl::StatusOr<ControllerConfig> parseControllerConfig(std::string_view text,
                                                       std::string_view source_name);

}  // namespace flotilla::controller
