// ViewCache against a private etcd: after a random sequence of puts and deletes of every kind
// the view holds (in transactions, as the controller writes them), the view kept current from
// the watch equals a fresh Store::readView at the same revision; a reload that overtakes the
// watch is not undone by the older events still queued; and a WatchedView (a standby
// replica's) stays equal to a fresh read with no read of its own after the first.
#include "controller/store/view_cache.h"
#include "controller/store/watched_view.h"

#include <random>

#include "common/etcd/client.h"
#include "common/etcd/watch.h"
#include "fmt/format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/support/etcd_cluster.h"

namespace flotilla::controller {
namespace {

using ::flotilla::testing::EtcdCluster;
using ::google::protobuf::util::MessageDifferencer;

class ViewCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EtcdCluster::start(1);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    etcd::ClientOptions options;
    options.endpoints = cluster_->clientEndpoints();
    auto client = etcd::EtcdClient::connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    store_ = std::make_unique<Store>(*client_);
  }

  // One random change: a put or a delete of a host, host status, VM (record and status in one
  // transaction, as CreateVm writes them, or the status alone), network, pool, migration,
  // drain, event or volume.
  void randomChange(std::mt19937& random) {
    const std::string name = fmt::format("o{}", random() % 6);
    const bool put = random() % 3 != 0;
    etcd::Txn txn;
    auto change = [&](const std::string& key, const google::protobuf::MessageLite& value) {
      if (put) {
        txn.thenPut(key, encodeValue(value));
      } else {
        txn.thenDelete(key);
      }
    };
    const auto tag = static_cast<uint32_t>(random());
    switch (random() % 9) {
      case 0: {
        v1::HostRecord record;
        record.mutable_meta()->set_name(name);
        record.set_state(tag % 2 ? v1::HOST_STATE_READY : v1::HOST_STATE_UNREACHABLE);
        change(hostKey(name), record);
        break;
      }
      case 1: {
        v1::HostStatus status;
        status.set_updated_unix_ms(tag);
        change(hostStatusKey(name), status);
        break;
      }
      case 2: {
        v1::VmRecord record;
        record.mutable_meta()->set_name(name);
        record.set_want_running(tag % 2);
        v1::VmStatus status;
        status.set_host(fmt::format("h{}", tag % 5));
        change(vmKey(name), record);
        change(vmStatusKey(name), status);
        break;
      }
      case 3: {
        v1::VmStatus status;
        status.set_generation(tag);
        change(vmStatusKey(name), status);
        break;
      }
      case 4: {
        v1::NetworkRecord network;
        network.mutable_meta()->set_name(name);
        network.set_vlan(1 + tag % 4094);
        change(networkKey(name), network);
        break;
      }
      case 5: {
        v1::PoolRecord pool;
        pool.mutable_meta()->set_name(name);
        pool.set_shared(tag % 2);
        change(poolKey(name), pool);
        break;
      }
      case 6: {
        v1::MigrationRecord migration;
        migration.mutable_meta()->set_name(name);
        migration.set_vm(fmt::format("vm-{}", tag));
        change(migrationKey(name), migration);
        break;
      }
      case 7: {
        v1::DrainRecord drain;
        drain.mutable_meta()->set_name(name);
        change(drainKey(name), drain);
        break;
      }
      default: {
        v1::VolumeRecord volume;
        volume.set_size_bytes(tag);
        change(volumeKey("san", name), volume);
        change(eventsPrefix() + name, volume);
        break;
      }
    }
    ASSERT_TRUE(client_->txn(txn).ok());
  }

  // Applies what the watch has until the view reaches `revision`.
  void catchUp(ViewCache& cache, etcd::Watch& watch, int64_t revision) {
    while (cache.view().revision < revision) {
      auto batch = watch.next(absl::Seconds(10));
      ASSERT_TRUE(batch.ok()) << batch.status();
      ASSERT_TRUE(cache.apply(*batch).ok());
    }
  }

