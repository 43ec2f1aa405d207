// The questions the console's actions ask the user (confirmations, pickers, dialogs) and the
// errors they show, behind one interface: DialogPrompts asks with real dialogs; the tests
// answer with a script and record the errors, so that every action runs without a modal
// dialog in the way.
#pragma once

#include <QString>
#include <QStringList>
#include <functional>
#include <optional>

#include "flotilla/v1/cluster.pb.h"
#include "gui/widgets/connection_settings.h"

class QWidget;

namespace flotilla::console {

class ConsolePrompts {
 public:
  virtual ~ConsolePrompts() = default;

  virtual bool confirm(QWidget* parent, const QString& title, const QString& question) = 0;
  // The target host for migrating `vm` from `source`; "" for the scheduler's choice;
  // nullopt when cancelled.
  virtual std::optional<QString> migrationTarget(QWidget* parent, const QString& vm,
                                                 const QString& source,
                                                 const QStringList& hosts) = 0;
  // The VM to create; nullopt when cancelled.
  virtual std::optional<v1::CreateVmClusterRequest> newVm(QWidget* parent) = 0;
  // Shows the plan; calls `apply` when the user applies it.
  virtual void rebalancePlan(QWidget* parent, const v1::RebalancePlan& plan,
                             const std::function<void()>& apply) = 0;
  virtual std::optional<ConnectionSettings> connection(QWidget* parent,
                                                       const ConnectionSettings& current) = 0;
  // An action failed: `message` is the server's message.
  virtual void error(QWidget* parent, const QString& title, const QString& message) = 0;
};

// The real dialogs: QMessageBox, QInputDialog, CreateVmDialog, RebalancePlanDialog,
// ConnectionDialog.
class DialogPrompts : public ConsolePrompts {
 public:
  bool confirm(QWidget* parent, const QString& title, const QString& question) override;
  std::optional<QString> migrationTarget(QWidget* parent, const QString& vm, const QString& source,
                                         const QStringList& hosts) override;
  std::optional<v1::CreateVmClusterRequest> newVm(QWidget* parent) override;
  void rebalancePlan(QWidget* parent, const v1::RebalancePlan& plan,
                     const std::function<void()>& apply) override;
  std::optional<ConnectionSettings> connection(QWidget* parent,
                                               const ConnectionSettings& current) override;
  void error(QWidget* parent, const QString& title, const QString& message) override;
};

}  // namespace flotilla::console
