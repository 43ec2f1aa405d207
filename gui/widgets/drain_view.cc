// One host's drain (see drain_view.h).
#include "gui/widgets/drain_view.h"

#include <QBrush>
#include <QColor>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

enum Column { kVm, kState, kTarget, kMigration, kAttempts, kReason, kColumns };

QTableWidgetItem* makeItem(const QString& text) {
  auto* item = new QTableWidgetItem(text);
  item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
  return item;
}

QColor stateColor(v1::DrainVm::State state) {
  switch (state) {
    case v1::DrainVm::STATE_MIGRATING:
      return QColor(0x15, 0x65, 0xc0);
    case v1::DrainVm::STATE_DONE:
      return QColor(0x2e, 0x7d, 0x32);
    case v1::DrainVm::STATE_FAILED:
      return QColor(0xc6, 0x28, 0x28);
    default:
      return QColor();
  }
}

QString orDash(const std::string& text) {
  return text.empty() ? QStringLiteral("-") : fromProto(text);
}

}  // namespace

DrainView::DrainView(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("drainView"));
  host_label_ = new QLabel(this);
  host_label_->setObjectName(QStringLiteral("drainHost"));
  QFont bold = host_label_->font();
  bold.setBold(true);
  bold.setPointSizeF(bold.pointSizeF() * 1.2);
  host_label_->setFont(bold);
  phase_ = new QLabel(this);
  phase_->setObjectName(QStringLiteral("drainPhase"));
  counts_ = new QLabel(this);
  counts_->setObjectName(QStringLiteral("drainCounts"));
  message_ = new QLabel(this);
  message_->setObjectName(QStringLiteral("drainMessage"));
  message_->setWordWrap(true);
  message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  progress_ = new QProgressBar(this);
  progress_->setObjectName(QStringLiteral("drainProgress"));
  vms_ = new QTableWidget(0, kColumns, this);
  vms_->setObjectName(QStringLiteral("drainVms"));
  vms_->setHorizontalHeaderLabels(
      {tr("VM"), tr("State"), tr("Target"), tr("Migration"), tr("Attempts"), tr("Reason")});
  vms_->verticalHeader()->hide();
  vms_->setSelectionBehavior(QAbstractItemView::SelectRows);
  vms_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  vms_->horizontalHeader()->setStretchLastSection(true);
  cancel_ = new QPushButton(tr("Cancel drain"), this);
  cancel_->setObjectName(QStringLiteral("cancelDrain"));
  connect(cancel_, &QPushButton::clicked, this, [this] {
    if (!host_.isEmpty()) Q_EMIT cancelRequested(host_);
  });

  auto* top = new QHBoxLayout;
  top->addWidget(host_label_);
  top->addStretch(1);
  top->addWidget(cancel_);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(top);
  layout->addWidget(phase_);
  layout->addWidget(progress_);
  layout->addWidget(counts_);
  layout->addWidget(message_);
  layout->addWidget(vms_, 1);
  update(v1::DrainRecord());
}

void DrainView::update(const v1::DrainRecord& record) {
  host_ = fromProto(record.meta().name());
  total_ = record.vms_size();
  done_ = failed_ = remaining_ = 0;
  vms_->setRowCount(record.vms_size());
  for (int row = 0; row < record.vms_size(); ++row) {
    const v1::DrainVm& vm = record.vms(row);
    switch (vm.state()) {
      case v1::DrainVm::STATE_DONE:
        ++done_;
        break;
      case v1::DrainVm::STATE_FAILED:
        ++failed_;
        break;
      default:  // waiting, migrating (and states this build does not know)
        ++remaining_;
        break;
    }
    vms_->setItem(row, kVm, makeItem(fromProto(vm.vm())));
    auto* state = makeItem(drainVmStateName(vm.state()));
    if (const QColor color = stateColor(vm.state()); color.isValid()) {
      state->setForeground(QBrush(color));
    }
    vms_->setItem(row, kState, state);
    vms_->setItem(row, kTarget, makeItem(orDash(vm.target())));
    vms_->setItem(row, kMigration, makeItem(orDash(vm.migration())));
    auto* attempts = makeItem(QString::number(vm.attempts()));
    attempts->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    vms_->setItem(row, kAttempts, attempts);
    auto* reason = makeItem(fromProto(vm.message()));
    reason->setToolTip(fromProto(vm.message()));
    if (vm.state() == v1::DrainVm::STATE_FAILED) {
      reason->setForeground(QBrush(stateColor(vm.state())));
    }
    vms_->setItem(row, kReason, reason);
  }
  vms_->resizeColumnsToContents();

  host_label_->setText(host_.isEmpty() ? tr("No drain selected") : tr("Drain of %1").arg(host_));
  const bool running = record.phase() == v1::DRAIN_PHASE_RUNNING;
  QString phase = tr("Phase: %1").arg(drainPhaseName(record.phase()));
  if (running && record.cancel_requested()) phase += tr(" (cancel requested)");
  if (record.allow_cold()) phase += tr(" · cold moves allowed");
  if (record.created_unix_ms() != 0) {
    phase += tr(" · started %1").arg(formatTimeMillis(record.created_unix_ms()));
  }
  if (record.finished_unix_ms() != 0) {
    phase += tr(" · finished %1").arg(formatTimeMillis(record.finished_unix_ms()));
  }
  phase_->setText(phase);
  phase_->setStyleSheet(record.phase() == v1::DRAIN_PHASE_FAILED ? QStringLiteral("color: #c62828;")
                                                                 : QString());

  if (total_ == 0) {
    progress_->setRange(0, 1);
    progress_->setValue(record.phase() == v1::DRAIN_PHASE_SUCCEEDED ? 1 : 0);
    progress_->setFormat(tr("no VMs to move"));
  } else {
    progress_->setRange(0, total_);
    progress_->setValue(done_);
    progress_->setFormat(tr("%1 of %2 VMs moved").arg(done_).arg(total_));
  }
  counts_->setText(
      tr("%1 done · %2 remaining · %3 failed").arg(done_).arg(remaining_).arg(failed_));
  message_->setText(fromProto(record.message()));
  message_->setVisible(!record.message().empty());
  cancel_->setEnabled(!host_.isEmpty() && running && !record.cancel_requested());
}

}  // namespace flotilla::console
