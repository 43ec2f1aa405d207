// flotilla-agent's configuration (see config.h).
#include "node-agent/config.h"

#include <unistd.h>

#include <set>

#include "absl/strings/str_split.h"
#include "common/config.h"
#include "common/files.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::agent {
namespace {

void readTls(ConfigNode node, TlsConfig& tls) {
  node.optional("ca", tls.ca_file);
  node.optional("cert", tls.cert_file);
  node.optional("key", tls.key_file);
}

std::string hostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

bool isDnsLabel(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<AgentConfig> parseAgentConfig(std::string_view text, std::string_view source_name) {
  ASSIGN_OR_RETURN(ConfigDocument document, ConfigDocument::parse(text, source_name));
  AgentConfig config;
  ConfigNode root = document.root();
  root.optional("host", config.host);
  root.optional("listen", config.listen);
  root.optional("advertise", config.advertise);
  root.optional("plaintext", config.plaintext);
  readTls(root.child("tls"), config.tls);
  root.optional("socket", config.socket);
  root.optional("state_dir", config.state_dir);
  root.optional("run_dir", config.run_dir);
  root.optional("vmm_binary", config.vmm_binary);
  ConfigNode migration = root.child("migration");
  migration.optional("address", config.migration_address);
  std::string ports;
  migration.optional("ports", ports);
  if (!ports.empty()) {
    std::vector<std::string> range = absl::StrSplit(ports, '-');
    uint32_t first = 0, last = 0;
    if (range.size() != 2 || !absl::SimpleAtoi(range[0], &first) ||
        !absl::SimpleAtoi(range[1], &last) || first == 0 || last > 65535 || first > last) {
      migration.fail("ports", "expected a port range FIRST-LAST, e.g. 7200-7299");
    } else {
      config.migration_port_first = first;
      config.migration_port_last = last;
    }
  }
  ConfigNode etcd = root.child("etcd");
  etcd.optional("endpoints", config.etcd.endpoints);
  etcd.optional("tls", config.etcd.tls);
  readTls(etcd.child("tls_files"), config.etcd.tls_files);
  root.optional("lease_ttl", config.lease_ttl);
  root.optional("fence_after", config.fence_after);
  root.optional("report_interval", config.report_interval);
  root.optional("stop_grace", config.stop_grace);
  root.optional("cgroup_parent", config.cgroup_parent);
  ConfigNode ovs = root.child("ovs");
  ovs.optional("db", config.ovs.db);
  ovs.optional("bridge", config.ovs.bridge);
  ovs.optional("datapath", config.ovs.datapath);
  ovs.optional("underlay_bridge", config.ovs.underlay_bridge);
  ovs.optional("underlay_port", config.ovs.underlay_port);
  ovs.optional("underlay_cidr", config.ovs.underlay_cidr);
  ovs.optional("underlay_hwaddr", config.ovs.underlay_hwaddr);
  ovs.optional("tunnel_ip", config.ovs.tunnel_ip);
  ovs.optional("vni", config.ovs.vni);
  for (ConfigNode node : root.children("pools")) {
    PoolConfig pool;
    node.required("name", pool.name);
    node.required("type", pool.type);
    node.optional("path", pool.path);
    node.optional("portal", pool.portal);
    node.optional("iqn_prefix", pool.iqn_prefix);
    node.optional("manage", pool.manage);
    int64_t instance = 0;
    node.optional("tgt_instance", instance);
    pool.tgt_instance = static_cast<int>(instance);
    ConfigNode drbd = node.child("drbd");
    ConfigNode drbd_node = drbd.child("node");
    drbd_node.optional("address", pool.drbd.node.address);
    int64_t node_id = -1;
    drbd_node.optional("node_id", node_id);
    pool.drbd.node.node_id = static_cast<int>(node_id);
    ConfigNode drbd_peer = drbd.child("peer");
    drbd_peer.optional("host", pool.drbd.peer.host);
    drbd_peer.optional("address", pool.drbd.peer.address);
    int64_t peer_id = -1;
    drbd_peer.optional("node_id", peer_id);
    pool.drbd.peer.node_id = static_cast<int>(peer_id);
    drbd.optional("resource_dir", pool.drbd.resource_dir);
    drbd.optional("drbdadm", pool.drbd.drbdadm);
    drbd.optional("losetup", pool.drbd.losetup);
    drbd.optional("dry_run", pool.drbd.dry_run);
    config.pools.push_back(std::move(pool));
  }
  ConfigNode log = root.child("log");
  log.optional("level", config.log_level);
  log.optional("file", config.log_file);
  RETURN_IF_ERROR(document.finish());

  if (config.host.empty()) config.host = hostName();
  if (config.advertise.empty()) config.advertise = config.listen;
  for (PoolConfig& pool : config.pools) {
    pool.drbd.node.host = config.host;
    if (pool.type == "drbd" && pool.drbd.resource_dir.empty()) {
      pool.drbd.resource_dir = "/etc/flotilla/drbd/" + pool.name;
    }
  }
  RETURN_IF_ERROR(validateAgentConfig(config));
  return config;
}

absl::StatusOr<AgentConfig> loadAgentConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, readFileToString(path));
  return parseAgentConfig(text, path);
}

