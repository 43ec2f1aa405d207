// DrainView: counts and progress of a drain with VMs in every state, the VM table, and Cancel.
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QTableWidget>
#include <QtTest/QTest>

#include "gui/widgets/drain_view.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

void addVm(v1::DrainRecord& record, const std::string& name, v1::DrainVm::State state,
           const std::string& target, const std::string& message = "", uint32_t attempts = 1) {
  v1::DrainVm* vm = record.add_vms();
  vm->set_vm(name);
  vm->set_state(state);
  vm->set_target(target);
  if (state != v1::DrainVm::STATE_WAITING) vm->set_migration(name + "-m1");
  vm->set_message(message);
  vm->set_attempts(state == v1::DrainVm::STATE_WAITING ? 0 : attempts);
}

v1::DrainRecord drainOfHostA() {
  v1::DrainRecord record;
  record.mutable_meta()->set_name("host-a");
  record.set_phase(v1::DRAIN_PHASE_RUNNING);
  record.set_created_unix_ms(1'790'000'000'000);
  addVm(record, "web-1", v1::DrainVm::STATE_DONE, "host-b");
  addVm(record, "web-2", v1::DrainVm::STATE_DONE, "host-c");
  addVm(record, "db-1", v1::DrainVm::STATE_MIGRATING, "host-b");
  addVm(record, "cache-1", v1::DrainVm::STATE_WAITING, "");
  addVm(record, "gpu-1", v1::DrainVm::STATE_FAILED, "",
        "no host has the CPU model skylake: add one or allow a cold move", 3);
  return record;
}

}  // namespace

class DrainViewTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void countsFollowTheVmStates() {
    DrainView view;
    view.update(drainOfHostA());
    QCOMPARE(view.host(), QStringLiteral("host-a"));
    QCOMPARE(view.total(), 5);
    QCOMPARE(view.done(), 2);
    QCOMPARE(view.remaining(), 2);
    QCOMPARE(view.failed(), 1);
    auto* progress = view.findChild<QProgressBar*>(QStringLiteral("drainProgress"));
    QCOMPARE(progress->maximum(), 5);
    QCOMPARE(progress->value(), 2);
    QCOMPARE(progress->text(), QStringLiteral("2 of 5 VMs moved"));
    QCOMPARE(view.findChild<QLabel*>(QStringLiteral("drainCounts"))->text(),
             QStringLiteral("2 done · 2 remaining · 1 failed"));
    QVERIFY(view.findChild<QLabel*>(QStringLiteral("drainPhase"))
                ->text()
                .contains(QStringLiteral("running")));

    auto* table = view.findChild<QTableWidget*>(QStringLiteral("drainVms"));
    QCOMPARE(table->rowCount(), 5);
    QCOMPARE(table->item(4, 0)->text(), QStringLiteral("gpu-1"));
    QCOMPARE(table->item(4, 1)->text(), QStringLiteral("failed"));
    QCOMPARE(table->item(4, 2)->text(), QStringLiteral("-"));
    QCOMPARE(table->item(4, 4)->text(), QStringLiteral("3"));
    QVERIFY(table->item(4, 5)->text().contains(QStringLiteral("skylake")));
    QCOMPARE(table->item(2, 1)->text(), QStringLiteral("migrating"));
    QCOMPARE(table->item(2, 2)->text(), QStringLiteral("host-b"));
    QCOMPARE(table->item(3, 1)->text(), QStringLiteral("waiting"));

    // The next update replaces everything.
    v1::DrainRecord finished = drainOfHostA();
    finished.set_phase(v1::DRAIN_PHASE_FAILED);
    finished.set_message("1 VM cannot leave host-a: see the table");
    finished.mutable_vms(2)->set_state(v1::DrainVm::STATE_DONE);
    finished.mutable_vms(3)->set_state(v1::DrainVm::STATE_DONE);
    view.update(finished);
    QCOMPARE(view.done(), 4);
    QCOMPARE(view.remaining(), 0);
    QCOMPARE(view.failed(), 1);
    QCOMPARE(progress->value(), 4);
    QCOMPARE(view.findChild<QLabel*>(QStringLiteral("drainMessage"))->text(),
             QStringLiteral("1 VM cannot leave host-a: see the table"));
  }

  void cancelEmitsTheHost() {
    DrainView view;
    view.update(drainOfHostA());
    auto* cancel = view.findChild<QPushButton*>(QStringLiteral("cancelDrain"));
    QVERIFY(cancel->isEnabled());
    QSignalSpy cancelled(&view, &DrainView::cancelRequested);
    cancel->click();
    QCOMPARE(cancelled.count(), 1);
    QCOMPARE(cancelled.at(0).at(0).toString(), QStringLiteral("host-a"));

    // Once asked, or once the drain ended, there is nothing to cancel.
    v1::DrainRecord record = drainOfHostA();
    record.set_cancel_requested(true);
    view.update(record);
    QVERIFY(!cancel->isEnabled());
    QVERIFY(view.findChild<QLabel*>(QStringLiteral("drainPhase"))
                ->text()
                .contains(QStringLiteral("cancel requested")));
    record.set_cancel_requested(false);
    record.set_phase(v1::DRAIN_PHASE_SUCCEEDED);
    view.update(record);
    QVERIFY(!cancel->isEnabled());
  }

  void aDrainWithoutVms() {
    DrainView view;
    v1::DrainRecord record;
    record.mutable_meta()->set_name("host-z");
    record.set_phase(v1::DRAIN_PHASE_SUCCEEDED);
    view.update(record);
    QCOMPARE(view.total(), 0);
    auto* progress = view.findChild<QProgressBar*>(QStringLiteral("drainProgress"));
    QCOMPARE(progress->value(), progress->maximum());
    QCOMPARE(progress->text(), QStringLiteral("no VMs to move"));
  }

  void viewRenders() {
    DrainView view;
    view.resize(760, 420);
    view.update(drainOfHostA());
    QVERIFY(testing::rendersToPng(view, QStringLiteral("drain-view")));
  }
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::DrainViewTest)
#include "drain_view_test.moc"
