// flotilla-agent's configuration (/etc/flotilla/agent.yaml; deploy/agent.example.yaml shows
// every key). Errors name the file, line and key (common/config.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flotilla::agent {

struct TlsConfig {
  std::string ca_file;    // the cluster CA: client certificates must be signed by it
  std::string cert_file;  // this agent's certificate
  std::string key_file;
};

struct EtcdConfig {
  std::vector<std::string> endpoints;
  bool tls = false;
  TlsConfig tls_files;  // client side: ca + optional cert/key
};

// One node of a DRBD pool: a host's name, replication address and DRBD node id.
struct DrbdNodeConfig {
  std::string host;  // this host's: the agent's host name (not a key)
  std::string address;
  int node_id = -1;
};

// A DRBD pool: volumes replicated between this host and one peer (docs/storage.md "DRBD
// pools"). The backing of the volumes are sparse files in the pool's `path`, attached as loop
// devices.
struct DrbdPoolConfig {
  DrbdNodeConfig node;  // this host
  DrbdNodeConfig peer;
  std::string resource_dir;  // default: /etc/flotilla/drbd/POOL
  std::string drbdadm = "drbdadm";
  std::string losetup = "losetup";
  bool dry_run = false;  // drbdadm -d: hosts without the drbd kernel module (tests only)
};

// A storage pool this host uses (docs/storage.md "Volume pools").
struct PoolConfig {
  std::string name;
  std::string type;  // dir, iscsi, drbd
  // dir: the directory; iscsi with manage: the backing directory; drbd: the backing files
  std::string path;
  // iscsi
  std::string portal;      // HOST:PORT of the target
  std::string iqn_prefix;  // one target per volume: PREFIX:VOLUME
  bool manage = false;     // this host is the storage host: it runs tgtadm
  int tgt_instance = 0;    // tgtadm -C N
  DrbdPoolConfig drbd;
};

struct OvsConfig {
  std::string db;                   // ovs-vsctl --db; empty: OVS's default socket
  std::string bridge = "br-int";    // the integration bridge VMs' ports go to
  std::string datapath = "system";  // netdev for the userspace datapath
  // Underlay for VXLAN on the userspace datapath (the br-phy pattern, docs/network.md);
  // empty underlay_port: the kernel routes tunnel traffic (datapath system).
  std::string underlay_bridge = "br-phy";
  std::string underlay_port;
  std::string underlay_cidr;    // the tunnel IP with its prefix, on the underlay bridge
  std::string underlay_hwaddr;  // the underlay bridge's own MAC
  std::string tunnel_ip;        // this host's VXLAN endpoint; peers read it from etcd
  uint32_t vni = 4242;          // one VNI for the trunk between hosts
};

struct AgentConfig {
  std::string host;  // the host's name in the cluster; default: hostname
  std::string listen = "0.0.0.0:7100";
  std::string advertise;   // host:port in the host record; default: listen
  bool plaintext = false;  // no TLS on `listen`: tests only
  TlsConfig tls;
  std::string socket = "/run/flotilla/agent.sock";  // local admin socket; empty: none
  std::string state_dir = "/var/lib/flotilla/agent";
  std::string run_dir = "/run/flotilla/agent";
  std::string vmm_binary;  // default: flotilla-vmm next to flotilla-agent, else from PATH
  // Migration targets listen on migration_address:PORT, PORT in [first, last].
  std::string migration_address = "0.0.0.0";
  uint32_t migration_port_first = 7200;
  uint32_t migration_port_last = 7299;
  EtcdConfig etcd;
  absl::Duration lease_ttl = absl::Seconds(10);
  // Self-fencing: HA VMs are stopped when the lease was not renewed for this long; it must
  // be shorter than lease_ttl (docs/agent.md has the timeline).
  absl::Duration fence_after = absl::Seconds(7);
  absl::Duration report_interval = absl::Seconds(3);
  absl::Duration stop_grace = absl::Seconds(10);
  std::string cgroup_parent = "flotilla";
  OvsConfig ovs;
  std::vector<PoolConfig> pools;
  std::string log_level = "info";
  std::string log_file;
};

absl::StatusOr<AgentConfig> loadAgentConfig(const std::string& path);
absl::StatusOr<AgentConfig> parseAgentConfig(std::string_view text, std::string_view source_name);
// Checks across keys (fence_after < lease_ttl, port range, pools, ...); parse* calls it.
absl::Status validateAgentConfig(const AgentConfig& config);

}  // namespace flotilla::agent
