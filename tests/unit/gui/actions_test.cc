// The console's actions send the right requests to a real gRPC server (the fake
// ClusterService records them): create, start, stop, restart, delete a VM; migrate from the
// menu and by dropping a VM on a host in the tree; cordon, uncordon, drain, undrain; plan and
// apply a rebalance. An API error reaches the user with the server's message. The console
// log tails GetVmConsoleLog.
#include <QAction>
#include <QCheckBox>
#include <QDockWidget>
#include <QLabel>
#include <QLineEdit>
#include <QMimeData>
#include <QSettings>
#include <QSpinBox>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTreeView>
#include <QtTest>
#include <memory>

#include "gui/create_vm_dialog.h"
#include "gui/main_window.h"
#include "gui/widgets/console_log_view.h"
#include "gui/widgets/drain_view.h"
#include "tests/unit/gui/console_fixture.h"

namespace flotilla::console::testing {

class ActionsTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void init();
  void cleanup();

  void createVm();
  void startStopRestartVm();
  void deleteVmAsksFirst();
  void migrateFromTheMenu();
  void migrateToTheSchedulersChoice();
  void cancelMigration();
  void dropVmOnHostMigrates();
  void dropOnItsOwnHostDoesNothing();
  void cordonUncordonDrainUndrain();
  void drainViewFollowsTheWatchAndCancels();
  void rebalancePlanThenApply();
  void apiErrorShowsTheServersMessage();
  void consoleLogTailsGetVmConsoleLog();
  void connectionStateInTheStatusBar();
  void connectDialogSavesAndReconnects();
  void eventsHistoryThenLive();
  void createVmDialogBuildsTheRequest();

 private:
  // Triggers `name` once it is enabled and waits for `method` to have been called `count` times.
  void trigger(const QString& name);
  void waitCalls(const std::string& method, int count);
  FakeClusterService& fake() { return server_->service(); }

  std::unique_ptr<FakeClusterServer> server_;
  std::unique_ptr<ScriptedPrompts> prompts_;
  std::unique_ptr<MainWindow> window_;
};

void ActionsTest::init() {
  server_ = std::make_unique<FakeClusterServer>();
  populateSmallCluster(fake());
  prompts_ = std::make_unique<ScriptedPrompts>();
  window_ = std::make_unique<MainWindow>(*prompts_, nullptr);
  ConnectionSettings settings;
  settings.endpoints = {QString::fromStdString(server_->endpoint())};
  window_->connectTo(settings);
  QTRY_COMPARE(window_->vmModel().rowCount(), 5);
}

void ActionsTest::cleanup() {
  window_.reset();
  prompts_.reset();
  server_.reset();
}

void ActionsTest::trigger(const QString& name) {
  QAction* action = window_->action(name);
  QVERIFY2(action != nullptr, qPrintable(name));
  QTRY_VERIFY2(action->isEnabled(), qPrintable(name + QStringLiteral(" is disabled")));
  action->trigger();
}

void ActionsTest::waitCalls(const std::string& method, int count) {
  QTRY_COMPARE(fake().callCount(method), count);
  QTRY_COMPARE(window_->client()->callsInFlight(), 0);
}

void ActionsTest::createVm() {
  v1::CreateVmClusterRequest request;
  request.set_name("new1");
  request.mutable_spec()->set_vcpus(2);
  request.mutable_spec()->set_memory_bytes(uint64_t{512} << 20);
  request.set_start(true);
  prompts_->vm = request;
  trigger(QStringLiteral("createVm"));
  waitCalls("CreateVm", 1);
  auto sent = fake().lastRequest<v1::CreateVmClusterRequest>("CreateVm");
  QCOMPARE(sent->name(), std::string("new1"));
  QCOMPARE(sent->spec().memory_bytes(), uint64_t{512} << 20);
  QVERIFY(sent->start());
  // The Watch stream brings it into the models.
  QTRY_VERIFY(window_->vmModel().rowOf(QStringLiteral("new1")) >= 0);
  QVERIFY(prompts_->errors.isEmpty());

  // Cancelled: nothing is sent.
  prompts_->vm.reset();
  trigger(QStringLiteral("createVm"));
  QTest::qWait(50);
  QCOMPARE(fake().callCount("CreateVm"), 1);
}

