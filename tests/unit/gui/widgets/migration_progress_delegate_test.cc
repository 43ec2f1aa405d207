// MigrationProgressDelegate and migrationProgress, and the number formats of format.h.
#include <QImage>
#include <QPainter>
#include <QStandardItemModel>
#include <QTableView>
#include <QtTest/QTest>

#include "gui/widgets/format.h"
#include "gui/widgets/migration_progress_delegate.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

constexpr int kRole = MigrationProgressDelegate::kProgressRole;

// What the delegate paints for `index` in a 200x24 cell.
QImage paintCell(const MigrationProgressDelegate& delegate, QTableView& view,
                 const QModelIndex& index) {
  QImage image(200, 24, QImage::Format_ARGB32);
  image.fill(Qt::white);
  QPainter painter(&image);
  QStyleOptionViewItem option;
  option.initFrom(&view);
  option.rect = QRect(0, 0, 200, 24);
  option.widget = &view;
  delegate.paint(&painter, option, index);
  painter.end();
  return image;
}

}  // namespace

class MigrationProgressDelegateTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void progressOfAMigration() {
    v1::MigrationRecord record;
    record.set_phase(v1::MIGRATION_PHASE_PENDING);
    record.set_bytes_sent(100);
    QCOMPARE(migrationProgress(record), 0.0);
    record.set_phase(v1::MIGRATION_PHASE_TRANSFERRING);
    record.set_bytes_sent(uint64_t{3} << 30);
    record.set_remaining_bytes(uint64_t{1} << 30);
    QCOMPARE(migrationProgress(record), 0.75);
    record.set_phase(v1::MIGRATION_PHASE_FAILED);
    QCOMPARE(migrationProgress(record), 0.75);
    record.set_phase(v1::MIGRATION_PHASE_SUCCEEDED);
    QCOMPARE(migrationProgress(record), 1.0);
    v1::MigrationRecord nothing_yet;
    nothing_yet.set_phase(v1::MIGRATION_PHASE_TRANSFERRING);
    QCOMPARE(migrationProgress(nothing_yet), 0.0);
  }

  void textOnTheBar() {
    QStandardItemModel model(1, 3);
    model.setData(model.index(0, 0), 0.5, kRole);
    model.setData(model.index(0, 1), 0.25, kRole);
    model.setData(model.index(0, 1), QStringLiteral("25% · 1 GiB"), Qt::DisplayRole);
    model.setData(model.index(0, 2), QStringLiteral("plain"), Qt::DisplayRole);
    QCOMPARE(MigrationProgressDelegate::progressText(model.index(0, 0)), QStringLiteral("50%"));
    QCOMPARE(MigrationProgressDelegate::progressText(model.index(0, 1)),
             QStringLiteral("25% · 1 GiB"));
    QVERIFY(MigrationProgressDelegate::progressText(model.index(0, 2)).isEmpty());
    model.setData(model.index(0, 0), 7.0, kRole);  // clamped
    QCOMPARE(MigrationProgressDelegate::progressText(model.index(0, 0)), QStringLiteral("100%"));
  }

  void paintsTheFraction() {
    QStandardItemModel model(3, 1);
    model.setData(model.index(0, 0), 0.0, kRole);
    model.setData(model.index(1, 0), 1.0, kRole);
    model.setData(model.index(2, 0), QStringLiteral("no progress"), Qt::DisplayRole);
    QTableView view;
    view.setModel(&model);
    MigrationProgressDelegate delegate;
    const QImage empty = paintCell(delegate, view, model.index(0, 0));
    const QImage full = paintCell(delegate, view, model.index(1, 0));
    QVERIFY(empty != full);
    // The bar's fill reaches the right end only when full: compare a pixel near the right.
    const QPoint right(190, 12);
    QVERIFY(empty.pixel(right) != full.pixel(right));
    // A cell without kProgressRole is painted as by QStyledItemDelegate.
    QStyledItemDelegate plain;
    QImage expected(200, 24, QImage::Format_ARGB32);
    expected.fill(Qt::white);
    {
      QPainter painter(&expected);
      QStyleOptionViewItem option;
      option.initFrom(&view);
      option.rect = QRect(0, 0, 200, 24);
      option.widget = &view;
      plain.paint(&painter, option, model.index(2, 0));
    }
    QCOMPARE(paintCell(delegate, view, model.index(2, 0)), expected);
  }

  void tableRenders() {
    QStandardItemModel model(3, 2);
    const double fractions[] = {0.1, 0.55, 1.0};
    for (int row = 0; row < 3; ++row) {
      model.setData(model.index(row, 0), QStringLiteral("vm-%1").arg(row));
      model.setData(model.index(row, 1), fractions[row], kRole);
    }
    QTableView view;
    view.setModel(&model);
    view.setItemDelegateForColumn(1, new MigrationProgressDelegate(&view));
    view.resize(400, 160);
    QVERIFY(testing::rendersToPng(view, QStringLiteral("migration-progress")));
  }

  void bytesAndRatesForPeople() {
    QCOMPARE(formatBytes(0), QStringLiteral("0 B"));
    QCOMPARE(formatBytes(1023), QStringLiteral("1023 B"));
    QCOMPARE(formatBytes(1024), QStringLiteral("1 KiB"));
    QCOMPARE(formatBytes(1536), QStringLiteral("1.5 KiB"));
    QCOMPARE(formatBytes(uint64_t{300} << 20), QStringLiteral("300 MiB"));
    QCOMPARE(formatBytes(uint64_t{5} << 29), QStringLiteral("2.5 GiB"));
    QCOMPARE(formatBytes((uint64_t{1} << 30) - 1), QStringLiteral("1 GiB"));
    QCOMPARE(formatBytes(uint64_t{1} << 40), QStringLiteral("1 TiB"));
    QCOMPARE(formatByteRate(12.5 * 1024 * 1024), QStringLiteral("12.5 MiB/s"));
    QCOMPARE(formatByteRate(-1), QStringLiteral("-"));
    QCOMPARE(formatPercent(0.42), QStringLiteral("42%"));
    QCOMPARE(formatPercent(0.042), QStringLiteral("4.2%"));
    QCOMPARE(formatPercent(0), QStringLiteral("0%"));
    QCOMPARE(formatPercent(1), QStringLiteral("100%"));
    QCOMPARE(formatTimeMillis(0), QStringLiteral("-"));
    QCOMPARE(migrationPhaseName(v1::MIGRATION_PHASE_SWITCHING), QStringLiteral("switching"));
    QCOMPARE(drainPhaseName(v1::DRAIN_PHASE_CANCELLED), QStringLiteral("cancelled"));
    QCOMPARE(drainVmStateName(v1::DrainVm::STATE_FAILED), QStringLiteral("failed"));
    QCOMPARE(migrationPhaseName(v1::MIGRATION_PHASE_UNSPECIFIED), QStringLiteral("unknown"));
    QCOMPARE(migrationPhaseName(static_cast<v1::MigrationPhase>(999)), QStringLiteral("unknown"));
  }
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::MigrationProgressDelegateTest)
#include "migration_progress_delegate_test.moc"
