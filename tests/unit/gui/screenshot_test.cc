// Screenshots of flotilla-console for the docs: the main window with a populated cluster
// (3 hosts, 8 VMs, a running migration, load history in the charts) and the drain view.
// Saved to $FLOTILLA_SCREENSHOT_DIR (docs/images/ when generating them) as console-main.png
// and console-drain.png, else to a temporary directory; either way they must be real,
// non-empty images (this also proves the window renders on the offscreen platform).
#include <QDateTime>
#include <QDockWidget>
#include <QImage>
#include <QTabWidget>
#include <QTableView>
#include <QTemporaryDir>
#include <QTreeView>
#include <QtTest>
#include <algorithm>
#include <cmath>
#include <memory>

#include "gui/main_window.h"
#include "gui/widgets/drain_view.h"
#include "gui/widgets/host_load_chart.h"
#include "gui/widgets/migration_chart.h"
#include "tests/unit/gui/console_fixture.h"

namespace flotilla::console::testing {

class ScreenshotTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void mainWindowAndDrainView();

 private:
  QString save(QWidget& widget, const QString& dir, const QString& name);
};

QString ScreenshotTest::save(QWidget& widget, const QString& dir, const QString& name) {
  const QPixmap pixmap = widget.grab();
  const QString path = dir + QLatin1Char('/') + name;
  if (!pixmap.save(path, "PNG")) return {};
  return path;
}

