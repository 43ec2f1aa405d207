// The console's models follow the Watch stream of a real gRPC server (the fake
// ClusterService): the full state first, then puts, updates and deletes as row insertions,
// dataChanged and removals; a VM that moves host moves in the tree; a broken stream resumes
// from its revision without duplicating rows; OUT_OF_RANGE starts over from the full state;
// the first endpoint dead, the second serves.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QtTest>
#include <memory>

#include "gui/cluster_store.h"
#include "gui/cluster_tree_model.h"
#include "gui/cluster_watcher.h"
#include "gui/console_client.h"
#include "gui/table_models.h"
#include "tests/unit/gui/console_fixture.h"

namespace flotilla::console::testing {

namespace {

// How long to wait for what involves reconnecting (backoff up to 5 s): generous, so that a
// loaded machine does not fail the test; passing tests do not wait for it.
constexpr int kWait = 30000;

// A store with its models, fed by a watcher of `endpoints`.
struct Console {
  explicit Console(std::vector<std::string> endpoints) {
    cli::ClientOptions options;
    options.endpoints = std::move(endpoints);
    options.connect_timeout = absl::Milliseconds(500);
    watcher = std::make_unique<ClusterWatcher>(options);
    QObject::connect(watcher.get(), &ClusterWatcher::eventReceived, &store, &ClusterStore::apply);
    QObject::connect(watcher.get(), &ClusterWatcher::resetting, &store, &ClusterStore::clear);
    watcher->start();
  }
  ~Console() { watcher->stop(); }

  ClusterStore store;
  ClusterTreeModel tree{store};
  HostTableModel hosts{store};
  VmTableModel vms{store};
  MigrationTableModel migrations{store};
  EventTableModel events{store};
  // Qt's checks of every model's consistency after each change (failures fail the test).
  QAbstractItemModelTester tree_tester{&tree,
                                       QAbstractItemModelTester::FailureReportingMode::QtTest};
  QAbstractItemModelTester hosts_tester{&hosts,
                                        QAbstractItemModelTester::FailureReportingMode::QtTest};
  QAbstractItemModelTester vms_tester{&vms, QAbstractItemModelTester::FailureReportingMode::QtTest};
  QAbstractItemModelTester migrations_tester{
      &migrations, QAbstractItemModelTester::FailureReportingMode::QtTest};
  QAbstractItemModelTester events_tester{&events,
                                         QAbstractItemModelTester::FailureReportingMode::QtTest};
  std::unique_ptr<ClusterWatcher> watcher;
};

QString hostOfVmInTree(const ClusterTreeModel& tree, const QString& vm) {
  const QModelIndex index = tree.vmIndex(vm);
  if (!index.isValid()) return QStringLiteral("<not in tree>");
  const QModelIndex parent = tree.parent(index);
  return tree.kindOf(parent) == ClusterTreeModel::NodeKind::kUnplaced ? QStringLiteral("<none>")
                                                                      : tree.nameOf(parent);
}

}  // namespace

class ModelsTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void fullStateFillsEveryModel();
  void putsUpdatesAndDeletesAreRowChanges();
  void vmMovingHostMovesInTheTree();
  void hostRemovedLeavesItsVmsUnderNoHost();
  void brokenStreamResumesFromItsRevision();
  void outOfRangeStartsOverFromTheFullState();
  void failsOverToTheSecondEndpoint();
  void streamMovesToTheNextEndpointAndResumes();
  void clientCallsFailOverToo();
  void stopEndsWhileNothingAnswers();
  void retiredClientDropsItsCallbacksAndGoes();
};

void ModelsTest::fullStateFillsEveryModel() {
  FakeClusterServer server;
  populateSmallCluster(server.service());
  server.service().addMigration(
      makeMigration("web1-1", "web1", "h1", "h2", v1::MIGRATION_PHASE_TRANSFERRING, 300, 100));
  Console console({server.endpoint()});
  QTRY_COMPARE(console.vms.rowCount(), 5);
  QTRY_COMPARE(console.migrations.rowCount(), 1);
  QCOMPARE(console.hosts.rowCount(), 3);
  QCOMPARE(console.hosts.names(), (QStringList{"h1", "h2", "h3"}));
  QCOMPARE(console.hosts.index(0, HostTableModel::kVms).data().toInt(), 2);
  QCOMPARE(console.hosts.index(2, HostTableModel::kCpuBusy).data().toString(),
           QStringLiteral("71%"));
  QCOMPARE(console.vms.index(console.vms.rowOf("db1"), VmTableModel::kMemory).data().toString(),
           QStringLiteral("4 GiB"));
  QCOMPARE(console.vms.index(console.vms.rowOf("db1"), VmTableModel::kHost).data().toString(),
           QStringLiteral("h2"));
  // The tree: three hosts, then the node for VMs on no host.
  QCOMPARE(console.tree.rowCount(), 4);
  QCOMPARE(console.tree.rowCount(console.tree.hostIndex("h1")), 2);
  QCOMPARE(hostOfVmInTree(console.tree, "web2"), QStringLiteral("h1"));
  QCOMPARE(hostOfVmInTree(console.tree, "idle1"), QStringLiteral("<none>"));
  // Progress from bytes_sent and remaining_bytes: 300 of 400 MiB.
  const QModelIndex progress = console.migrations.index(0, MigrationTableModel::kProgress);
  QCOMPARE(progress.data(MigrationProgressDelegate::kProgressRole).toDouble(), 0.75);
  QCOMPARE(console.migrations.index(0, MigrationTableModel::kRoute).data().toString(),
           QStringLiteral("h1 → h2"));
  QTRY_COMPARE(console.watcher->state(), ClusterWatcher::State::kConnected);
  QVERIFY(console.watcher->stateText().contains(QString::fromStdString(server.endpoint())));
}

