// MigrationChart: a running live migration's dirty rate, bandwidth and remaining bytes over
// time, from the MigrationRecords the Watch stream delivers.
#pragma once

#include <QList>
#include <QPointF>
#include <QString>
#include <QWidget>

#include "flotilla/v1/cluster_state.pb.h"

class QChart;
class QChartView;
class QLabel;
class QLineSeries;
class QValueAxis;

namespace flotilla::console {

// Child object names: "migrationChartView" (QChartView), "migrationSummary" (QLabel: bytes
// sent, remaining, rates, rounds). The x axis is seconds since the migration started (its
// started_unix_ms, else its first point); the rates are in MiB/s on the left axis, the
// remaining bytes in MiB on the right axis.
class MigrationChart : public QWidget {
  Q_OBJECT

 public:
  static constexpr int kMaxPoints = 3600;  // the oldest points go first

  explicit MigrationChart(QWidget* parent = nullptr);

  // Follows `record` (a record of another migration than the one shown starts over): the title
  // and summary always follow it; a point (unix_ms: when the record was received) is appended
  // only while the phase is TRANSFERRING or SWITCHING and unix_ms is newer than the last one.
  // true: a point was appended.
  bool update(const v1::MigrationRecord& record, qint64 unix_ms);
  using QWidget::update;  // repaint
  void clear();

  // For tests and the main window.
  QString migration() const { return migration_; }  // meta.name of the record shown
  QString title() const;
  int pointCount() const;
  QList<QPointF> dirtyRatePoints() const;  // (seconds, MiB/s)
  QList<QPointF> bandwidthPoints() const;  // (seconds, MiB/s)
  QList<QPointF> remainingPoints() const;  // (seconds, MiB)
  QChart* chart() const { return chart_; }

 private:
  void updateAxes();

  QString migration_;
  qint64 origin_ms_ = 0;  // x = 0
  QChart* chart_;
  QChartView* view_;
  QLabel* summary_;
  QLineSeries* dirty_rate_;
  QLineSeries* bandwidth_;
  QLineSeries* remaining_;
  QValueAxis* time_axis_;
  QValueAxis* rate_axis_;
  QValueAxis* remaining_axis_;
};

}  // namespace flotilla::console