void ActionsTest::startStopRestartVm() {
  window_->selectVm(QStringLiteral("web1"));
  trigger(QStringLiteral("stopVm"));
  waitCalls("StopVm", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("StopVm")->name(), std::string("web1"));
  window_->selectVm(QStringLiteral("idle1"));
  trigger(QStringLiteral("startVm"));
  waitCalls("StartVm", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("StartVm")->name(), std::string("idle1"));
  window_->selectVm(QStringLiteral("db1"));
  trigger(QStringLiteral("restartVm"));
  waitCalls("RestartVm", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("RestartVm")->name(), std::string("db1"));
}

void ActionsTest::deleteVmAsksFirst() {
  window_->selectVm(QStringLiteral("web2"));
  prompts_->confirm_answer = false;
  trigger(QStringLiteral("deleteVm"));
  QCOMPARE(prompts_->questions.size(), 1);
  QVERIFY(prompts_->questions[0].contains(QStringLiteral("web2")));
  QTest::qWait(50);
  QCOMPARE(fake().callCount("DeleteVm"), 0);

  prompts_->confirm_answer = true;
  trigger(QStringLiteral("deleteVm"));
  waitCalls("DeleteVm", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("DeleteVm")->name(), std::string("web2"));
  QTRY_COMPARE(window_->vmModel().rowOf(QStringLiteral("web2")), -1);
}

void ActionsTest::migrateFromTheMenu() {
  window_->selectVm(QStringLiteral("web1"));
  prompts_->target = QStringLiteral("h3");
  trigger(QStringLiteral("migrateVm"));
  waitCalls("MigrateVm", 1);
  // The hosts offered: every host but the VM's own.
  QCOMPARE(prompts_->target_choices, (QStringList{"h2", "h3"}));
  auto sent = fake().lastRequest<v1::MigrateVmRequest>("MigrateVm");
  QCOMPARE(sent->name(), std::string("web1"));
  QCOMPARE(sent->target(), std::string("h3"));
  QCOMPARE(sent->mode(), v1::MIGRATION_MODE_LIVE);
  // The console follows the new migration.
  QTRY_COMPARE(window_->migrationModel().rowCount(), 1);
  QCOMPARE(window_->selectedMigration(), QStringLiteral("web1-1"));
}

void ActionsTest::migrateToTheSchedulersChoice() {
  window_->selectVm(QStringLiteral("db1"));
  prompts_->target = QString();  // "Scheduler's choice"
  trigger(QStringLiteral("migrateVm"));
  waitCalls("MigrateVm", 1);
  auto sent = fake().lastRequest<v1::MigrateVmRequest>("MigrateVm");
  QCOMPARE(sent->name(), std::string("db1"));
  QCOMPARE(sent->target(), std::string());
}

void ActionsTest::cancelMigration() {
  fake().addMigration(
      makeMigration("db1-4", "db1", "h2", "h3", v1::MIGRATION_PHASE_TRANSFERRING, 100, 50));
  QTRY_COMPARE(window_->migrationModel().rowCount(), 1);
  window_->selectMigration(QStringLiteral("db1-4"));
  trigger(QStringLiteral("cancelMigration"));
  waitCalls("CancelMigration", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("CancelMigration")->name(), std::string("db1-4"));
}

