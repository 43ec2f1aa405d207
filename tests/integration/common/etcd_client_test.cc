// The etcd client against a real 3-member etcd cluster started by the test: KV and
// transactions, watches that survive a killed member without losing or repeating an event,
// compaction, lease keep-alive across a killed member, and elections.
#include <signal.h>

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/etcd/client.h"
#include "common/etcd/election.h"
#include "common/etcd/lease.h"
#include "common/etcd/watch.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"

namespace flotilla::etcd {
namespace {

using ::flotilla::testing::EtcdCluster;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Polls `condition` until it holds or `timeout` passes (generous: the machine is shared).
template <typename Condition>
bool eventually(Condition condition, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  while (systemClock().monotonicNow() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return condition();
}

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EtcdCluster::start(3);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      for (int i = 0; i < cluster_->size(); ++i) {
        std::cerr << "--- etcd member " << i << " log:\n" << cluster_->logTail(i) << "\n";
      }
    }
  }

  // A client whose first endpoint is `first` (the member it uses until that one fails).
  std::unique_ptr<EtcdClient> clientStartingAt(int first) {
    ClientOptions options;
    for (int i = 0; i < cluster_->size(); ++i) {
      options.endpoints.push_back(cluster_->clientEndpoint((first + i) % cluster_->size()));
    }
    auto client = EtcdClient::connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::unique_ptr<EtcdCluster> cluster_;
};

TEST_F(EtcdClientTest, PutGetDeleteWithPrefixesAndRevisions) {
  auto client = clientStartingAt(0);
  ASSERT_NE(client, nullptr);
  auto r1 = client->put("/t/vms/a", "1");
  ASSERT_TRUE(r1.ok()) << r1.status();
  auto r2 = client->put("/t/vms/b", "2");
  ASSERT_TRUE(r2.ok()) << r2.status();
  ASSERT_TRUE(client->put("/t/vmsx", "not under /t/vms/").ok());
  EXPECT_GT(*r2, *r1);

  auto one = client->get("/t/vms/a");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "1");
  EXPECT_EQ(one->kvs[0].mod_revision, *r1);
  EXPECT_EQ(one->kvs[0].version, 1);

  auto all = client->get("/t/vms/", {.prefix = true});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->kvs.size(), 2u);
  EXPECT_EQ(all->kvs[0].key, "/t/vms/a");
  EXPECT_EQ(all->kvs[1].key, "/t/vms/b");
  EXPECT_GE(all->revision, *r2);

  auto limited = client->get("/t/vms/", {.prefix = true, .limit = 1});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->kvs.size(), 1u);
  EXPECT_TRUE(limited->more);
  EXPECT_EQ(limited->count, 2);

  // Reading at an old revision sees the old state.
  auto old = client->get("/t/vms/", {.prefix = true, .revision = *r1});
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->kvs.size(), 1u);

  auto deleted = client->del("/t/vms/", /*prefix=*/true);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  auto after = client->get("/t/", {.prefix = true});
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->kvs.size(), 1u);
  EXPECT_EQ(after->kvs[0].key, "/t/vmsx");
}

TEST_F(EtcdClientTest, TransactionsConditionOnTheRevisionRead) {
  auto client = clientStartingAt(1);
  ASSERT_NE(client, nullptr);
  // Create only if absent.
  auto created = client->txn(Txn().ifVersion("/t/vm", CompareOp::kEqual, 0).thenPut("/t/vm", "v1"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->succeeded);
  auto again = client->txn(
      Txn().ifVersion("/t/vm", CompareOp::kEqual, 0).thenPut("/t/vm", "other").elseGet("/t/vm"));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->succeeded);
  ASSERT_EQ(again->gets.size(), 1u);
  ASSERT_EQ(again->gets[0].kvs.size(), 1u);
  EXPECT_EQ(again->gets[0].kvs[0].value, "v1");

  // Update conditioned on the revision read: the first writer wins, the stale one fails.
  int64_t read_revision = again->gets[0].kvs[0].mod_revision;
  auto update = client->txn(Txn()
                                .ifModRevision("/t/vm", CompareOp::kEqual, read_revision)
                                .thenPut("/t/vm", "v2")
                                .thenGet("/t/vm"));
  ASSERT_TRUE(update.ok());
  EXPECT_TRUE(update->succeeded);
  ASSERT_EQ(update->gets.size(), 1u);
  EXPECT_EQ(update->gets[0].kvs[0].value, "v2");
  auto stale = client->txn(
      Txn().ifModRevision("/t/vm", CompareOp::kEqual, read_revision).thenPut("/t/vm", "v3"));
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(client->get("/t/vm")->kvs[0].value, "v2");
}

