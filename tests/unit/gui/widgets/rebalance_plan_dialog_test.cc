// RebalancePlanDialog: the moves as a table, the scores or the plan's message, and Apply.
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTableWidget>
#include <QtTest/QTest>

#include "gui/widgets/rebalance_plan_dialog.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

v1::RebalancePlan twoMoves() {
  v1::RebalancePlan plan;
  plan.set_score_before(0.2346);
  plan.set_score_after(0.081);
  v1::RebalanceMove* move = plan.add_moves();
  move->set_vm("web-1");
  move->set_source("host-a");
  move->set_target("host-c");
  move->set_gain(0.0912);
  move->set_cost(0.004);
  move = plan.add_moves();
  move->set_vm("db-2");
  move->set_source("host-a");
  move->set_target("host-b");
  move->set_gain(0.05);
  move->set_cost(0.01);
  return plan;
}

QStringList row(const QTableWidget& table, int r) {
  QStringList cells;
  for (int c = 0; c < table.columnCount(); ++c) cells.append(table.item(r, c)->text());
  return cells;
}

}  // namespace

class RebalancePlanDialogTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void showsTheMovesAndApplies() {
    RebalancePlanDialog dialog;
    dialog.setPlan(twoMoves());
    dialog.show();
    auto* table = dialog.findChild<QTableWidget*>(QStringLiteral("movesTable"));
    QVERIFY(table != nullptr);
    QCOMPARE(table->rowCount(), 2);
    QCOMPARE(row(*table, 0), (QStringList{QStringLiteral("web-1"), QStringLiteral("host-a"),
                                          QStringLiteral("host-c"), QStringLiteral("0.091"),
                                          QStringLiteral("0.004"), QStringLiteral("-")}));
    QVERIFY(table->isColumnHidden(5));  // no migrations yet
    const QString score = dialog.findChild<QLabel*>(QStringLiteral("scoreLabel"))->text();
    QVERIFY2(score.contains(QStringLiteral("0.235")) && score.contains(QStringLiteral("0.081")),
             qPrintable(score));
    QVERIFY2(score.contains(QStringLiteral("after 2 moves")), qPrintable(score));

    auto* apply = dialog.findChild<QPushButton*>(QStringLiteral("applyButton"));
    QVERIFY(apply->isEnabled());
    QSignalSpy applied(&dialog, &RebalancePlanDialog::applyRequested);
    apply->click();
    QCOMPARE(applied.count(), 1);
    QCOMPARE(dialog.result(), int(QDialog::Accepted));
    QVERIFY(!dialog.isVisible());
  }

  void nothingToMoveShowsTheMessageAndDisablesApply() {
    RebalancePlanDialog dialog;
    v1::RebalancePlan plan;
    plan.set_score_before(0.02);
    plan.set_score_after(0.02);
    plan.set_message("the imbalance 0.020 is below the threshold 0.100");
    dialog.setPlan(plan);
    dialog.show();
    auto* apply = dialog.findChild<QPushButton*>(QStringLiteral("applyButton"));
    QVERIFY(!apply->isEnabled());
    QSignalSpy applied(&dialog, &RebalancePlanDialog::applyRequested);
    apply->click();  // a disabled button does nothing
    QCOMPARE(applied.count(), 0);
    QVERIFY(dialog.isVisible());
    const QLabel* message = dialog.findChild<QLabel*>(QStringLiteral("planMessage"));
    QVERIFY(message->isVisible());
    QVERIFY2(message->text().contains(QStringLiteral("below the threshold")),
             qPrintable(message->text()));
    QVERIFY(!dialog.findChild<QTableWidget*>(QStringLiteral("movesTable"))->isVisible());

    // An empty plan: no scores, a default message.
    dialog.setPlan(v1::RebalancePlan());
    QVERIFY(!dialog.findChild<QLabel*>(QStringLiteral("scoreLabel"))->isVisible());
    QVERIFY(message->text().startsWith(QStringLiteral("No moves")));

    // Close rejects.
    dialog.findChild<QPushButton*>(QStringLiteral("closeButton"))->click();
    QCOMPARE(dialog.result(), int(QDialog::Rejected));
  }

  void anAppliedPlanNamesItsMigrations() {
    RebalancePlanDialog dialog;
    v1::RebalancePlan plan = twoMoves();
    plan.mutable_moves(0)->set_migration("web-1-7f3a");
    plan.mutable_moves(1)->set_migration("db-2-11c0");
    dialog.setPlan(plan);
    auto* table = dialog.findChild<QTableWidget*>(QStringLiteral("movesTable"));
    QVERIFY(!table->isColumnHidden(5));
    QCOMPARE(table->item(1, 5)->text(), QStringLiteral("db-2-11c0"));
    QVERIFY(!dialog.findChild<QPushButton*>(QStringLiteral("applyButton"))->isEnabled());
    QCOMPARE(dialog.plan().moves_size(), 2);
  }

  void dialogRenders() {
    RebalancePlanDialog dialog;
    dialog.setPlan(twoMoves());
    QVERIFY(testing::rendersToPng(dialog, QStringLiteral("rebalance-plan-dialog")));
  }
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::RebalancePlanDialogTest)
#include "rebalance_plan_dialog_test.moc"