void ActionsTest::dropVmOnHostMigrates() {
  ClusterTreeModel& tree = window_->treeModel();
  std::unique_ptr<QMimeData> data(tree.mimeData({tree.vmIndex(QStringLiteral("web2"))}));
  QVERIFY(data != nullptr);
  const QModelIndex h2 = tree.hostIndex(QStringLiteral("h2"));
  QVERIFY(tree.canDropMimeData(data.get(), Qt::MoveAction, -1, 0, h2));
  // Not onto the "no host" node, nor onto a VM.
  QVERIFY(!tree.canDropMimeData(data.get(), Qt::MoveAction, -1, 0, tree.unplacedIndex()));
  QVERIFY(!tree.canDropMimeData(data.get(), Qt::MoveAction, -1, 0,
                                tree.vmIndex(QStringLiteral("db1"))));
  tree.dropMimeData(data.get(), Qt::MoveAction, -1, 0, h2);
  waitCalls("MigrateVm", 1);
  auto sent = fake().lastRequest<v1::MigrateVmRequest>("MigrateVm");
  QCOMPARE(sent->name(), std::string("web2"));
  QCOMPARE(sent->target(), std::string("h2"));
  // The row moves once the Watch stream says the VM is on h2.
  fake().addVm(makeVm("web2", "h2"));
  QTRY_COMPARE(tree.parent(tree.vmIndex(QStringLiteral("web2"))),
               tree.hostIndex(QStringLiteral("h2")));
}

void ActionsTest::dropOnItsOwnHostDoesNothing() {
  ClusterTreeModel& tree = window_->treeModel();
  std::unique_ptr<QMimeData> data(tree.mimeData({tree.vmIndex(QStringLiteral("web1"))}));
  tree.dropMimeData(data.get(), Qt::MoveAction, -1, 0, tree.hostIndex(QStringLiteral("h1")));
  QTest::qWait(50);
  QCOMPARE(fake().callCount("MigrateVm"), 0);
}

void ActionsTest::cordonUncordonDrainUndrain() {
  window_->selectHost(QStringLiteral("h2"));
  trigger(QStringLiteral("cordonHost"));
  waitCalls("CordonHost", 1);
  QCOMPARE(fake().lastRequest<v1::CordonHostRequest>("CordonHost")->name(), std::string("h2"));
  // Cordoned (from the Watch stream): uncordon becomes possible.
  trigger(QStringLiteral("uncordonHost"));
  waitCalls("UncordonHost", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("UncordonHost")->name(), std::string("h2"));

  window_->selectHost(QStringLiteral("h1"));
  trigger(QStringLiteral("drainHost"));
  waitCalls("DrainHost", 1);
  QCOMPARE(fake().lastRequest<v1::DrainHostRequest>("DrainHost")->name(), std::string("h1"));
  QCOMPARE(prompts_->questions.size(), 1);
  QTRY_COMPARE(window_->shownDrain(), QStringLiteral("h1"));
  QVERIFY(window_->drainDock()->isVisibleTo(window_.get()));

  trigger(QStringLiteral("undrainHost"));
  waitCalls("UndrainHost", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("UndrainHost")->name(), std::string("h1"));
}

void ActionsTest::drainViewFollowsTheWatchAndCancels() {
  // The drain goes through scripted states as the stream delivers them.
  v1::DrainRecord migrating;
  migrating.set_phase(v1::DRAIN_PHASE_RUNNING);
  v1::DrainVm* web1 = migrating.add_vms();
  web1->set_vm("web1");
  web1->set_state(v1::DrainVm::STATE_DONE);
  web1->set_target("h2");
  v1::DrainVm* web2 = migrating.add_vms();
  web2->set_vm("web2");
  web2->set_state(v1::DrainVm::STATE_MIGRATING);
  web2->set_target("h3");
  fake().scriptDrain({migrating});
  window_->selectHost(QStringLiteral("h1"));
  trigger(QStringLiteral("drainHost"));
  waitCalls("DrainHost", 1);
  auto migrating_shown = [this] {
    const v1::DrainRecord* drain = window_->store().drain(QStringLiteral("h1"));
    return drain != nullptr && drain->vms_size() == 2 &&
           drain->vms(1).state() == v1::DrainVm::STATE_MIGRATING;
  };
  QTRY_VERIFY(migrating_shown());
  QCOMPARE(window_->shownDrain(), QStringLiteral("h1"));
  // "Cancel drain" in the view undrains the host.
  Q_EMIT window_->drainView()->cancelRequested(QStringLiteral("h1"));
  waitCalls("UndrainHost", 1);
  QCOMPARE(fake().lastRequest<v1::NameRequest>("UndrainHost")->name(), std::string("h1"));
}