void ModelsTest::putsUpdatesAndDeletesAreRowChanges() {
  FakeClusterServer server;
  populateSmallCluster(server.service());
  Console console({server.endpoint()});
  QTRY_COMPARE(console.vms.rowCount(), 5);
  QSignalSpy vm_resets(&console.vms, &QAbstractItemModel::modelReset);
  QSignalSpy vm_inserts(&console.vms, &QAbstractItemModel::rowsInserted);
  QSignalSpy vm_removals(&console.vms, &QAbstractItemModel::rowsRemoved);
  QSignalSpy vm_changes(&console.vms, &QAbstractItemModel::dataChanged);
  QSignalSpy host_inserts(&console.hosts, &QAbstractItemModel::rowsInserted);
  QSignalSpy tree_resets(&console.tree, &QAbstractItemModel::modelReset);

  // Put: a new VM and a new host, each one inserted row at its sorted place.
  server.service().addVm(makeVm("app1", "h2"));
  server.service().addHost(makeHost("h0", 0.1, 0.1));
  QTRY_COMPARE(console.hosts.rowCount(), 4);
  QCOMPARE(console.vms.rowCount(), 6);
  QCOMPARE(vm_inserts.size(), 1);
  QCOMPARE(vm_inserts[0][1].toInt(), 0);  // "app1" sorts first
  QCOMPARE(host_inserts.size(), 1);
  QCOMPARE(console.hosts.nameAt(0), QStringLiteral("h0"));
  QCOMPARE(hostOfVmInTree(console.tree, "app1"), QStringLiteral("h2"));

  // Update: the state changes in place.
  v1::Vm stopped = makeVm("web1", "h1", v1::VM_STATE_STOPPED);
  server.service().addVm(stopped);
  const int row = console.vms.rowOf("web1");
  QTRY_COMPARE(console.vms.index(row, VmTableModel::kState).data().toString(),
               QStringLiteral("stopped"));
  QVERIFY(!vm_changes.isEmpty());
  QCOMPARE(vm_changes.last()[0].toModelIndex().row(), row);

  // Delete: VM and migration rows go.
  server.service().addMigration(
      makeMigration("db1-1", "db1", "h2", "h3", v1::MIGRATION_PHASE_SUCCEEDED, 10, 0));
  QTRY_COMPARE(console.migrations.rowCount(), 1);
  server.service().removeVm("web2");
  server.service().removeMigration("db1-1");
  QTRY_COMPARE(console.migrations.rowCount(), 0);
  QTRY_COMPARE(console.vms.rowCount(), 5);
  QCOMPARE(console.vms.rowOf("web2"), -1);
  QCOMPARE(vm_removals.size(), 1);
  QVERIFY(!console.tree.vmIndex("web2").isValid());
  QCOMPARE(console.tree.rowCount(console.tree.hostIndex("h1")), 1);

  // None of it was a reset.
  QCOMPARE(vm_resets.size(), 0);
  QCOMPARE(tree_resets.size(), 0);
}

void ModelsTest::vmMovingHostMovesInTheTree() {
  FakeClusterServer server;
  populateSmallCluster(server.service());
  Console console({server.endpoint()});
  QTRY_COMPARE(hostOfVmInTree(console.tree, "web1"), QStringLiteral("h1"));
  QSignalSpy removed(&console.tree, &QAbstractItemModel::rowsRemoved);
  QSignalSpy inserted(&console.tree, &QAbstractItemModel::rowsInserted);
  server.service().addVm(makeVm("web1", "h3"));
  QTRY_COMPARE(hostOfVmInTree(console.tree, "web1"), QStringLiteral("h3"));
  QCOMPARE(removed.size(), 1);
  QCOMPARE(inserted.size(), 1);
  QCOMPARE(console.tree.rowCount(console.tree.hostIndex("h1")), 1);
  QCOMPARE(console.tree.rowCount(console.tree.hostIndex("h3")), 2);
  // Placing the unplaced VM moves it out of the "no host" node.
  server.service().addVm(makeVm("idle1", "h2"));
  QTRY_COMPARE(hostOfVmInTree(console.tree, "idle1"), QStringLiteral("h2"));
  QCOMPARE(console.tree.rowCount(console.tree.unplacedIndex()), 0);
  QCOMPARE(console.vms.rowCount(), 5);
}