TEST_F(EtcdClientTest, WatchDeliversPutsAndDeletesFromARevision) {
  auto client = clientStartingAt(0);
  ASSERT_NE(client, nullptr);
  auto start = client->put("/t/w/a", "1");
  ASSERT_TRUE(start.ok());
  ASSERT_TRUE(client->put("/t/w/a", "2").ok());
  ASSERT_TRUE(client->del("/t/w/a").ok());
  ASSERT_TRUE(client->put("/t/other", "ignored").ok());

  auto watch =
      client->watch({.key = "/t/w/", .prefix = true, .start_revision = *start, .prev_kv = true});
  std::vector<std::string> seen;
  while (seen.size() < 3) {
    auto batch = watch->next(absl::Seconds(30));
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (const WatchEvent& event : batch->events) {
      seen.push_back(fmt::format("{} {}={} (was {})",
                                 event.type == WatchEvent::Type::kPut ? "put" : "delete",
                                 event.kv.key, event.kv.value, event.prev_kv.value));
    }
  }
  EXPECT_THAT(seen,
              ElementsAre("put /t/w/a=1 (was )", "put /t/w/a=2 (was 1)", "delete /t/w/a= (was 2)"));
  EXPECT_TRUE(absl::IsDeadlineExceeded(watch->next(absl::Milliseconds(200)).status()));
  watch->cancel();
  EXPECT_TRUE(absl::IsCancelled(watch->next(absl::Seconds(1)).status()));
}

// Collects the events of `watch` until one carries `last_key`; fails the test on a gap of
// 30 s without events.
std::vector<WatchEvent> collectUntil(Watch& watch, const std::string& last_key,
                                     const std::function<void(size_t)>& on_progress = {}) {
  std::vector<WatchEvent> events;
  while (events.empty() || events.back().kv.key != last_key) {
    if (on_progress) on_progress(events.size());
    auto batch = watch.next(absl::Seconds(30));
    EXPECT_TRUE(batch.ok()) << batch.status() << " after " << events.size() << " events";
    if (!batch.ok()) break;
    events.insert(events.end(), batch->events.begin(), batch->events.end());
  }
  return events;
}

