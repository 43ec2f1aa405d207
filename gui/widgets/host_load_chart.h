// HostLoadChart: CPU busy % and memory used % of each host over a sliding time window, one
// line per host in two charts (CPU above, memory below), fed from the hosts' HostStatus.
#pragma once

#include <QHash>
#include <QList>
#include <QPointF>
#include <QString>
#include <QStringList>
#include <QWidget>
#include <optional>

#include "flotilla/v1/agent.pb.h"

class QChart;
class QChartView;
class QDateTimeAxis;
class QLineSeries;
class QValueAxis;

namespace flotilla::console {

// The fraction 0..1 of a host's memory in use: 1 - load.memory_available_bytes /
// inventory.memory_bytes. nullopt when the host reported no load or no memory size yet.
std::optional<double> memoryUsedFraction(const v1::HostStatus& status);

// Child object names: "cpuChart", "memoryChart" (QChartView). Points are (unix ms, percent
// 0..100). Samples of a host that are not newer than its last point are ignored (the Watch
// stream repeats a host's status for changes other than its load), and points older than the
// window before the newest sample of any host are dropped, so memory stays bounded.
class HostLoadChart : public QWidget {
  Q_OBJECT

 public:
  static constexpr qint64 kDefaultWindowMs = 10 * 60 * 1000;
  // A second bound, for hosts that report far more often than expected.
  static constexpr int kMaxPointsPerHost = 3600;

  explicit HostLoadChart(QWidget* parent = nullptr);

  // Fractions 0..1 (clamped). Adds the host's two series on its first sample. false: ignored
  // (not newer than the host's last point, or already outside the window).
  bool addSample(const QString& host, qint64 unix_ms, double cpu_busy_0_to_1,
                 double memory_used_0_to_1);
  // From a host's status (name, updated_unix_ms, load.cpu_busy, memoryUsedFraction). false:
  // ignored, also when the status carries no load yet.
  bool addSample(const v1::HostStatus& status);
  void removeHost(const QString& host);
  void clear();

  void setWindowMs(qint64 window_ms);
  qint64 windowMs() const { return window_ms_; }

  // For tests and the main window.
  QStringList hosts() const;  // in the order they were added
  int seriesCount() const;    // line series over both charts (2 per host)
  QList<QPointF> cpuPoints(const QString& host) const;
  QList<QPointF> memoryPoints(const QString& host) const;
  QChart* cpuChart() const { return cpu_chart_; }
  QChart* memoryChart() const { return memory_chart_; }

 private:
  struct HostSeries {
    QLineSeries* cpu = nullptr;
    QLineSeries* memory = nullptr;
  };

  void trim();
  void updateAxes();

  qint64 window_ms_ = kDefaultWindowMs;
  qint64 newest_ms_ = 0;  // the newest sample of any host
  QStringList order_;
  QHash<QString, HostSeries> series_;
  QChart* cpu_chart_;
  QChart* memory_chart_;
  QChartView* cpu_view_;
  QChartView* memory_view_;
  QDateTimeAxis* cpu_time_axis_;
  QDateTimeAxis* memory_time_axis_;
  QValueAxis* cpu_value_axis_;
  QValueAxis* memory_value_axis_;
};

}  // namespace flotilla::console