void ActionsTest::rebalancePlanThenApply() {
  v1::RebalancePlan plan;
  plan.set_score_before(0.21);
  plan.set_score_after(0.08);
  v1::RebalanceMove* move = plan.add_moves();
  move->set_vm("cache1");
  move->set_source("h3");
  move->set_target("h2");
  move->set_gain(0.1);
  fake().setPlan(plan);

  prompts_->apply_plan = false;
  trigger(QStringLiteral("rebalance"));
  waitCalls("PlanRebalance", 1);
  QTRY_COMPARE(prompts_->plans.size(), size_t{1});
  QCOMPARE(prompts_->plans[0].moves(0).vm(), std::string("cache1"));
  QCOMPARE(fake().callCount("ApplyRebalance"), 0);

  prompts_->apply_plan = true;
  trigger(QStringLiteral("rebalance"));
  waitCalls("PlanRebalance", 2);
  waitCalls("ApplyRebalance", 1);
  const std::vector<std::string> calls = fake().calls();
  QCOMPARE(calls.back(), std::string("ApplyRebalance"));
}

void ActionsTest::apiErrorShowsTheServersMessage() {
  fake().failMethod("StartVm", grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                            "vm web1 is being deleted: wait until it is gone"));
  window_->selectVm(QStringLiteral("web1"));
  trigger(QStringLiteral("startVm"));
  waitCalls("StartVm", 1);
  QTRY_COMPARE(prompts_->errors.size(), 1);
  QVERIFY2(prompts_->errors[0].contains(
               QStringLiteral("vm web1 is being deleted: wait until it is gone")),
           qPrintable(prompts_->errors[0]));
  QVERIFY(prompts_->errors[0].contains(QStringLiteral("StartVm web1")));
}

void ActionsTest::consoleLogTailsGetVmConsoleLog() {
  fake().setConsoleLog("db1", "Booting db1\r\nready\n");
  window_->show();
  ConsoleLogView* log = window_->consoleLogView();
  // It polls while it is visible: bring its tab forward.
  window_->findChild<QTabWidget*>(QStringLiteral("sideTabs"))->setCurrentWidget(log);
  window_->selectVm(QStringLiteral("db1"));
  QCOMPARE(log->vm(), QStringLiteral("db1"));
  QTRY_VERIFY(log->text().contains(QStringLiteral("Booting db1\nready")));
  auto sent = fake().lastRequest<v1::VmConsoleLogRequest>("GetVmConsoleLog");
  QCOMPARE(sent->name(), std::string("db1"));
  // More output arrives: the next read starts where the last one ended.
  fake().setConsoleLog("db1", "Booting db1\r\nready\nlogin: ");
  QTRY_VERIFY(log->text().contains(QStringLiteral("login: ")));
  QTRY_VERIFY(fake().lastRequest<v1::VmConsoleLogRequest>("GetVmConsoleLog")->offset() >= 19);
  // A VM on no host: the server's message is shown in the view.
  window_->selectVm(QStringLiteral("idle1"));
  QTRY_VERIFY2(log->statusText().contains(QStringLiteral("runs on no host")),
               qPrintable(log->statusText()));
}

void ActionsTest::connectionStateInTheStatusBar() {
  QTRY_VERIFY(window_->connectionText().startsWith(QStringLiteral("connected to")));
  QVERIFY(window_->connectionText().contains(QString::fromStdString(server_->endpoint())));
}

void ActionsTest::connectDialogSavesAndReconnects() {
  FakeClusterServer other("ctl-2");
  other.service().addHost(makeHost("far1", 0.5, 0.5));
  other.service().addVm(makeVm("remote1", "far1"));
  QTemporaryDir dir;
  QSettings store(dir.filePath(QStringLiteral("console.conf")), QSettings::IniFormat);
  ScriptedPrompts prompts;
  MainWindow window(prompts, &store);
  ConnectionSettings first;
  first.endpoints = {QString::fromStdString(server_->endpoint())};
  window.connectTo(first);
  QTRY_COMPARE(window.vmModel().rowCount(), 5);

  // File → Connect: cancelled changes nothing.
  window.action(QStringLiteral("connect"))->trigger();
  QCOMPARE(window.connection(), first);
  // Another cluster: its objects replace the first one's, and the settings are saved.
  ConnectionSettings second;
  second.endpoints = {QString::fromStdString(deadEndpoint()),
                      QString::fromStdString(other.endpoint())};
  prompts.settings = second;
  window.action(QStringLiteral("connect"))->trigger();
  QCOMPARE(window.connection(), second);
  QTRY_COMPARE_WITH_TIMEOUT(window.vmModel().rowCount(), 1, 30000);
  QCOMPARE(window.vmModel().nameAt(0), QStringLiteral("remote1"));
  QCOMPARE(window.hostModel().names(), QStringList{QStringLiteral("far1")});
  QCOMPARE(loadConnectionSettings(store), second);
}

