// HostLoadChart: one line per host in each chart, a bounded sliding window, removeHost, and
// the memory figure from a HostStatus.
#include <QChart>
#include <QLineSeries>
#include <QtTest/QTest>

#include "gui/widgets/host_load_chart.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

constexpr qint64 kStart = 1'790'000'000'000;  // some time in 2026, in ms
constexpr uint64_t kGiB = uint64_t{1} << 30;

v1::HostStatus hostStatus(const std::string& name, qint64 unix_ms, double cpu, uint64_t total,
                          uint64_t available) {
  v1::HostStatus status;
  status.set_name(name);
  status.set_updated_unix_ms(unix_ms);
  status.mutable_inventory()->set_memory_bytes(total);
  status.mutable_load()->set_cpu_busy(cpu);
  status.mutable_load()->set_memory_available_bytes(available);
  return status;
}

}  // namespace

class HostLoadChartTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void oneSeriesPerHostInEachChart() {
    HostLoadChart chart;
    QVERIFY(chart.addSample(QStringLiteral("host-a"), kStart, 0.25, 0.5));
    QVERIFY(chart.addSample(QStringLiteral("host-b"), kStart, 0.75, 0.1));
    QVERIFY(chart.addSample(QStringLiteral("host-a"), kStart + 5000, 0.3, 0.55));
    QVERIFY(chart.addSample(QStringLiteral("host-c"), kStart + 5000, 0.0, 1.0));
    QCOMPARE(chart.hosts(), (QStringList{QStringLiteral("host-a"), QStringLiteral("host-b"),
                                         QStringLiteral("host-c")}));
    QCOMPARE(chart.seriesCount(), 6);
    QCOMPARE(chart.cpuChart()->series().size(), 3);
    QCOMPARE(chart.memoryChart()->series().size(), 3);
    QCOMPARE(chart.cpuPoints(QStringLiteral("host-a")),
             (QList<QPointF>{QPointF(double(kStart), 25.0), QPointF(double(kStart + 5000), 30.0)}));
    QCOMPARE(chart.memoryPoints(QStringLiteral("host-b")),
             (QList<QPointF>{QPointF(double(kStart), 10.0)}));
    // Each host's line has the same colour in both charts.
    const auto* cpu = qobject_cast<QLineSeries*>(chart.cpuChart()->series().at(1));
    const auto* memory = qobject_cast<QLineSeries*>(chart.memoryChart()->series().at(1));
    QCOMPARE(cpu->name(), QStringLiteral("host-b"));
    QCOMPARE(memory->color(), cpu->color());
  }

  void valuesAreClampedToPercent() {
    HostLoadChart chart;
    chart.addSample(QStringLiteral("h"), kStart, 1.5, -0.2);
    chart.addSample(QStringLiteral("h"), kStart + 1, std::nan(""), 0.333);
    QCOMPARE(chart.cpuPoints(QStringLiteral("h")).at(0).y(), 100.0);
    QCOMPARE(chart.memoryPoints(QStringLiteral("h")).at(0).y(), 0.0);
    QCOMPARE(chart.cpuPoints(QStringLiteral("h")).at(1).y(), 0.0);
    QVERIFY(qFuzzyCompare(chart.memoryPoints(QStringLiteral("h")).at(1).y(), 33.3));
  }

  void repeatedOrOlderSamplesAreIgnored() {
    HostLoadChart chart;
    QVERIFY(chart.addSample(QStringLiteral("h"), kStart + 1000, 0.1, 0.1));
    QVERIFY(!chart.addSample(QStringLiteral("h"), kStart + 1000, 0.2, 0.2));
    QVERIFY(!chart.addSample(QStringLiteral("h"), kStart, 0.3, 0.3));
    QCOMPARE(chart.cpuPoints(QStringLiteral("h")).size(), 1);
    QVERIFY(!chart.addSample(QString(), kStart + 2000, 0.3, 0.3));
  }

  void theWindowStaysBounded() {
    HostLoadChart chart;
    QCOMPARE(chart.windowMs(), HostLoadChart::kDefaultWindowMs);
    chart.setWindowMs(60'000);
    // An hour of samples every second from one host, and one early sample from another.
    chart.addSample(QStringLiteral("quiet"), kStart, 0.5, 0.5);
    for (qint64 second = 0; second < 3600; ++second) {
      chart.addSample(QStringLiteral("busy"), kStart + second * 1000, 0.5, 0.5);
    }
    const qint64 newest = kStart + 3599 * 1000;
    const QList<QPointF> cpu = chart.cpuPoints(QStringLiteral("busy"));
    QCOMPARE(cpu.size(), 61);  // the newest and the 60 seconds before it
    QCOMPARE(cpu.first().x(), double(newest - 60'000));
    QCOMPARE(cpu.last().x(), double(newest));
    QCOMPARE(chart.memoryPoints(QStringLiteral("busy")).size(), 61);
    // The other host's old point is gone too (its line stays until removeHost).
    QVERIFY(chart.cpuPoints(QStringLiteral("quiet")).isEmpty());
    QCOMPARE(chart.hosts().size(), 2);
    // A sample older than the window is not added at all.
    QVERIFY(!chart.addSample(QStringLiteral("late"), newest - 61'000, 0.1, 0.1));
    QCOMPARE(chart.hosts().size(), 2);

    // Shrinking the window drops points at once.
    chart.setWindowMs(10'000);
    QCOMPARE(chart.cpuPoints(QStringLiteral("busy")).size(), 11);
  }

  void pointsPerHostAreCappedEvenInsideTheWindow() {
    HostLoadChart chart;
    for (int i = 0; i < HostLoadChart::kMaxPointsPerHost + 100; ++i) {
      chart.addSample(QStringLiteral("h"), kStart + i, 0.1, 0.1);  // every millisecond
    }
    QCOMPARE(chart.cpuPoints(QStringLiteral("h")).size(), HostLoadChart::kMaxPointsPerHost);
    QCOMPARE(chart.cpuPoints(QStringLiteral("h")).last().x(),
             double(kStart + HostLoadChart::kMaxPointsPerHost + 99));
  }

  void removeHostRemovesItsLines() {
    HostLoadChart chart;
    chart.addSample(QStringLiteral("host-a"), kStart, 0.1, 0.1);
    chart.addSample(QStringLiteral("host-b"), kStart, 0.2, 0.2);
    chart.removeHost(QStringLiteral("host-a"));
    QCOMPARE(chart.hosts(), QStringList{QStringLiteral("host-b")});
    QCOMPARE(chart.seriesCount(), 2);
    QVERIFY(chart.cpuPoints(QStringLiteral("host-a")).isEmpty());
    chart.removeHost(QStringLiteral("unknown"));  // nothing happens
    QCOMPARE(chart.seriesCount(), 2);
    // The host may come back.
    QVERIFY(chart.addSample(QStringLiteral("host-a"), kStart + 1000, 0.3, 0.3));
    QCOMPARE(chart.seriesCount(), 4);
    chart.clear();
    QCOMPARE(chart.seriesCount(), 0);
    QVERIFY(chart.hosts().isEmpty());
  }

  void memoryUsedComesFromInventoryAndLoad() {
    QCOMPARE(memoryUsedFraction(hostStatus("h", kStart, 0.1, 16 * kGiB, 4 * kGiB)),
             std::optional<double>(0.75));
    QCOMPARE(memoryUsedFraction(hostStatus("h", kStart, 0.1, 16 * kGiB, 32 * kGiB)),
             std::optional<double>(0.0));
    QCOMPARE(memoryUsedFraction(hostStatus("h", kStart, 0.1, 0, 4 * kGiB)), std::nullopt);
    v1::HostStatus no_load;
    no_load.set_name("h");
    no_load.mutable_inventory()->set_memory_bytes(16 * kGiB);
    QCOMPARE(memoryUsedFraction(no_load), std::nullopt);

    HostLoadChart chart;
    QVERIFY(chart.addSample(hostStatus("node-1", kStart, 0.42, 8 * kGiB, 2 * kGiB)));
    QVERIFY(!chart.addSample(no_load));
    QCOMPARE(chart.cpuPoints(QStringLiteral("node-1")),
             (QList<QPointF>{QPointF(double(kStart), 42.0)}));
    QCOMPARE(chart.memoryPoints(QStringLiteral("node-1")),
             (QList<QPointF>{QPointF(double(kStart), 75.0)}));
  }

  void chartRenders() {
    HostLoadChart chart;
    chart.resize(720, 480);
    for (int i = 0; i <= 120; ++i) {
      const double t = i / 120.0;
      chart.addSample(QStringLiteral("host-a"), kStart + i * 5000, 0.2 + 0.5 * t * (1 - t),
                      0.4 + 0.1 * t);
      chart.addSample(QStringLiteral("host-b"), kStart + i * 5000, 0.6 - 0.3 * t, 0.7);
    }
    QVERIFY(testing::rendersToPng(chart, QStringLiteral("host-load-chart")));
  }
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::HostLoadChartTest)
#include "host_load_chart_test.moc"