// The member serving a watch is killed while keys are written: the watch moves to another
// member and delivers every event exactly once, in revision order. "Every event" is checked
// against a second watch of the same revisions that was never interrupted.
TEST_F(EtcdClientTest, WatchSurvivesItsMemberBeingKilled) {
  auto watcher = clientStartingAt(0);
  ASSERT_NE(watcher, nullptr);
  ASSERT_EQ(watcher->currentEndpoint(), cluster_->clientEndpoint(0));
  auto writer = clientStartingAt(1);
  ASSERT_NE(writer, nullptr);

  auto start = writer->put("/t/start", "");
  ASSERT_TRUE(start.ok()) << start.status();
  auto watch = watcher->watch({.key = "/t/keys/", .prefix = true, .start_revision = *start});

  constexpr int kKeys = 200;
  const std::string last_key = fmt::format("/t/keys/{:04}", kKeys - 1);
  std::atomic<bool> write_failed{false};
  std::jthread writer_thread([&] {
    for (int i = 0; i < kKeys; ++i) {
      // A put whose outcome is unknown (the leader was killed under it) is written again:
      // the history may then hold the key twice, which the comparison below allows.
      absl::Status status;
      for (int attempt = 0; attempt < 20; ++attempt) {
        status = writer->put(fmt::format("/t/keys/{:04}", i), std::to_string(i)).status();
        if (status.ok()) break;
      }
      if (!status.ok()) {
        ADD_FAILURE() << "writing key " << i << ": " << status;
        write_failed = true;
        return;
      }
    }
  });

  bool killed = false;
  std::vector<WatchEvent> seen = collectUntil(*watch, last_key, [&](size_t count) {
    if (!killed && count >= kKeys / 4) {
      EXPECT_TRUE(cluster_->kill(0).ok());
      killed = true;
    }
  });
  writer_thread.join();
  ASSERT_FALSE(write_failed);
  ASSERT_TRUE(killed);
  EXPECT_GE(watch->reconnects(), 1u);
  EXPECT_NE(watcher->currentEndpoint(), cluster_->clientEndpoint(0));

  auto reference_client = clientStartingAt(2);
  ASSERT_NE(reference_client, nullptr);
  auto reference_watch =
      reference_client->watch({.key = "/t/keys/", .prefix = true, .start_revision = *start});
  std::vector<WatchEvent> reference = collectUntil(*reference_watch, last_key);
  ASSERT_EQ(seen.size(), reference.size());
  for (size_t i = 0; i < seen.size(); ++i) {
    ASSERT_EQ(seen[i].kv, reference[i].kv) << "event " << i;
    if (i > 0) {
      ASSERT_GT(seen[i].kv.mod_revision, seen[i - 1].kv.mod_revision);
    }
  }
  // Every key, in the order written.
  std::vector<std::string> first_seen;
  for (const WatchEvent& event : seen) {
    if (first_seen.empty() || first_seen.back() != event.kv.key) first_seen.push_back(event.kv.key);
  }
  ASSERT_EQ(first_seen.size(), static_cast<size_t>(kKeys));
  EXPECT_TRUE(absl::IsDeadlineExceeded(watch->next(absl::Milliseconds(300)).status()));

  // The killed member comes back and serves again.
  ASSERT_TRUE(cluster_->restart(0).ok());
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionEndsWithOutOfRange) {
  auto client = clientStartingAt(2);
  ASSERT_NE(client, nullptr);
  auto first = client->put("/t/c", "1");
  ASSERT_TRUE(first.ok());
  auto last = client->put("/t/c", "2");
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE(client->compact(*last).ok());

  auto watch = client->watch({.key = "/t/c", .start_revision = *first});
  auto batch = watch->next(absl::Seconds(30));
  ASSERT_TRUE(absl::IsOutOfRange(batch.status())) << batch.status();
  EXPECT_THAT(batch.status().message(), HasSubstr("compacted up to revision"));
}

TEST_F(EtcdClientTest, KeepAliveHoldsALeaseAcrossAKilledMemberAndItsLossIsSeen) {
  auto client = clientStartingAt(0);
  ASSERT_NE(client, nullptr);
  auto lease = client->grantLease(absl::Seconds(2));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client->put("/t/hosts-status/h1", "ready", lease->id).ok());

  auto keeper = client->keepAlive(*lease);
  ASSERT_TRUE(cluster_->kill(0).ok());
  // Several TTLs pass with the first member dead: the key stays because renewals moved on.
  const uint64_t renewals_before = keeper->renewals();
  absl::SleepFor(absl::Seconds(6));
  EXPECT_GT(keeper->renewals(), renewals_before);
  EXPECT_FALSE(keeper->lost());
  auto held = client->get("/t/hosts-status/h1");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->kvs.size(), 1u);
  EXPECT_TRUE(client->leaseTimeToLive(lease->id).ok());

  // Revoked elsewhere: the keeper learns the lease is gone and the key is deleted.
  ASSERT_TRUE(client->revokeLease(lease->id).ok());
  EXPECT_TRUE(keeper->waitLost(absl::Seconds(30)));
  EXPECT_EQ(client->get("/t/hosts-status/h1")->kvs.size(), 0u);
  EXPECT_TRUE(absl::IsNotFound(client->leaseTimeToLive(lease->id).status()));
}

