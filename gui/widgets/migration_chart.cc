// A running migration's rates and remaining bytes over time (see migration_chart.h).
#include "gui/widgets/migration_chart.h"

#include <QChart>
#include <QChartView>
#include <QLabel>
#include <QLineSeries>
#include <QPainter>
#include <QVBoxLayout>
#include <QValueAxis>
#include <algorithm>

#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

bool isRunning(v1::MigrationPhase phase) {
  return phase == v1::MIGRATION_PHASE_TRANSFERRING || phase == v1::MIGRATION_PHASE_SWITCHING;
}

double maxY(const QLineSeries* series) {
  double max = 0;
  for (int i = 0; i < series->count(); ++i) max = std::max(max, series->at(i).y());
  return max;
}

// A round upper bound for an axis showing values up to `max` (at least 1).
double niceCeiling(double max) {
  double step = 1;
  while (step * 10 < max) step *= 10;
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    if (step * factor >= max * 1.05) return step * factor;
  }
  return step * 10;
}

}  // namespace

MigrationChart::MigrationChart(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("migrationChart"));
  chart_ = new QChart;
  chart_->legend()->setAlignment(Qt::AlignBottom);
  chart_->setMargins(QMargins(4, 4, 4, 4));

  time_axis_ = new QValueAxis(chart_);
  time_axis_->setTitleText(tr("seconds"));
  time_axis_->setLabelFormat(QStringLiteral("%.0f"));
  rate_axis_ = new QValueAxis(chart_);
  rate_axis_->setTitleText(tr("MiB/s"));
  // %g: a small range has ticks at 0.5 steps, which %.0f would print as 0, 0, 1, 2, 2.
  rate_axis_->setLabelFormat(QStringLiteral("%g"));
  remaining_axis_ = new QValueAxis(chart_);
  remaining_axis_->setTitleText(tr("MiB remaining"));
  remaining_axis_->setLabelFormat(QStringLiteral("%g"));
  chart_->addAxis(time_axis_, Qt::AlignBottom);
  chart_->addAxis(rate_axis_, Qt::AlignLeft);
  chart_->addAxis(remaining_axis_, Qt::AlignRight);

  const auto add_series = [this](const QString& name, QValueAxis* y_axis) {
    auto* series = new QLineSeries(chart_);
    series->setName(name);
    chart_->addSeries(series);
    series->attachAxis(time_axis_);
    series->attachAxis(y_axis);
    return series;
  };
  dirty_rate_ = add_series(tr("dirty rate"), rate_axis_);
  bandwidth_ = add_series(tr("bandwidth"), rate_axis_);
  remaining_ = add_series(tr("remaining"), remaining_axis_);

  view_ = new QChartView(chart_, this);
  view_->setObjectName(QStringLiteral("migrationChartView"));
  view_->setRenderHint(QPainter::Antialiasing);
  summary_ = new QLabel(this);
  summary_->setObjectName(QStringLiteral("migrationSummary"));
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  layout->addWidget(view_, 1);
  layout->addWidget(summary_);
  clear();
}

bool MigrationChart::update(const v1::MigrationRecord& record, qint64 unix_ms) {
  const QString name = fromProto(record.meta().name()).isEmpty() ? fromProto(record.vm())
                                                                 : fromProto(record.meta().name());
  if (name != migration_) {
    clear();
    migration_ = name;
  }
  const QString target =
      record.target().empty() ? tr("(not chosen yet)") : fromProto(record.target());
  chart_->setTitle(tr("Migration of %1: %2 → %3 · %4")
                       .arg(fromProto(record.vm()), fromProto(record.source()), target,
                            migrationPhaseName(record.phase())));
  QString summary =
      tr("sent %1 · remaining %2 · dirty rate %3 · bandwidth %4 · round %5")
          .arg(formatBytes(record.bytes_sent()), formatBytes(record.remaining_bytes()),
               formatByteRate(record.dirty_rate_bytes()), formatByteRate(record.bandwidth_bytes()))
          .arg(record.rounds());
  if (record.phase() == v1::MIGRATION_PHASE_SUCCEEDED && record.downtime_ms() > 0) {
    summary += tr(" · downtime %1 ms").arg(record.downtime_ms(), 0, 'f', 1);
  }
  if (!record.message().empty()) summary += QStringLiteral(" · ") + fromProto(record.message());
  summary_->setText(summary);

  if (!isRunning(record.phase())) return false;
  if (origin_ms_ == 0) {
    origin_ms_ = record.started_unix_ms() > 0 && record.started_unix_ms() <= unix_ms
                     ? record.started_unix_ms()
                     : unix_ms;
  }
  const double seconds = static_cast<double>(unix_ms - origin_ms_) / 1000.0;
  if (dirty_rate_->count() > 0 && dirty_rate_->at(dirty_rate_->count() - 1).x() >= seconds) {
    return false;
  }
  dirty_rate_->append(seconds, std::max(record.dirty_rate_bytes(), 0.0) / kMiB);
  bandwidth_->append(seconds, std::max(record.bandwidth_bytes(), 0.0) / kMiB);
  remaining_->append(seconds, static_cast<double>(record.remaining_bytes()) / kMiB);
  for (QLineSeries* series : {dirty_rate_, bandwidth_, remaining_}) {
    if (series->count() > kMaxPoints) series->removePoints(0, series->count() - kMaxPoints);
  }
  updateAxes();
  return true;
}

void MigrationChart::clear() {
  migration_.clear();
  origin_ms_ = 0;
  dirty_rate_->clear();
  bandwidth_->clear();
  remaining_->clear();
  chart_->setTitle(tr("No migration selected"));
  summary_->clear();
  updateAxes();
}

QString MigrationChart::title() const {
  return chart_->title();
}

int MigrationChart::pointCount() const {
  return dirty_rate_->count();
}

QList<QPointF> MigrationChart::dirtyRatePoints() const {
  return dirty_rate_->points();
}

QList<QPointF> MigrationChart::bandwidthPoints() const {
  return bandwidth_->points();
}

QList<QPointF> MigrationChart::remainingPoints() const {
  return remaining_->points();
}

void MigrationChart::updateAxes() {
  const double first = dirty_rate_->count() > 0 ? dirty_rate_->at(0).x() : 0.0;
  const double last =
      dirty_rate_->count() > 0 ? dirty_rate_->at(dirty_rate_->count() - 1).x() : 0.0;
  time_axis_->setRange(first, std::max(last, first + 10.0));
  time_axis_->applyNiceNumbers();  // whole ticks: 0, 2, 4, ... rather than 0, 2.5, 5, ...
  rate_axis_->setRange(0, niceCeiling(std::max({maxY(dirty_rate_), maxY(bandwidth_), 1.0})));
  remaining_axis_->setRange(0, niceCeiling(std::max(maxY(remaining_), 1.0)));
}

}  // namespace flotilla::console
