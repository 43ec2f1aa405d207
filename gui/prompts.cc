// The console's questions as real dialogs (see prompts.h).
#include "gui/prompts.h"

#include <QInputDialog>
#include <QMessageBox>

#include "gui/create_vm_dialog.h"
#include "gui/widgets/connection_dialog.h"
#include "gui/widgets/rebalance_plan_dialog.h"

namespace flotilla::console {

bool DialogPrompts::confirm(QWidget* parent, const QString& title, const QString& question) {
  return QMessageBox::question(parent, title, question, QMessageBox::Yes | QMessageBox::No,
                               QMessageBox::No) == QMessageBox::Yes;
}

std::optional<QString> DialogPrompts::migrationTarget(QWidget* parent, const QString& vm,
                                                      const QString& source,
                                                      const QStringList& hosts) {
  const QString scheduler = QObject::tr("Scheduler's choice");
  QStringList choices{scheduler};
  choices << hosts;
  bool ok = false;
  const QString choice =
      QInputDialog::getItem(parent, QObject::tr("Migrate VM"),
                            QObject::tr("Live-migrate %1 from %2 to:")
                                .arg(vm, source.isEmpty() ? QObject::tr("(no host)") : source),
                            choices, 0, false, &ok);
  if (!ok) return std::nullopt;
  return choice == scheduler ? QString() : choice;
}

std::optional<v1::CreateVmClusterRequest> DialogPrompts::newVm(QWidget* parent) {
  CreateVmDialog dialog(parent);
  if (dialog.exec() != QDialog::Accepted) return std::nullopt;
  auto request = dialog.request();
  if (!request.ok()) return std::nullopt;  // accept() checked it already
  return *request;
}

void DialogPrompts::rebalancePlan(QWidget* parent, const v1::RebalancePlan& plan,
                                  const std::function<void()>& apply) {
  RebalancePlanDialog dialog(parent);
  dialog.setPlan(plan);
  bool applied = false;
  QObject::connect(&dialog, &RebalancePlanDialog::applyRequested, &dialog,
                   [&applied] { applied = true; });
  dialog.exec();
  if (applied) apply();
}

std::optional<ConnectionSettings> DialogPrompts::connection(QWidget* parent,
                                                            const ConnectionSettings& current) {
  return ConnectionDialog::edit(parent, current);
}

void DialogPrompts::error(QWidget* parent, const QString& title, const QString& message) {
  QMessageBox::warning(parent, title, message);
}

}  // namespace flotilla::console
