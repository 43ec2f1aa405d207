// A rebalance plan as a table of moves (see rebalance_plan_dialog.h).
#include "gui/widgets/rebalance_plan_dialog.h"

#include <QDialogButtonBox>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

enum Column { kVm, kFrom, kTo, kGain, kCost, kMigration, kColumns };

QTableWidgetItem* makeItem(const QString& text, Qt::Alignment alignment = Qt::AlignLeft) {
  auto* item = new QTableWidgetItem(text);
  item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
  item->setTextAlignment(alignment | Qt::AlignVCenter);
  return item;
}

}  // namespace

RebalancePlanDialog::RebalancePlanDialog(QWidget* parent) : QDialog(parent) {
  setObjectName(QStringLiteral("rebalancePlanDialog"));
  setWindowTitle(tr("Rebalance plan"));
  score_ = new QLabel(this);
  score_->setObjectName(QStringLiteral("scoreLabel"));
  score_->setToolTip(
      tr("Imbalance: the standard deviation of the hosts' utilisation (0: all hosts equal)"));
  message_ = new QLabel(this);
  message_->setObjectName(QStringLiteral("planMessage"));
  message_->setWordWrap(true);
  message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  moves_ = new QTableWidget(0, kColumns, this);
  moves_->setObjectName(QStringLiteral("movesTable"));
  moves_->setHorizontalHeaderLabels(
      {tr("VM"), tr("From"), tr("To"), tr("Gain"), tr("Cost"), tr("Migration")});
  moves_->horizontalHeaderItem(kGain)->setToolTip(tr("Imbalance removed, net of the move's cost"));
  moves_->verticalHeader()->hide();
  moves_->setSelectionBehavior(QAbstractItemView::SelectRows);
  moves_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  // The columns share the width (a stretched last column would push Cost far to the right).
  moves_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);

  auto* buttons = new QDialogButtonBox(this);
  apply_ = buttons->addButton(tr("Apply"), QDialogButtonBox::AcceptRole);
  apply_->setObjectName(QStringLiteral("applyButton"));
  close_ = buttons->addButton(QDialogButtonBox::Close);
  close_->setObjectName(QStringLiteral("closeButton"));
  connect(apply_, &QPushButton::clicked, this, [this] {
    if (plan_.moves().empty()) return;
    Q_EMIT applyRequested();
    accept();
  });
  connect(close_, &QPushButton::clicked, this, &QDialog::reject);

  auto* layout = new QVBoxLayout(this);
  layout->addWidget(score_);
  layout->addWidget(moves_, 1);
  layout->addWidget(message_);
  layout->addWidget(buttons);
  resize(640, 360);
  setPlan(v1::RebalancePlan());
}

void RebalancePlanDialog::setPlan(const v1::RebalancePlan& plan) {
  plan_ = plan;
  bool applied = false;
  moves_->setRowCount(plan.moves_size());
  for (int row = 0; row < plan.moves_size(); ++row) {
    const v1::RebalanceMove& move = plan.moves(row);
    applied = applied || !move.migration().empty();
    moves_->setItem(row, kVm, makeItem(fromProto(move.vm())));
    moves_->setItem(row, kFrom, makeItem(fromProto(move.source())));
    moves_->setItem(row, kTo, makeItem(fromProto(move.target())));
    // The same precision as clusterctl's plan table.
    moves_->setItem(row, kGain, makeItem(QString::number(move.gain(), 'f', 3), Qt::AlignRight));
    moves_->setItem(row, kCost, makeItem(QString::number(move.cost(), 'f', 3), Qt::AlignRight));
    moves_->setItem(
        row, kMigration,
        makeItem(move.migration().empty() ? QStringLiteral("-") : fromProto(move.migration())));
  }
  moves_->setColumnHidden(kMigration, !applied);
  moves_->setVisible(plan.moves_size() > 0);

  const bool has_score = plan.score_before() != 0.0 || plan.score_after() != 0.0;
  score_->setVisible(has_score);
  const QString moves =
      plan.moves_size() == 1 ? tr("1 move") : tr("%1 moves").arg(plan.moves_size());
  score_->setText(tr("Imbalance: %1 now → %2 after %3")
                      .arg(QString::number(plan.score_before(), 'f', 3),
                           QString::number(plan.score_after(), 'f', 3), moves));
  QString message;
  if (plan.moves().empty()) {
    message = plan.message().empty() ? tr("No moves: the cluster is balanced enough.")
                                     : tr("No moves: %1").arg(fromProto(plan.message()));
  } else if (applied) {
    message = tr("Migrations started: follow them in the migrations list.");
  } else if (!plan.message().empty()) {
    message = fromProto(plan.message());
  }
  message_->setText(message);
  message_->setVisible(!message.isEmpty());
  apply_->setEnabled(!plan.moves().empty() && !applied);
  apply_->setToolTip(apply_->isEnabled() ? tr("Start these moves as live migrations")
                                         : tr("Nothing to apply"));
}

}  // namespace flotilla::console