absl::Status validateAgentConfig(const AgentConfig& config) {
  std::vector<std::string> problems;
  if (!isDnsLabel(config.host)) {
    problems.push_back(fmt::format(
        "host '{}' is not a valid host name: use lower-case letters, digits and '-' (at most 63)",
        config.host));
  }
  if (config.etcd.endpoints.empty()) {
    problems.push_back("etcd.endpoints is empty: list the etcd members, e.g. [127.0.0.1:2379]");
  }
  if (!config.plaintext &&
      (config.tls.ca_file.empty() || config.tls.cert_file.empty() || config.tls.key_file.empty())) {
    problems.push_back(
        "tls.ca, tls.cert and tls.key are required (or plaintext: true, for tests only)");
  }
  if (config.fence_after >= config.lease_ttl) {
    problems.push_back(fmt::format(
        "fence_after ({}) must be shorter than lease_ttl ({}): HA VMs must be stopped here "
        "before the controller may restart them elsewhere",
        absl::FormatDuration(config.fence_after), absl::FormatDuration(config.lease_ttl)));
  }
  if (config.lease_ttl < absl::Seconds(2)) {
    problems.push_back("lease_ttl must be at least 2s (etcd's lease granularity is 1s)");
  }
  if (config.report_interval <= absl::ZeroDuration()) {
    problems.push_back("report_interval must be positive");
  }
  if (config.ovs.datapath != "system" && config.ovs.datapath != "netdev") {
    problems.push_back(
        fmt::format("ovs.datapath '{}': expected system or netdev", config.ovs.datapath));
  }
  std::set<std::string> pool_names;
  for (const PoolConfig& pool : config.pools) {
    if (!isDnsLabel(pool.name)) {
      problems.push_back(fmt::format("pool name '{}' is not a DNS label", pool.name));
    }
    if (!pool_names.insert(pool.name).second) {
      problems.push_back(fmt::format("pool '{}' is listed twice", pool.name));
    }
    if (pool.type == "dir") {
      if (pool.path.empty())
        problems.push_back(fmt::format("pool '{}': dir needs a path", pool.name));
    } else if (pool.type == "iscsi") {
      if (pool.portal.empty() || pool.iqn_prefix.empty()) {
        problems.push_back(
            fmt::format("pool '{}': iscsi needs portal (HOST:PORT) and iqn_prefix", pool.name));
      }
      if (pool.manage && pool.path.empty()) {
        problems.push_back(fmt::format(
            "pool '{}': a managed iscsi pool needs path (the directory of the LUN files)",
            pool.name));
      }
    } else if (pool.type == "drbd") {
      const DrbdPoolConfig& drbd = pool.drbd;
      if (pool.path.empty()) {
        problems.push_back(fmt::format(
            "pool '{}': drbd needs path (the directory of the volumes' backing files)", pool.name));
      }
      if (drbd.node.address.empty() || drbd.node.node_id < 0) {
        problems.push_back(fmt::format(
            "pool '{}': drbd needs node.address and node.node_id (this host's replication "
            "address and DRBD node id, 0 to 31)",
            pool.name));
      }
      if (drbd.peer.host.empty() || drbd.peer.address.empty() || drbd.peer.node_id < 0) {
        problems.push_back(fmt::format(
            "pool '{}': drbd needs peer.host, peer.address and peer.node_id (the other host of "
            "the pool)",
            pool.name));
      }
      if (drbd.peer.host == config.host) {
        problems.push_back(fmt::format(
            "pool '{}': drbd peer.host is this host ({}); the peer is the other host of the pool",
            pool.name, config.host));
      }
      if (drbd.node.node_id >= 0 && drbd.node.node_id == drbd.peer.node_id) {
        problems.push_back(fmt::format(
            "pool '{}': drbd node.node_id and peer.node_id are both {}; give them different ids",
            pool.name, drbd.node.node_id));
      }
    } else {
      problems.push_back(fmt::format("pool '{}': unknown type '{}' (expected dir, iscsi or drbd)",
                                     pool.name, pool.type));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  std::string message = "invalid agent configuration:";
  for (const std::string& problem : problems) message += "\n  " + problem;
  return absl::InvalidArgumentError(message);
}

}  // namespace flotilla::agent
