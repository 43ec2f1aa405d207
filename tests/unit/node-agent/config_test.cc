// flotilla-agent's configuration: defaults, every key, and errors that name the key and the fix.
#include "node-agent/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::agent {
namespace {

using ::testing::HasSubstr;

constexpr char kMinimal[] =
    "host: host-a\n"
    "plaintext: true\n"
    "etcd:\n  endpoints: [127.0.0.1:2379]\n";

TEST(AgentConfigTest, MinimalFileTakesTheDefaults) {
  auto config = parseAgentConfig(kMinimal, "agent.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host, "host-a");
  EXPECT_EQ(config->listen, "0.0.0.0:7100");
  EXPECT_EQ(config->advertise, "0.0.0.0:7100");
  EXPECT_EQ(config->migration_port_first, 7200u);
  EXPECT_EQ(config->migration_port_last, 7299u);
  EXPECT_EQ(config->lease_ttl, absl::Seconds(10));
  EXPECT_EQ(config->fence_after, absl::Seconds(7));
  EXPECT_EQ(config->ovs.bridge, "br-int");
  EXPECT_EQ(config->ovs.datapath, "system");
  EXPECT_EQ(config->state_dir, "/var/lib/flotilla/agent");
}

TEST(AgentConfigTest, ReadsEveryKey) {
  auto config = parseAgentConfig(
      "host: host-b\n"
      "listen: 10.0.0.2:7100\n"
      "advertise: 10.0.0.2:7100\n"
      "tls: {ca: /ca.pem, cert: /a.pem, key: /a.key}\n"
      "socket: /tmp/a.sock\n"
      "state_dir: /tmp/state\n"
      "run_dir: /tmp/run\n"
      "vmm_binary: /usr/bin/flotilla-vmm\n"
      "migration: {address: 10.0.0.2, ports: 7300-7310}\n"
      "etcd: {endpoints: [a:1, b:2], tls: true, tls_files: {ca: /eca.pem}}\n"
      "lease_ttl: 6s\n"
      "fence_after: 4s\n"
      "report_interval: 1s\n"
      "stop_grace: 3s\n"
      "cgroup_parent: flotilla.slice\n"
      "ovs: {db: unix:/x.sock, bridge: br0, datapath: netdev, underlay_port: eth1,\n"
      "      underlay_cidr: 10.1.0.2/24, tunnel_ip: 10.1.0.2, vni: 7}\n"
      "pools:\n"
      "  - {name: local, type: dir, path: /pools/local}\n"
      "  - {name: san, type: iscsi, portal: '10.0.0.9:3260', iqn_prefix: 'iqn.2026-01.org.x:san'}\n"
      "log: {level: debug, file: /tmp/agent.log}\n",
      "agent.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tls.ca_file, "/ca.pem");
  EXPECT_EQ(config->migration_port_first, 7300u);
  EXPECT_EQ(config->migration_port_last, 7310u);
  EXPECT_EQ(config->etcd.endpoints.size(), 2u);
  EXPECT_TRUE(config->etcd.tls);
  EXPECT_EQ(config->etcd.tls_files.ca_file, "/eca.pem");
  EXPECT_EQ(config->fence_after, absl::Seconds(4));
  EXPECT_EQ(config->ovs.vni, 7u);
  EXPECT_EQ(config->ovs.underlay_port, "eth1");
  ASSERT_EQ(config->pools.size(), 2u);
  EXPECT_EQ(config->pools[1].portal, "10.0.0.9:3260");
  EXPECT_EQ(config->log_level, "debug");
}

TEST(AgentConfigTest, ErrorsNameTheKeyAndTheFix) {
  auto expectError = [](const std::string& text, const std::string& message) {
    auto config = parseAgentConfig(text, "agent.yaml");
    ASSERT_FALSE(config.ok());
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(message));
  };
  expectError("host: host-a\nplaintext: true\n", "etcd.endpoints is empty");
  expectError("host: host-a\netcd: {endpoints: [a:1]}\n", "tls.ca, tls.cert and tls.key");
  expectError(std::string(kMinimal) + "fence_after: 10s\n", "must be shorter than lease_ttl");
  expectError(std::string(kMinimal) + "migration: {ports: 7300}\n", "FIRST-LAST");
  expectError(std::string(kMinimal) + "lisen: x\n", "unknown key 'lisen'");
  expectError(std::string(kMinimal) + "ovs: {datapath: kernel}\n", "expected system or netdev");
  expectError(std::string(kMinimal) + "pools: [{name: p, type: nfs}]\n", "unknown type 'nfs'");
  expectError(
      std::string(kMinimal) + "pools: [{name: p, type: dir}, {name: p, type: dir, path: /x}]\n",
      "pool 'p' is listed twice");
  expectError("host: Host_A\nplaintext: true\netcd: {endpoints: [a:1]}\n", "not a valid host name");
}

TEST(AgentConfigTest, TheExampleFileIsValid) {
  auto config = loadAgentConfig(FLOTILLA_SOURCE_DIR "/deploy/agent.example.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host, "host-a");
  ASSERT_EQ(config->pools.size(), 3u);
  const PoolConfig& drbd = config->pools[2];
  EXPECT_EQ(drbd.type, "drbd");
  EXPECT_EQ(drbd.drbd.node.host, "host-a");
  EXPECT_EQ(drbd.drbd.node.address, "10.0.3.11");
  EXPECT_EQ(drbd.drbd.node.node_id, 0);
  EXPECT_EQ(drbd.drbd.peer.host, "host-b");
  EXPECT_EQ(drbd.drbd.peer.address, "10.0.3.12");
  EXPECT_EQ(drbd.drbd.peer.node_id, 1);
  EXPECT_EQ(drbd.drbd.resource_dir, "/etc/flotilla/drbd/rep-ab");
  EXPECT_FALSE(drbd.drbd.dry_run);
}

TEST(AgentConfigTest, DrbdPools) {
  auto expectError = [](const std::string& text, const std::string& message) {
    auto config = parseAgentConfig(text, "agent.yaml");
    ASSERT_FALSE(config.ok());
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(message));
  };
  const std::string pool = "pools: [{name: rep, type: drbd, path: /srv/rep, drbd: ";
  auto config = parseAgentConfig(
      std::string(kMinimal) + pool +
          "{node: {address: 10.0.0.1, node_id: 1}, peer: {host: b, address: 10.0.0.2, "
          "node_id: 0}, dry_run: true}}]\n",
      "agent.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->pools[0].drbd.resource_dir, "/etc/flotilla/drbd/rep");
  EXPECT_EQ(config->pools[0].drbd.drbdadm, "drbdadm");
  EXPECT_TRUE(config->pools[0].drbd.dry_run);
  expectError(std::string(kMinimal) + pool + "{}}]\n", "drbd needs node.address and node.node_id");
  expectError(std::string(kMinimal) + pool + "{}}]\n", "drbd needs peer.host, peer.address");
  expectError(std::string(kMinimal) +
                  "pools: [{name: rep, type: drbd, drbd: {node: {address: 10.0.0.1, node_id: 1}, "
                  "peer: {host: b, address: 10.0.0.2, node_id: 1}}}]\n",
              "both 1");
  expectError(std::string(kMinimal) +
                  "pools: [{name: rep, type: drbd, drbd: {node: {address: 10.0.0.1, node_id: 1}, "
                  "peer: {host: b, address: 10.0.0.2, node_id: 1}}}]\n",
              "drbd needs path");
}

}  // namespace
}  // namespace flotilla::agent