void ScreenshotTest::mainWindowAndDrainView() {
  FakeClusterServer server;
  FakeClusterService& fake = server.service();
  const qint64 now = QDateTime::currentMSecsSinceEpoch();
  const qint64 start = now - 10 * 60 * 1000;
  const struct {
    const char* name;
    double cpu, memory;
  } hosts[] = {{"node-a", 0.45, 0.58}, {"node-b", 0.22, 0.35}, {"node-c", 0.68, 0.71}};
  for (const auto& host : hosts) fake.addHost(makeHost(host.name, host.cpu, host.memory, start));
  fake.addVm(makeVm("web-1", "node-a"));
  fake.addVm(makeVm("web-2", "node-a"));
  fake.addVm(makeVm("web-3", "node-b"));
  fake.addVm(makeVm("db-primary", "node-c", v1::VM_STATE_MIGRATING, 8, 16384));
  fake.addVm(makeVm("db-replica", "node-b", v1::VM_STATE_RUNNING, 8, 16384));
  fake.addVm(makeVm("cache-1", "node-c", v1::VM_STATE_RUNNING, 2, 4096));
  fake.addVm(makeVm("ci-runner", "node-a", v1::VM_STATE_RUNNING, 4, 8192));
  fake.addVm(makeVm("scratch", "", v1::VM_STATE_STOPPED, 1, 512));
  fake.addMigration(makeMigration("db-primary-7", "db-primary", "node-c", "node-b",
                                  v1::MIGRATION_PHASE_TRANSFERRING, 11800, 2100));
  fake.addMigration(makeMigration("web-3-2", "web-3", "node-a", "node-b",
                                  v1::MIGRATION_PHASE_SUCCEEDED, 2300, 0));
  v1::Event event;
  event.set_unix_ms(now - 60000);
  event.set_kind("migration");
  event.set_object("db-primary-7");
  event.set_severity(v1::Event::SEVERITY_INFO);
  event.set_reason("MigrationStarted");
  event.set_message("live migration of db-primary from node-c to node-b started");
  fake.addEvent(event);
  event.set_unix_ms(now - 240000);
  event.set_object("web-3-2");
  event.set_reason("Migrated");
  event.set_message("web-3 moved from node-a to node-b, 3.1 ms downtime");
  fake.addEvent(event);
  fake.setConsoleLog("db-primary", "Flotilla guest 0.1\r\ndb-primary login: ");

  ScriptedPrompts prompts;
  MainWindow window(prompts, nullptr);
  ConnectionSettings settings;
  settings.endpoints = {QString::fromStdString(server.endpoint())};
  window.connectTo(settings);
  window.resize(1600, 940);
  window.show();
  QTRY_COMPARE(window.vmModel().rowCount(), 8);
  QTRY_COMPARE(window.migrationModel().rowCount(), 2);

  // Ten minutes of load history, one report every 20 s, through the Watch stream.
  for (int step = 1; step <= 30; ++step) {
    for (size_t i = 0; i < 3; ++i) {
      const double phase = step * 0.35 + static_cast<double>(i) * 1.7;
      fake.addHost(makeHost(hosts[i].name,
                            std::clamp(hosts[i].cpu + 0.15 * std::sin(phase), 0.02, 0.98),
                            std::clamp(hosts[i].memory + 0.05 * std::sin(phase / 3), 0.05, 0.95),
                            start + step * 20000));
    }
  }
  QTRY_VERIFY(window.hostLoadChart()->cpuPoints(QStringLiteral("node-c")).size() >= 30);
  QCOMPARE(window.hostLoadChart()->seriesCount(), 6);

  // The running migration's chart: its pre-copy rounds, as the stream would have shown them.
  window.tabs()->setCurrentIndex(2);
  auto* migrations = window.findChild<QTableView*>(QStringLiteral("migrationTable"));
  migrations->selectRow(window.migrationModel().rowOf(QStringLiteral("db-primary-7")));
  QCOMPARE(window.selectedMigration(), QStringLiteral("db-primary-7"));
  MigrationChart* chart = window.migrationChart();
  chart->clear();
  v1::MigrationRecord record = *window.store().migration(QStringLiteral("db-primary-7"));
  record.set_started_unix_ms(now - 40000);
  for (int second = 0; second <= 40; ++second) {
    const double remaining = 16384.0 * std::exp(-second / 9.0) + 1900.0;
    record.set_remaining_bytes(static_cast<uint64_t>(remaining) << 20);
    record.set_bytes_sent(static_cast<uint64_t>(second) * (uint64_t{900} << 20) / 3);
    record.set_dirty_rate_bytes(60e6 + 25e6 * std::sin(second / 4.0));
    record.set_bandwidth_bytes(880e6 + 40e6 * std::cos(second / 5.0));
    record.set_rounds(static_cast<uint32_t>(1 + second / 8));
    chart->update(record, now - 40000 + second * 1000);
  }
  QVERIFY(chart->pointCount() > 30);
  window.treeView()->expandAll();
  window.treeView()->setCurrentIndex(window.treeModel().vmIndex(QStringLiteral("db-primary")));
  QTRY_VERIFY(window.detailsHtml().contains(QStringLiteral("db-primary")));

  // The drain of node-a, in the dock.
  v1::DrainRecord drain;
  drain.mutable_meta()->set_name("node-a");
  drain.set_phase(v1::DRAIN_PHASE_RUNNING);
  drain.set_created_unix_ms(now - 90000);
  const struct {
    const char* vm;
    v1::DrainVm::State state;
    const char* target;
    const char* message;
  } vms[] = {{"web-1", v1::DrainVm::STATE_DONE, "node-b", ""},
             {"web-2", v1::DrainVm::STATE_MIGRATING, "node-b", ""},
             {"ci-runner", v1::DrainVm::STATE_FAILED, "",
              "no host has 8 GiB free for ci-runner: add capacity or allow cold migration"},
             {"web-4", v1::DrainVm::STATE_WAITING, "", ""}};
  for (const auto& entry : vms) {
    v1::DrainVm* vm = drain.add_vms();
    vm->set_vm(entry.vm);
    vm->set_state(entry.state);
    vm->set_target(entry.target);
    vm->set_message(entry.message);
  }
  fake.addDrain(drain);
  QTRY_COMPARE(window.shownDrain(), QStringLiteral("node-a"));
  QTRY_VERIFY(window.drainDock()->isVisible());

  QTemporaryDir temporary;
  QString dir = qEnvironmentVariable("FLOTILLA_SCREENSHOT_DIR");
  if (dir.isEmpty()) {
    QVERIFY(temporary.isValid());
    dir = temporary.path();
  }
  // The main window without the dock, then the dock's view on its own.
  window.drainDock()->hide();
  QTest::qWait(100);  // let the charts lay out after the resize
  const QString main = save(window, dir, QStringLiteral("console-main.png"));
  QVERIFY2(!main.isEmpty(), qPrintable(dir));
  window.drainDock()->show();
  window.drainView()->resize(900, 360);
  const QString drain_png = save(*window.drainView(), dir, QStringLiteral("console-drain.png"));
  QVERIFY2(!drain_png.isEmpty(), qPrintable(dir));
  for (const QString& path : {main, drain_png}) {
    QImage image(path);
    QVERIFY2(!image.isNull(), qPrintable(path));
    QVERIFY(image.width() > 300 && image.height() > 200);
    // Not one flat colour: something was drawn.
    QVERIFY(image.pixel(5, 5) != image.pixel(image.width() / 2, image.height() / 2) ||
            image.pixel(image.width() / 3, image.height() / 3) != image.pixel(5, 5));
  }
}

}  // namespace flotilla::console::testing

QTEST_MAIN(flotilla::console::testing::ScreenshotTest)
#include "screenshot_test.moc"
