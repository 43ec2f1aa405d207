// MigrationChart: points only while the migration transfers or switches, a title with the VM,
// the hosts and the phase, and a fresh start for another migration.
#include <QLabel>
#include <QtTest/QTest>

#include "gui/widgets/format.h"
#include "gui/widgets/migration_chart.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

constexpr qint64 kStart = 1'790'000'000'000;
constexpr double kMiB = 1024.0 * 1024.0;

v1::MigrationRecord record(const std::string& name, v1::MigrationPhase phase,
                           uint64_t remaining_mib, double dirty_mib_s, double bandwidth_mib_s) {
  v1::MigrationRecord migration;
  migration.mutable_meta()->set_name(name);
  migration.set_vm("web-1");
  migration.set_source("host-a");
  migration.set_target("host-b");
  migration.set_phase(phase);
  migration.set_started_unix_ms(kStart);
  migration.set_remaining_bytes(remaining_mib << 20);
  migration.set_dirty_rate_bytes(dirty_mib_s * kMiB);
  migration.set_bandwidth_bytes(bandwidth_mib_s * kMiB);
  migration.set_bytes_sent(uint64_t{512} << 20);
  migration.set_rounds(2);
  return migration;
}

}  // namespace

class MigrationChartTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void nonRunningPhasesAddNoPoints_data() {
    QTest::addColumn<int>("phase");
    QTest::newRow("unspecified") << int(v1::MIGRATION_PHASE_UNSPECIFIED);
    QTest::newRow("pending") << int(v1::MIGRATION_PHASE_PENDING);
    QTest::newRow("preparing") << int(v1::MIGRATION_PHASE_PREPARING);
    QTest::newRow("succeeded") << int(v1::MIGRATION_PHASE_SUCCEEDED);
    QTest::newRow("failed") << int(v1::MIGRATION_PHASE_FAILED);
    QTest::newRow("cancelled") << int(v1::MIGRATION_PHASE_CANCELLED);
  }

  void nonRunningPhasesAddNoPoints() {
    QFETCH(int, phase);
    MigrationChart chart;
    const auto migration_phase = static_cast<v1::MigrationPhase>(phase);
    QVERIFY(!chart.update(record("m-1", migration_phase, 100, 10, 100), kStart + 1000));
    QCOMPARE(chart.pointCount(), 0);
    QCOMPARE(chart.migration(), QStringLiteral("m-1"));
    // The title follows the record anyway.
    QVERIFY2(chart.title().contains(migrationPhaseName(migration_phase)),
             qPrintable(chart.title()));
  }

  void runningPhasesAddPoints() {
    MigrationChart chart;
    QVERIFY(chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, 1024, 50, 400),
                         kStart + 1000));
    QVERIFY(
        chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, 256, 40, 420), kStart + 2500));
    QVERIFY(chart.update(record("m-1", v1::MIGRATION_PHASE_SWITCHING, 8, 0, 430), kStart + 3000));
    // The same moment again, and the end: no point.
    QVERIFY(!chart.update(record("m-1", v1::MIGRATION_PHASE_SWITCHING, 8, 0, 430), kStart + 3000));
    QVERIFY(!chart.update(record("m-1", v1::MIGRATION_PHASE_SUCCEEDED, 0, 0, 0), kStart + 4000));
    QCOMPARE(chart.pointCount(), 3);
    // x: seconds since started_unix_ms; rates in MiB/s; remaining in MiB.
    QCOMPARE(chart.dirtyRatePoints(),
             (QList<QPointF>{QPointF(1.0, 50.0), QPointF(2.5, 40.0), QPointF(3.0, 0.0)}));
    QCOMPARE(chart.bandwidthPoints().at(1), QPointF(2.5, 420.0));
    QCOMPARE(chart.remainingPoints(),
             (QList<QPointF>{QPointF(1.0, 1024.0), QPointF(2.5, 256.0), QPointF(3.0, 8.0)}));
    QVERIFY(chart.title().contains(QStringLiteral("succeeded")));
  }

  void titleNamesTheVmTheHostsAndThePhase() {
    MigrationChart chart;
    chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, 100, 12.5, 300), kStart + 500);
    const QString title = chart.title();
    QVERIFY2(title.contains(QStringLiteral("web-1")), qPrintable(title));
    QVERIFY2(title.contains(QStringLiteral("host-a → host-b")), qPrintable(title));
    QVERIFY2(title.contains(QStringLiteral("transferring")), qPrintable(title));
    const QString summary = chart.findChild<QLabel*>(QStringLiteral("migrationSummary"))->text();
    QVERIFY2(summary.contains(QStringLiteral("512 MiB")), qPrintable(summary));
    QVERIFY2(summary.contains(QStringLiteral("12.5 MiB/s")), qPrintable(summary));
    QVERIFY2(summary.contains(QStringLiteral("100 MiB")), qPrintable(summary));
  }

  void anotherMigrationStartsOver() {
    MigrationChart chart;
    chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, 100, 10, 100), kStart + 1000);
    chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, 90, 10, 100), kStart + 2000);
    v1::MigrationRecord other = record("m-2", v1::MIGRATION_PHASE_TRANSFERRING, 50, 5, 100);
    other.set_vm("db-1");
    other.set_started_unix_ms(kStart + 10'000);
    QVERIFY(chart.update(other, kStart + 12'000));
    QCOMPARE(chart.migration(), QStringLiteral("m-2"));
    QCOMPARE(chart.remainingPoints(), (QList<QPointF>{QPointF(2.0, 50.0)}));
    QVERIFY(chart.title().contains(QStringLiteral("db-1")));

    chart.clear();
    QCOMPARE(chart.pointCount(), 0);
    QVERIFY(chart.migration().isEmpty());
  }

  void pointsAreCapped() {
    MigrationChart chart;
    for (int i = 0; i < MigrationChart::kMaxPoints + 10; ++i) {
      chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, 100, 10, 100), kStart + i);
    }
    QCOMPARE(chart.pointCount(), MigrationChart::kMaxPoints);
    QCOMPARE(chart.remainingPoints().size(), MigrationChart::kMaxPoints);
  }

  void chartRenders() {
    MigrationChart chart;
    chart.resize(720, 420);
    uint64_t remaining = 4096;
    for (int i = 0; i < 20; ++i) {
      chart.update(record("m-1", v1::MIGRATION_PHASE_TRANSFERRING, remaining, 80.0 - i * 3, 600),
                   kStart + i * 500);
      remaining = remaining * 2 / 3;
    }
    QVERIFY(testing::rendersToPng(chart, QStringLiteral("migration-chart")));
  }
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::MigrationChartTest)
#include "migration_chart_test.moc"