void ModelsTest::hostRemovedLeavesItsVmsUnderNoHost() {
  FakeClusterServer server;
  populateSmallCluster(server.service());
  Console console({server.endpoint()});
  QTRY_COMPARE(console.vms.rowCount(), 5);
  server.service().removeHost("h1");
  QTRY_COMPARE(console.hosts.rowCount(), 2);
  QCOMPARE(console.tree.rowCount(), 3);
  QCOMPARE(hostOfVmInTree(console.tree, "web1"), QStringLiteral("<none>"));
  QCOMPARE(hostOfVmInTree(console.tree, "web2"), QStringLiteral("<none>"));
  // The host comes back: its VMs go back under it.
  server.service().addHost(makeHost("h1", 0.2, 0.2));
  QTRY_COMPARE(hostOfVmInTree(console.tree, "web1"), QStringLiteral("h1"));
  QCOMPARE(hostOfVmInTree(console.tree, "idle1"), QStringLiteral("<none>"));
}

void ModelsTest::brokenStreamResumesFromItsRevision() {
  FakeClusterServer server;
  FakeClusterService& fake = server.service();
  populateSmallCluster(fake);
  Console console({server.endpoint()});
  QTRY_COMPARE(console.vms.rowCount(), 5);
  const int64_t seen = console.watcher->revision();
  QVERIFY(seen > 0);
  QSignalSpy resets(&console.store, &ClusterStore::cleared);

  // The stream breaks and stays down while the cluster changes.
  fake.failMethod("Watch", grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcd is away"));
  fake.breakWatches();
  QTRY_VERIFY_WITH_TIMEOUT(fake.callCount("Watch") >= 2, kWait);  // it tried again, in vain
  fake.removeVm("web2");
  fake.addVm(makeVm("web3", "h2"));
  fake.addVm(makeVm("db1", "h3"));
  fake.failMethod("Watch", grpc::Status::OK);

  QTRY_VERIFY_WITH_TIMEOUT(console.vms.rowOf("web3") >= 0, kWait);
  QTRY_COMPARE(console.vms.rowOf("web2"), -1);
  QTRY_COMPARE(hostOfVmInTree(console.tree, "db1"), QStringLiteral("h3"));
  QCOMPARE(console.vms.rowCount(), 5);  // no row twice
  QCOMPARE(console.vms.names(), (QStringList{"cache1", "db1", "idle1", "web1", "web3"}));
  QCOMPARE(console.tree.rowCount(console.tree.hostIndex("h1")), 1);
  // It resumed: the last Watch asked for the changes after what it had seen.
  auto last = fake.lastRequest<v1::WatchRequest>("Watch");
  QVERIFY(last.has_value());
  QCOMPARE(last->revision(), seen);
  QCOMPARE(resets.size(), 0);
  QTRY_COMPARE(console.watcher->state(), ClusterWatcher::State::kConnected);
}

void ModelsTest::outOfRangeStartsOverFromTheFullState() {
  FakeClusterServer server;
  FakeClusterService& fake = server.service();
  populateSmallCluster(fake);
  Console console({server.endpoint()});
  QTRY_COMPARE(console.vms.rowCount(), 5);
  QSignalSpy resets(&console.store, &ClusterStore::cleared);

  fake.failMethod("Watch", grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcd is away"));
  fake.breakWatches();
  QTRY_VERIFY_WITH_TIMEOUT(fake.callCount("Watch") >= 2, kWait);  // it tried again, in vain
  fake.removeVm("web1");
  fake.addVm(makeVm("web4", "h1"));
  fake.compactLog();  // the changes since the console's revision are gone
  fake.failMethod("Watch", grpc::Status::OK);

  QTRY_COMPARE_WITH_TIMEOUT(resets.size(), 1, kWait);
  QTRY_VERIFY(console.vms.rowOf("web4") >= 0);
  QCOMPARE(console.vms.rowOf("web1"), -1);
  QCOMPARE(console.vms.rowCount(), 5);
  QCOMPARE(console.hosts.rowCount(), 3);
  QCOMPARE(hostOfVmInTree(console.tree, "web4"), QStringLiteral("h1"));
  auto last = fake.lastRequest<v1::WatchRequest>("Watch");
  QCOMPARE(last->revision(), int64_t{0});
}

void ModelsTest::failsOverToTheSecondEndpoint() {
  FakeClusterServer server("ctl-2");
  populateSmallCluster(server.service());
  Console console({deadEndpoint(), server.endpoint()});
  QTRY_COMPARE_WITH_TIMEOUT(console.vms.rowCount(), 5, kWait);
  QTRY_COMPARE(console.watcher->state(), ClusterWatcher::State::kConnected);
  QVERIFY(console.watcher->stateText().contains(QString::fromStdString(server.endpoint())));
}

void ModelsTest::streamMovesToTheNextEndpointAndResumes() {
  // Two replicas of one cluster: the same objects at the same revisions (as two controllers
  // reading one etcd).
  auto first = std::make_unique<FakeClusterServer>("ctl-1");
  FakeClusterServer second("ctl-2");
  populateSmallCluster(first->service());
  populateSmallCluster(second.service());
  Console console({first->endpoint(), second.endpoint()});
  QTRY_COMPARE(console.vms.rowCount(), 5);
  const int64_t seen = console.watcher->revision();

  // The first replica goes away; the cluster changes meanwhile.
  first->service().breakWatches();
  first.reset();
  second.service().addVm(makeVm("web9", "h3"));
  QTRY_VERIFY_WITH_TIMEOUT(console.vms.rowOf("web9") >= 0, kWait);
  QCOMPARE(console.vms.rowCount(), 6);
  QCOMPARE(hostOfVmInTree(console.tree, "web9"), QStringLiteral("h3"));
  auto resumed = second.service().lastRequest<v1::WatchRequest>("Watch");
  QVERIFY(resumed.has_value());
  QCOMPARE(resumed->revision(), seen);
  QTRY_VERIFY(console.watcher->stateText().contains(QString::fromStdString(second.endpoint())));
}

void ModelsTest::clientCallsFailOverToo() {
  FakeClusterServer server("ctl-2");
  cli::ClientOptions options;
  options.endpoints = {deadEndpoint(), server.endpoint()};
  options.connect_timeout = absl::Milliseconds(500);
  ConsoleClient client(options);
  QObject receiver;
  std::optional<absl::StatusOr<v1::ClusterInfo>> answer;
  client.call<v1::GetClusterInfoRequest, v1::ClusterInfo>(
      cli::CallKind::kRead, QStringLiteral("GetClusterInfo"), &ConsoleClient::Stub::GetClusterInfo,
      v1::GetClusterInfoRequest(), &receiver,
      [&answer](const absl::StatusOr<v1::ClusterInfo>& info) { answer = info; });
  QCOMPARE(client.callsInFlight(), 1);
  QTRY_VERIFY_WITH_TIMEOUT(answer.has_value(), kWait);
  QVERIFY(answer->ok());
  QCOMPARE((*answer)->replica(), std::string("ctl-2"));
  QCOMPARE(client.callsInFlight(), 0);
}

void ModelsTest::stopEndsWhileNothingAnswers() {
  // Every endpoint refuses: the watcher keeps retrying until it is stopped, and says so.
  cli::ClientOptions options;
  options.endpoints = {deadEndpoint(), deadEndpoint()};
  ClusterWatcher watcher(options);
  watcher.start();
  QTRY_VERIFY_WITH_TIMEOUT(watcher.stateText().contains(QStringLiteral("no controller reachable")),
                           kWait);
  QCOMPARE(watcher.state(), ClusterWatcher::State::kReconnecting);
  watcher.stop();  // returns: the thread has ended
  watcher.stop();  // idempotent
}

void ModelsTest::retiredClientDropsItsCallbacksAndGoes() {
  FakeClusterServer server;
  cli::ClientOptions options;
  options.endpoints = {server.endpoint()};
  auto* client = new ConsoleClient(options);
  QSignalSpy destroyed(client, &QObject::destroyed);
  QObject receiver;
  bool called = false;
  client->call<v1::GetClusterInfoRequest, v1::ClusterInfo>(
      cli::CallKind::kRead, QStringLiteral("GetClusterInfo"), &ConsoleClient::Stub::GetClusterInfo,
      v1::GetClusterInfoRequest(), &receiver,
      [&called](const absl::StatusOr<v1::ClusterInfo>&) { called = true; });
  client->retire();  // returns at once; the object goes when the call has come back
  QTRY_COMPARE_WITH_TIMEOUT(destroyed.size(), 1, kWait);
  QVERIFY(!called);
}

}  // namespace flotilla::console::testing

QTEST_MAIN(flotilla::console::testing::ModelsTest)
#include "models_test.moc"