  void expectEqual(const ClusterView& cached, const ClusterView& read) {
    EXPECT_EQ(cached.revision, read.revision);
    ASSERT_EQ(cached.hosts.size(), read.hosts.size());
    for (const auto& [name, host] : read.hosts) {
      const HostView& mine = cached.hosts.at(name);
      EXPECT_EQ(mine.name, host.name);
      EXPECT_TRUE(MessageDifferencer::Equals(mine.record, host.record)) << name;
      ASSERT_EQ(mine.status.has_value(), host.status.has_value()) << name;
      if (host.status) {
        EXPECT_TRUE(MessageDifferencer::Equals(*mine.status, *host.status)) << name;
      }
    }
    ASSERT_EQ(cached.vms.size(), read.vms.size());
    for (const auto& [name, vm] : read.vms) {
      const VmView& mine = cached.vms.at(name);
      EXPECT_TRUE(MessageDifferencer::Equals(mine.record, vm.record)) << name;
      EXPECT_TRUE(MessageDifferencer::Equals(mine.status, vm.status)) << name;
    }
    auto sameMap = [](const auto& a, const auto& b) {
      if (a.size() != b.size()) return false;
      for (const auto& [name, value] : b) {
        auto it = a.find(name);
        if (it == a.end() || !MessageDifferencer::Equals(it->second, value)) return false;
      }
      return true;
    };
    EXPECT_TRUE(sameMap(cached.networks, read.networks));
    EXPECT_TRUE(sameMap(cached.pools, read.pools));
    EXPECT_TRUE(sameMap(cached.migrations, read.migrations));
    EXPECT_TRUE(sameMap(cached.drains, read.drains));
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<etcd::EtcdClient> client_;
  std::unique_ptr<Store> store_;
};

TEST_F(ViewCacheTest, TheWatchKeepsTheViewEqualToAFreshRead) {
  ViewCache cache(*store_);
  ASSERT_TRUE(cache.reload().ok());
  etcd::Watch watch(*client_, {.key = std::string(kKeyPrefix),
                               .prefix = true,
                               .start_revision = cache.view().revision + 1,
                               .prev_kv = false});
  std::mt19937 random(7);
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 25; ++i) randomChange(random);
    auto read = store_->readView();
    ASSERT_TRUE(read.ok()) << read.status();
    catchUp(cache, watch, read->revision);
    expectEqual(cache.view(), *read);
    if (HasFailure()) FAIL() << "round " << round;
  }
}

TEST_F(ViewCacheTest, OlderEventsDoNotUndoAReloadThatOvertookThem) {
  ViewCache cache(*store_);
  ASSERT_TRUE(cache.reload().ok());
  etcd::Watch watch(*client_, {.key = std::string(kKeyPrefix),
                               .prefix = true,
                               .start_revision = cache.view().revision + 1,
                               .prev_kv = false});
  std::mt19937 random(11);
  for (int i = 0; i < 40; ++i) randomChange(random);
  // The reload sees every change; the watch still holds all of them.
  ASSERT_TRUE(cache.reload().ok());
  for (int i = 0; i < 40; ++i) randomChange(random);
  auto read = store_->readView();
  ASSERT_TRUE(read.ok()) << read.status();
  catchUp(cache, watch, read->revision);
  expectEqual(cache.view(), *read);
}

TEST_F(ViewCacheTest, AWatchedViewStaysCurrentWithoutReadingTheClusterAgain) {
  WatchedView watched(*client_);
  ASSERT_TRUE(watched.refresh(absl::Now()).ok());
  std::mt19937 random(13);
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 25; ++i) randomChange(random);
    auto read = store_->readView();
    ASSERT_TRUE(read.ok()) << read.status();
    while (watched.view().revision < read->revision) {
      ASSERT_EQ(watched.next(absl::Seconds(10)), WatchedView::Wait::kChanged);
    }
    ASSERT_TRUE(watched.refresh(absl::Now()).ok());
    expectEqual(watched.view(), *read);
  }
  EXPECT_EQ(watched.reloads(), 1U);
  // Past kReloadEvery it reads the whole cluster again (the safety net).
  ASSERT_TRUE(watched.refresh(absl::Now() + WatchedView::kReloadEvery + absl::Seconds(1)).ok());
  EXPECT_EQ(watched.reloads(), 2U);
}

}  // namespace
}  // namespace flotilla::controller
