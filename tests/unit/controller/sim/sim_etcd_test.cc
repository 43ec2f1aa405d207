// The simulator against a real etcd started by the test (label integration): 200 hosts register
// under leases of their own and keep refreshing; every lease lives on through the one
// keep-alive stream, also when the etcd member it uses is killed; a killed host's key leaves
// after its TTL (at once when its lease is revoked) and comes back when it is revived; a lease
// revoked behind the simulator's back is replaced; shutdown revokes everything.
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/etcd/client.h"
#include "controller/sim/simulator.h"
#include "flotilla/v1/agent.pb.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"
#include "tests/unit/controller/sim/sim_client.h"

namespace flotilla::sim {
namespace {

using ::flotilla::testing::EtcdCluster;

constexpr char kPrefix[] = "/flotilla/v1/hosts-status/";

// Polls `condition` until it holds or `timeout` passes (generous: the machine is shared; the
// bound only keeps a broken simulator from hanging the test).
template <typename Condition>
bool eventually(Condition condition, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  while (systemClock().monotonicNow() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return condition();
}

class SimEtcdTest : public ::testing::Test {
 protected:
  void startEtcd(int members) {
    auto cluster = EtcdCluster::start(members);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    etcd::ClientOptions options;
    options.endpoints = cluster_->clientEndpoints();
    auto client = etcd::EtcdClient::connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  void startSim(int hosts, std::vector<std::string> endpoints) {
    SimulatorOptions options;
    options.etcd_endpoints = std::move(endpoints);
    options.hosts = hosts;
    options.report_interval = absl::Seconds(1);
    options.lease_ttl = absl::Seconds(3);
    auto sim = Simulator::start(options);
    ASSERT_TRUE(sim.ok()) << sim.status();
    sim_ = std::move(*sim);
  }

  void TearDown() override {
    sim_.reset();
    if (HasFailure() && cluster_) {
      for (int i = 0; i < cluster_->size(); ++i) {
        std::cerr << "--- etcd member " << i << " log:\n" << cluster_->logTail(i) << "\n";
      }
    }
  }

  // Every host status in etcd, by host name.
  std::map<std::string, etcd::KeyValue> statuses() {
    std::map<std::string, etcd::KeyValue> found;
    auto range = client_->get(kPrefix, {.prefix = true});
    EXPECT_TRUE(range.ok()) << range.status();
    if (!range.ok()) return found;
    for (etcd::KeyValue& kv : range->kvs) {
      found.emplace(kv.key.substr(std::string(kPrefix).size()), std::move(kv));
    }
    return found;
  }

  bool present(const std::string& host) { return statuses().contains(host); }

  // Whether every host of `before` (and no other) has written its status since.
  bool allWroteSince(const std::map<std::string, etcd::KeyValue>& before) {
    std::map<std::string, etcd::KeyValue> now = statuses();
    if (now.size() != before.size()) return false;
    for (const auto& [host, kv] : now) {
      auto old = before.find(host);
      if (old == before.end() || kv.mod_revision <= old->second.mod_revision) return false;
    }
    return true;
  }

  static flotilla::v1::HostStatus parse(const etcd::KeyValue& kv) {
    flotilla::v1::HostStatus status;
    EXPECT_TRUE(status.ParseFromString(kv.value)) << kv.key;
    return status;
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<etcd::EtcdClient> client_;
  std::unique_ptr<Simulator> sim_;
};

TEST_F(SimEtcdTest, TwoHundredHostsRegisterUnderTheirOwnLeasesAndRefresh) {
  startEtcd(1);
  startSim(200, cluster_->clientEndpoints());
  std::map<std::string, etcd::KeyValue> first = statuses();
  ASSERT_EQ(first.size(), 200u);
  std::set<int64_t> leases;
  for (const auto& [host, kv] : first) {
    const flotilla::v1::HostStatus status = parse(kv);
    EXPECT_EQ(status.name(), host);
    EXPECT_EQ(status.agent_address(), sim_->address());
    EXPECT_EQ(static_cast<int64_t>(status.lease_id()), kv.lease);
    EXPECT_EQ(status.inventory().cpus(), 16u);
    leases.insert(kv.lease);
  }
  EXPECT_EQ(leases.size(), 200u);
  EXPECT_FALSE(leases.contains(0));

  // A VM shows up in its host's next report.
  testing::SimClient client(sim_->address());
  ASSERT_TRUE(client.createVm("sim-0100", "web-1", 1024, true).ok());

  // Every host rewrites its status; after several TTLs every lease still lives (one
  // keep-alive stream renews them all).
  ASSERT_TRUE(eventually([&] { return allWroteSince(first); }));
  absl::SleepFor(absl::Seconds(7));
  std::map<std::string, etcd::KeyValue> later = statuses();
  ASSERT_EQ(later.size(), 200u);
  for (const auto& [host, kv] : later) EXPECT_EQ(kv.lease, first[host].lease) << host;
  const flotilla::v1::HostStatus with_vm = parse(later["sim-0100"]);
  ASSERT_EQ(with_vm.vms_size(), 1);
  EXPECT_EQ(with_vm.vms(0).name(), "web-1");
  EXPECT_EQ(with_vm.load().vms_running(), 1u);
  auto ttl = client_->leaseTimeToLive(later["sim-0001"].lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, absl::ZeroDuration());
  const SimulatorStats stats = sim_->stats();
  EXPECT_GE(stats.etcd.leases.renewals, 200u);
  EXPECT_EQ(stats.etcd.grants, 200u);
  EXPECT_EQ(stats.etcd.leases.lost, 0u);

  // Shutdown revokes every lease: every key goes at once.
  ASSERT_TRUE(sim_->shutdown(true).ok());
  EXPECT_TRUE(statuses().empty());
}

TEST_F(SimEtcdTest, AKilledHostsKeyLeavesAfterItsTtlAndComesBackWhenRevived) {
  startEtcd(1);
  startSim(20, cluster_->clientEndpoints());
  const auto old_lease = static_cast<int64_t>(sim_->hostStatus("sim-0007")->lease_id());
  ASSERT_TRUE(sim_->killHost("sim-0007").ok());
  // Not at once: the lease expires on its own.
  EXPECT_TRUE(present("sim-0007"));
  ASSERT_TRUE(eventually([&] { return !present("sim-0007"); }));
  EXPECT_EQ(statuses().size(), 19u);
  testing::SimClient client(sim_->address());
  EXPECT_EQ(client.getHost("sim-0007").status().code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(sim_->reviveHost("sim-0007").ok());
  std::map<std::string, etcd::KeyValue> back = statuses();
  ASSERT_TRUE(back.contains("sim-0007"));
  EXPECT_NE(back["sim-0007"].lease, old_lease);
  EXPECT_TRUE(client.getHost("sim-0007").ok());

  // With the lease revoked, the key goes at once.
  ASSERT_TRUE(sim_->killHost("sim-0008", /*revoke_lease=*/true).ok());
  EXPECT_FALSE(present("sim-0008"));
  EXPECT_EQ(statuses().size(), 19u);
}

TEST_F(SimEtcdTest, ALeaseRevokedBehindItsBackIsReplaced) {
  startEtcd(1);
  startSim(5, cluster_->clientEndpoints());
  const int64_t lease = statuses()["sim-0003"].lease;
  ASSERT_TRUE(client_->revokeLease(lease).ok());
  EXPECT_FALSE(present("sim-0003"));
  ASSERT_TRUE(eventually([&] {
    std::map<std::string, etcd::KeyValue> now = statuses();
    return now.contains("sim-0003") && now["sim-0003"].lease != lease;
  }));
  EXPECT_EQ(sim_->stats().etcd.grants, 6u);
}

TEST_F(SimEtcdTest, LeasesLiveOnWhenTheEtcdMemberInUseIsKilled) {
  startEtcd(3);
  startSim(50, cluster_->clientEndpoints());
  std::map<std::string, etcd::KeyValue> before = statuses();
  ASSERT_EQ(before.size(), 50u);
  // The keep-alive streams go to the leader: kill that member.
  const int member = static_cast<int>(sim_->stats().etcd.leases.member);
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(cluster_->kill(member).ok());
  // Every host writes again once the other members have elected a leader (how long that takes
  // depends on the machine's load), and at least three TTLs pass: a lease not renewed through
  // another member would have expired.
  EXPECT_TRUE(eventually([&] { return allWroteSince(before); }))
      << "not every host's status was written again after etcd member " << member << " was killed";
  absl::SleepFor(killed + absl::Seconds(9) - absl::Now());
  std::map<std::string, etcd::KeyValue> after = statuses();
  const SimulatorStats stats = sim_->stats();
  SCOPED_TRACE(fmt::format(
      "{:.1f} s after the kill; simulator: {} reports, {} failed writes or grants, {} grants, "
      "{} renewals, {} keep-alive reconnects, {} leases lost",
      absl::ToDoubleSeconds(absl::Now() - killed), stats.etcd.reports, stats.etcd.failures,
      stats.etcd.grants, stats.etcd.leases.renewals, stats.etcd.leases.reconnects,
      stats.etcd.leases.lost));
  ASSERT_EQ(after.size(), 50u);
  for (const auto& [host, kv] : after) EXPECT_EQ(kv.lease, before[host].lease) << host;
  EXPECT_GE(stats.etcd.leases.reconnects, 1u);
  EXPECT_EQ(stats.etcd.leases.lost, 0u);
  EXPECT_EQ(stats.etcd.grants, 50u);
  // They follow the new leader.
  EXPECT_TRUE(
      eventually([&] { return static_cast<int>(sim_->stats().etcd.leases.member) != member; }));
}

TEST_F(SimEtcdTest, ShutdownWithEtcdGoneGivesUpOnTheLeases) {
  startEtcd(1);
  startSim(400, cluster_->clientEndpoints());
  ASSERT_TRUE(cluster_->kill(0).ok());
  // The first revocation that cannot reach etcd ends the shutdown (the leases die with etcd).
  absl::Status stopped = sim_->shutdown(true);
  EXPECT_FALSE(stopped.ok());
  EXPECT_THAT(std::string(stopped.message()), ::testing::HasSubstr("expire after their TTL"));
}

TEST_F(SimEtcdTest, StartFailsClearlyWithoutEtcd) {
  auto port = flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  SimulatorOptions options;
  options.etcd_endpoints = {fmt::format("127.0.0.1:{}", *port)};
  // Many hosts: the first failure must end the start, not every host's request timeout in
  // turn (which would outlast this test's timeout).
  options.hosts = 400;
  auto sim = Simulator::start(options);
  ASSERT_FALSE(sim.ok());
  EXPECT_THAT(std::string(sim.status().message()), ::testing::HasSubstr("registering"));
}

}  // namespace
}  // namespace flotilla::sim
