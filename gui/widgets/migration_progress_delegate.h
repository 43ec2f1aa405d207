// MigrationProgressDelegate: paints a progress bar in a table cell from a fraction the model
// gives in kProgressRole (the migrations table's progress column).
#pragma once

#include <QStyledItemDelegate>

#include "flotilla/v1/cluster_state.pb.h"

namespace flotilla::console {

// An estimate of how far a migration is, 0..1: 0 until it transfers; bytes_sent / (bytes_sent +
// remaining_bytes) while it transfers or switches (pre-copy resends dirty pages, so this
// only approaches 1); 1 once it succeeded; where it stopped when it failed or was cancelled.
double migrationProgress(const v1::MigrationRecord& record);

// The cell's index.data(kProgressRole) is a double 0..1 (clamped): a progress bar with the
// cell's Qt::DisplayRole text on it, or "42%" when that is empty. Without kProgressRole data
// the cell is painted as usual.
class MigrationProgressDelegate : public QStyledItemDelegate {
  Q_OBJECT

 public:
  static constexpr int kProgressRole = Qt::UserRole + 40;

  explicit MigrationProgressDelegate(QObject* parent = nullptr);

  void paint(QPainter* painter, const QStyleOptionViewItem& option,
             const QModelIndex& index) const override;

  // The text painted on the bar of `index` (empty: no kProgressRole data).
  static QString progressText(const QModelIndex& index);
};

}  // namespace flotilla::console
