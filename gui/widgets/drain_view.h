// DrainView: the progress of one host's drain (a DrainRecord from the Watch stream): a
// progress bar, the counts, the phase, and the VMs with their state, target and failures.
#pragma once

#include <QString>
#include <QWidget>

#include "flotilla/v1/cluster_state.pb.h"

class QLabel;
class QProgressBar;
class QPushButton;
class QTableWidget;

namespace flotilla::console {

// Child object names: "drainHost", "drainPhase", "drainCounts", "drainMessage" (QLabel),
// "drainProgress" (QProgressBar: done of total), "drainVms" (QTableWidget: VM, State, Target,
// Migration, Attempts, Reason), "cancelDrain" (QPushButton; enabled while the drain runs and
// no cancel was requested).
class DrainView : public QWidget {
  Q_OBJECT

 public:
  explicit DrainView(QWidget* parent = nullptr);

  void update(const v1::DrainRecord& record);
  using QWidget::update;  // repaint

  QString host() const { return host_; }
  int total() const { return total_; }
  int done() const { return done_; }
  int failed() const { return failed_; }
  int remaining() const { return remaining_; }  // waiting or migrating

 Q_SIGNALS:
  void cancelRequested(const QString& host);

 private:
  QString host_;
  int total_ = 0;
  int done_ = 0;
  int failed_ = 0;
  int remaining_ = 0;
  QLabel* host_label_;
  QLabel* phase_;
  QLabel* counts_;
  QLabel* message_;
  QProgressBar* progress_;
  QTableWidget* vms_;
  QPushButton* cancel_;
};

}  // namespace flotilla::console