void ActionsTest::eventsHistoryThenLive() {
  v1::Event event;
  event.set_unix_ms(1763800000000);
  event.set_kind("vm");
  event.set_object("web1");
  event.set_severity(v1::Event::SEVERITY_INFO);
  event.set_reason("Scheduled");
  event.set_message("placed on h1");
  fake().addEvent(event);
  // The history is read when connecting.
  ScriptedPrompts prompts;
  MainWindow window(prompts, nullptr);
  ConnectionSettings settings;
  settings.endpoints = {QString::fromStdString(server_->endpoint())};
  window.connectTo(settings);
  QTRY_COMPARE(window.eventModel().rowCount(), 1);
  QCOMPARE(window.eventModel().index(0, 4).data().toString(), QStringLiteral("Scheduled"));
  QTRY_COMPARE(window.vmModel().rowCount(), 5);
  // A new event comes with the stream.
  event.set_reason("Migrated");
  fake().addEvent(event);
  QTRY_COMPARE(window.eventModel().rowCount(), 2);
  QCOMPARE(window.eventModel().index(1, 4).data().toString(), QStringLiteral("Migrated"));
}

void ActionsTest::createVmDialogBuildsTheRequest() {
  CreateVmDialog dialog;
  auto field = [&dialog](const char* name) {
    return dialog.findChild<QLineEdit*>(QString::fromLatin1(name));
  };
  field("vmName")->setText(QStringLiteral("web7"));
  dialog.findChild<QSpinBox*>(QStringLiteral("vmVcpus"))->setValue(4);
  field("vmMemory")->setText(QStringLiteral("2G"));
  field("vmKernel")->setText(QStringLiteral("/var/lib/flotilla/kernels/vmlinux"));
  field("vmNetworks")->setText(QStringLiteral("prod backup,offload"));
  field("vmDisk")->setText(QStringLiteral("shared/web7-root"));
  dialog.findChild<QCheckBox*>(QStringLiteral("vmHa"))->setChecked(true);
  auto request = dialog.request();
  QVERIFY2(request.ok(), std::string(request.status().message()).c_str());
  QCOMPARE(request->name(), std::string("web7"));
  QCOMPARE(request->spec().vcpus(), 4u);
  QCOMPARE(request->spec().memory_bytes(), uint64_t{2} << 30);
  QCOMPARE(request->spec().nics_size(), 2);
  QCOMPARE(request->spec().nics(1).network(), std::string("backup"));
  QVERIFY(request->spec().nics(1).offload());
  QCOMPARE(request->spec().disks(0).pool(), std::string("shared"));
  QCOMPARE(request->spec().disks(0).volume(), std::string("web7-root"));
  QVERIFY(request->spec().ha());
  QVERIFY(request->start());

  // A bad field: OK shows the error and the dialog stays open.
  field("vmMemory")->setText(QStringLiteral("lots"));
  dialog.open();
  dialog.accept();
  QVERIFY(dialog.isVisible());
  QVERIFY(dialog.result() != QDialog::Accepted);
  const QString error = dialog.findChild<QLabel*>(QStringLiteral("vmError"))->text();
  QVERIFY2(error.contains(QStringLiteral("memory")), qPrintable(error));
  dialog.reject();
}

}  // namespace flotilla::console::testing

QTEST_MAIN(flotilla::console::testing::ActionsTest)
#include "actions_test.moc"