TEST_F(EtcdClientTest, LeaseExpiresWhenNoLongerKeptAlive) {
  auto client = clientStartingAt(1);
  ASSERT_NE(client, nullptr);
  auto lease = client->grantLease(absl::Seconds(1));
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(client->put("/t/ephemeral", "x", lease->id).ok());
  {
    auto keeper = client->keepAlive(*lease);
    EXPECT_TRUE(eventually([&] { return keeper->renewals() >= 2; }));
  }
  EXPECT_TRUE(eventually([&] { return client->get("/t/ephemeral")->kvs.empty(); }));
}

TEST_F(EtcdClientTest, ElectionHandsLeadershipOverOnResignAndLeaseLoss) {
  auto client = clientStartingAt(0);
  ASSERT_NE(client, nullptr);
  Election election(*client, "/t/election/controller");
  EXPECT_TRUE(absl::IsNotFound(election.leader().status()));

  auto observation = election.observe();
  auto lease_a = client->grantLease(absl::Seconds(5));
  auto lease_b = client->grantLease(absl::Seconds(5));
  auto lease_c = client->grantLease(absl::Seconds(5));
  ASSERT_TRUE(lease_a.ok() && lease_b.ok() && lease_c.ok());
  auto keep_b = client->keepAlive(*lease_b);

  auto a = election.campaign(lease_a->id, "controller-a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(election.leader()->value, "controller-a");

  // B waits for leadership; C's campaign is withdrawn through its stop token.
  absl::StatusOr<LeaderKey> b = absl::UnknownError("not finished");
  std::atomic<bool> b_done{false};
  std::thread b_thread([&] {
    b = election.campaign(lease_b->id, "controller-b");
    b_done = true;
  });
  std::stop_source stop_c;
  absl::StatusOr<LeaderKey> c = absl::UnknownError("not finished");
  std::thread c_thread(
      [&] { c = election.campaign(lease_c->id, "controller-c", stop_c.get_token()); });
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(b_done);
  stop_c.request_stop();
  c_thread.join();
  EXPECT_TRUE(absl::IsCancelled(c.status())) << c.status();

  ASSERT_TRUE(election.proclaim(*a, "controller-a v2").ok());
  ASSERT_TRUE(election.resign(*a).ok());
  b_thread.join();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(election.leader()->value, "controller-b");
  EXPECT_TRUE(absl::IsFailedPrecondition(election.proclaim(*a, "deposed")))
      << "a deposed leader must not proclaim";

  // A campaigns again and waits; B's lease is revoked (as when its process dies): A leads.
  keep_b.reset();
  absl::StatusOr<LeaderKey> a2 = absl::UnknownError("not finished");
  std::thread a2_thread([&] { a2 = election.campaign(lease_a->id, "controller-a again"); });
  ASSERT_TRUE(client->revokeLease(lease_b->id).ok());
  a2_thread.join();
  ASSERT_TRUE(a2.ok()) << a2.status();

  std::vector<std::string> values;
  while (values.size() < 4) {
    auto next = observation->next(absl::Seconds(30));
    ASSERT_TRUE(next.ok()) << next.status() << " after " << values.size();
    values.push_back(next->value);
  }
  EXPECT_THAT(values,
              ElementsAre("controller-a", "controller-a v2", "controller-b", "controller-a again"));
}

TEST_F(EtcdClientTest, ReadsFailOverFromADeadFirstEndpointAndErrorsNameTheEndpoints) {
  ASSERT_TRUE(cluster_->kill(0).ok());
  // If member 0 led, the others elect a new leader first; a write sent during the election
  // may have an unknown outcome, which is (rightly) not retried.
  auto survivor = clientStartingAt(1);
  ASSERT_NE(survivor, nullptr);
  ASSERT_TRUE(eventually([&] { return survivor->get("/t/x").ok(); }));

  auto client = clientStartingAt(0);
  ASSERT_NE(client, nullptr);
  auto put = client->put("/t/x", "1");
  ASSERT_TRUE(put.ok()) << "a write that never reached a member is retried: " << put.status();
  auto read = client->get("/t/x");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->kvs.size(), 1u);

  // No member at all: a clear error naming every endpoint.
  ClientOptions options;
  options.endpoints = {cluster_->clientEndpoint(0)};
  options.request_timeout = absl::Seconds(1);
  auto dead = EtcdClient::connect(options);
  ASSERT_TRUE(dead.ok());
  auto failed = (*dead)->get("/t/x");
  EXPECT_TRUE(absl::IsUnavailable(failed.status())) << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr(cluster_->clientEndpoint(0)));
}

