// A progress bar in a table cell (see migration_progress_delegate.h).
#include "gui/widgets/migration_progress_delegate.h"

#include <QApplication>
#include <QPainter>
#include <QStyle>
#include <QStyleOptionProgressBar>
#include <algorithm>
#include <cmath>
#include <optional>

#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

constexpr int kSteps = 1000;  // the bar's resolution

// The fraction in kProgressRole, clamped to 0..1; nullopt without one.
std::optional<double> fractionOf(const QModelIndex& index) {
  const QVariant value = index.data(MigrationProgressDelegate::kProgressRole);
  if (!value.isValid()) return std::nullopt;
  bool ok = false;
  const double fraction = value.toDouble(&ok);
  if (!ok || std::isnan(fraction)) return std::nullopt;
  return std::clamp(fraction, 0.0, 1.0);
}

}  // namespace

double migrationProgress(const v1::MigrationRecord& record) {
  switch (record.phase()) {
    case v1::MIGRATION_PHASE_SUCCEEDED:
      return 1.0;
    case v1::MIGRATION_PHASE_TRANSFERRING:
    case v1::MIGRATION_PHASE_SWITCHING:
    case v1::MIGRATION_PHASE_FAILED:
    case v1::MIGRATION_PHASE_CANCELLED: {
      const double sent = static_cast<double>(record.bytes_sent());
      const double total = sent + static_cast<double>(record.remaining_bytes());
      return total > 0 ? sent / total : 0.0;
    }
    default:  // pending, preparing
      return 0.0;
  }
}

MigrationProgressDelegate::MigrationProgressDelegate(QObject* parent)
    : QStyledItemDelegate(parent) {
  setObjectName(QStringLiteral("migrationProgressDelegate"));
}

QString MigrationProgressDelegate::progressText(const QModelIndex& index) {
  const std::optional<double> fraction = fractionOf(index);
  if (!fraction.has_value()) return QString();
  const QString display = index.data(Qt::DisplayRole).toString();
  return display.isEmpty() ? formatPercent(*fraction) : display;
}

void MigrationProgressDelegate::paint(QPainter* painter, const QStyleOptionViewItem& option,
                                      const QModelIndex& index) const {
  const std::optional<double> fraction = fractionOf(index);
  if (!fraction.has_value()) {
    QStyledItemDelegate::paint(painter, option, index);
    return;
  }
  // The cell's background and selection first, without its text.
  QStyleOptionViewItem cell = option;
  initStyleOption(&cell, index);
  cell.text.clear();
  const QWidget* widget = option.widget;
  QStyle* style = widget != nullptr ? widget->style() : QApplication::style();
  style->drawControl(QStyle::CE_ItemViewItem, &cell, painter, widget);

  QStyleOptionProgressBar bar;
  if (widget != nullptr) bar.initFrom(widget);
  bar.state = option.state | QStyle::State_Horizontal;
  bar.direction = option.direction;
  bar.rect = option.rect.adjusted(2, 2, -2, -2);
  bar.fontMetrics = option.fontMetrics;
  bar.palette = option.palette;
  bar.minimum = 0;
  bar.maximum = kSteps;
  bar.progress = static_cast<int>(std::lround(*fraction * kSteps));
  bar.text = progressText(index);
  bar.textVisible = true;
  bar.textAlignment = Qt::AlignCenter;
  style->drawControl(QStyle::CE_ProgressBar, &bar, painter, widget);
}

}  // namespace flotilla::console
