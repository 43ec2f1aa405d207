// Per-host CPU and memory charts over a sliding window (see host_load_chart.h).
#include "gui/widgets/host_load_chart.h"

#include <QChart>
#include <QChartView>
#include <QDateTime>
#include <QDateTimeAxis>
#include <QLineSeries>
#include <QPainter>
#include <QVBoxLayout>
#include <QValueAxis>
#include <algorithm>

namespace flotilla::console {
namespace {

QChart* makeChart(const QString& title, QDateTimeAxis** time_axis, QValueAxis** value_axis) {
  auto* chart = new QChart;
  chart->setTitle(title);
  chart->legend()->setAlignment(Qt::AlignRight);
  chart->setMargins(QMargins(4, 4, 4, 4));
  *time_axis = new QDateTimeAxis(chart);
  (*time_axis)->setFormat(QStringLiteral("HH:mm"));
  (*time_axis)->setTickCount(3);  // the labels must fit a narrow chart
  *value_axis = new QValueAxis(chart);
  (*value_axis)->setRange(0, 100);
  (*value_axis)->setLabelFormat(QStringLiteral("%.0f%%"));
  (*value_axis)->setTickCount(6);
  chart->addAxis(*time_axis, Qt::AlignBottom);
  chart->addAxis(*value_axis, Qt::AlignLeft);
  return chart;
}

// Removes the points of `series` whose x is before `cutoff`, and the oldest beyond `max`.
void dropOld(QLineSeries* series, double cutoff, int max) {
  int old = 0;
  while (old < series->count() && series->at(old).x() < cutoff) ++old;
  old = std::max(old, series->count() - max);
  if (old > 0) series->removePoints(0, old);
}

}  // namespace

std::optional<double> memoryUsedFraction(const v1::HostStatus& status) {
  if (!status.has_load() || !status.has_inventory()) return std::nullopt;
  const uint64_t total = status.inventory().memory_bytes();
  if (total == 0) return std::nullopt;
  const uint64_t available = std::min(status.load().memory_available_bytes(), total);
  return static_cast<double>(total - available) / static_cast<double>(total);
}

HostLoadChart::HostLoadChart(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("hostLoadChart"));
  cpu_chart_ = makeChart(tr("CPU busy"), &cpu_time_axis_, &cpu_value_axis_);
  memory_chart_ = makeChart(tr("Memory used"), &memory_time_axis_, &memory_value_axis_);
  // The views own their charts.
  cpu_view_ = new QChartView(cpu_chart_, this);
  cpu_view_->setObjectName(QStringLiteral("cpuChart"));
  cpu_view_->setRenderHint(QPainter::Antialiasing);
  memory_view_ = new QChartView(memory_chart_, this);
  memory_view_->setObjectName(QStringLiteral("memoryChart"));
  memory_view_->setRenderHint(QPainter::Antialiasing);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->addWidget(cpu_view_);
  layout->addWidget(memory_view_);
  updateAxes();
}

bool HostLoadChart::addSample(const QString& host, qint64 unix_ms, double cpu_busy_0_to_1,
                              double memory_used_0_to_1) {
  if (host.isEmpty()) return false;
  const qint64 newest = std::max(newest_ms_, unix_ms);
  if (unix_ms < newest - window_ms_) return false;
  auto it = series_.find(host);
  if (it != series_.end() && it->cpu->count() > 0 &&
      it->cpu->at(it->cpu->count() - 1).x() >= static_cast<double>(unix_ms)) {
    return false;
  }
  if (it == series_.end()) {
    HostSeries added;
    added.cpu = new QLineSeries(cpu_chart_);
    added.cpu->setName(host);
    cpu_chart_->addSeries(added.cpu);
    added.cpu->attachAxis(cpu_time_axis_);
    added.cpu->attachAxis(cpu_value_axis_);
    added.memory = new QLineSeries(memory_chart_);
    added.memory->setName(host);
    memory_chart_->addSeries(added.memory);
    added.memory->attachAxis(memory_time_axis_);
    added.memory->attachAxis(memory_value_axis_);
    // The same colour for a host in both charts, whatever the charts' themes picked.
    added.memory->setColor(added.cpu->color());
    it = series_.insert(host, added);
    order_.append(host);
  }
  const auto percent = [](double fraction) {
    // NaN (a broken report) counts as 0 rather than breaking the axis range.
    if (!(fraction >= 0.0)) return 0.0;
    return std::min(fraction, 1.0) * 100.0;
  };
  const auto x = static_cast<double>(unix_ms);
  it->cpu->append(x, percent(cpu_busy_0_to_1));
  it->memory->append(x, percent(memory_used_0_to_1));
  newest_ms_ = newest;
  trim();
  updateAxes();
  return true;
}

bool HostLoadChart::addSample(const v1::HostStatus& status) {
  const std::optional<double> memory = memoryUsedFraction(status);
  if (!memory.has_value()) return false;
  return addSample(QString::fromStdString(status.name()), status.updated_unix_ms(),
                   status.load().cpu_busy(), *memory);
}

void HostLoadChart::removeHost(const QString& host) {
  auto it = series_.find(host);
  if (it == series_.end()) return;
  cpu_chart_->removeSeries(it->cpu);
  memory_chart_->removeSeries(it->memory);
  delete it->cpu;
  delete it->memory;
  series_.erase(it);
  order_.removeAll(host);
}

void HostLoadChart::clear() {
  const QStringList hosts = order_;
  for (const QString& host : hosts) removeHost(host);
  newest_ms_ = 0;
  updateAxes();
}

void HostLoadChart::setWindowMs(qint64 window_ms) {
  window_ms_ = std::max<qint64>(window_ms, 1000);
  trim();
  updateAxes();
}

QStringList HostLoadChart::hosts() const {
  return order_;
}

int HostLoadChart::seriesCount() const {
  return static_cast<int>(cpu_chart_->series().size() + memory_chart_->series().size());
}

QList<QPointF> HostLoadChart::cpuPoints(const QString& host) const {
  auto it = series_.find(host);
  return it == series_.end() ? QList<QPointF>() : it->cpu->points();
}

QList<QPointF> HostLoadChart::memoryPoints(const QString& host) const {
  auto it = series_.find(host);
  return it == series_.end() ? QList<QPointF>() : it->memory->points();
}

void HostLoadChart::trim() {
  const auto cutoff = static_cast<double>(newest_ms_ - window_ms_);
  for (const HostSeries& host : std::as_const(series_)) {
    dropOld(host.cpu, cutoff, kMaxPointsPerHost);
    dropOld(host.memory, cutoff, kMaxPointsPerHost);
  }
}

void HostLoadChart::updateAxes() {
  // Before the first sample the axis shows the window up to now.
  const qint64 end = newest_ms_ > 0 ? newest_ms_ : QDateTime::currentMSecsSinceEpoch();
  const QDateTime from = QDateTime::fromMSecsSinceEpoch(end - window_ms_);
  const QDateTime to = QDateTime::fromMSecsSinceEpoch(end);
  cpu_time_axis_->setRange(from, to);
  memory_time_axis_->setRange(from, to);
}

}  // namespace flotilla::console
