// RebalancePlanDialog: shows a RebalancePlan (PlanRebalance's answer) as a list of moves before
// the user applies it.
#pragma once

#include <QDialog>

#include "flotilla/v1/cluster.pb.h"

class QLabel;
class QPushButton;
class QTableWidget;

namespace flotilla::console {

// Child object names: "movesTable" (QTableWidget: VM, From, To, Gain, Cost, and Migration when
// the plan was applied), "scoreLabel" (imbalance before → after), "planMessage" (the plan's
// message; "No moves" when it has none), "applyButton", "closeButton".
//
// Apply emits applyRequested() and closes the dialog with Accepted: the caller then calls
// ApplyRebalance (which plans again on the server). Apply is disabled when the plan has no
// moves or was already applied (its moves name their migrations). Close rejects.
class RebalancePlanDialog : public QDialog {
  Q_OBJECT

 public:
  explicit RebalancePlanDialog(QWidget* parent = nullptr);

  void setPlan(const v1::RebalancePlan& plan);
  const v1::RebalancePlan& plan() const { return plan_; }

 Q_SIGNALS:
  void applyRequested();

 private:
  v1::RebalancePlan plan_;
  QLabel* score_;
  QLabel* message_;
  QTableWidget* moves_;
  QPushButton* apply_;
  QPushButton* close_;
};

}  // namespace flotilla::console