// A port picked free can be taken before etcd binds it: the cluster starts over on new ports.
TEST(EtcdClusterTest, StartsOverOnNewPortsWhenAPickedPortWasTaken) {
  // A listening socket holds the port given first.
  auto taken = flotilla::testing::listenOnFreePort();
  ASSERT_TRUE(taken.ok()) << taken.status();
  const uint16_t taken_port = taken->port;

  int picked = 0;
  auto cluster = EtcdCluster::start(1, "127.0.0.1", [&]() -> absl::StatusOr<uint16_t> {
    return picked++ == 0 ? taken_port : flotilla::testing::pickFreePort();
  });
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_EQ(picked, 4) << "two ports for the failed start, two for the next";
  EXPECT_NE((*cluster)->clientEndpoint(0), fmt::format("127.0.0.1:{}", taken_port));
  ClientOptions options;
  options.endpoints = (*cluster)->clientEndpoints();
  auto client = EtcdClient::connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->put("/t/x", "1").ok());

  // Always taken: the error says so after the last attempt.
  auto never =
      EtcdCluster::start(1, "127.0.0.1", [&]() -> absl::StatusOr<uint16_t> { return taken_port; });
  ASSERT_FALSE(never.ok());
  EXPECT_THAT(never.status().message(), HasSubstr("address already in use"));
  EXPECT_THAT(never.status().message(), HasSubstr("attempts"));
}

TEST(EtcdClientOptionsTest, RejectsMalformedEndpoints) {
  for (const char* endpoint : {"", "localhost", "127.0.0.1:", "127.0.0.1:http", ":2379",
                               "127.0.0.1:99999", "https://127.0.0.1:2379"}) {
    ClientOptions options;
    options.endpoints = {endpoint};
    auto client = EtcdClient::connect(options);
    EXPECT_TRUE(absl::IsInvalidArgument(client.status())) << endpoint;
    EXPECT_THAT(client.status().message(), HasSubstr(endpoint));
  }
  EXPECT_TRUE(absl::IsInvalidArgument(EtcdClient::connect({}).status()));
  ClientOptions ok;
  ok.endpoints = {"http://127.0.0.1:2379", "etcd-1:2379"};
  EXPECT_TRUE(EtcdClient::connect(ok).ok());
}

TEST(EtcdPrefixTest, RangeEndIsTheNextKeyAfterThePrefix) {
  EXPECT_EQ(prefixRangeEnd("/a/"), "/a0");
  EXPECT_EQ(prefixRangeEnd("ab\xff"), "ac");
  EXPECT_EQ(prefixRangeEnd("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(prefixRangeEnd(""), std::string(1, '\0'));
}

}  // namespace
}  // namespace flotilla::etcd
