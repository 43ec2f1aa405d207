// The main window's actions: menus, toolbar, context menus, and the calls they make. Writes go
// through MainWindow::write(): a failure is shown with the server's message (a message box
// through ConsolePrompts::error), a success in the status bar; the models change when the
// Watch stream reports the change, not when the call returns.
#include <QAction>
#include <QApplication>
#include <QDockWidget>
#include <QMenu>
#include <QMenuBar>
#include <QSettings>
#include <QStatusBar>
#include <QTableView>
#include <QToolBar>
#include <QTreeView>

#include "gui/console_format.h"
#include "gui/main_window.h"

namespace flotilla::console {

namespace {

v1::NameRequest nameRequest(const QString& name) {
  v1::NameRequest request;
  request.set_name(name.toStdString());
  return request;
}

}  // namespace

void MainWindow::buildActions() {
  auto add = [this](const QString& name, const QString& text, const QString& tip,
                    const std::function<void()>& slot) {
    auto* action = new QAction(text, this);
    action->setObjectName(name);
    action->setStatusTip(tip);
    action->setToolTip(tip);
    connect(action, &QAction::triggered, this, slot);
    return action;
  };
  add(QStringLiteral("connect"), tr("&Connect…"),
      tr("Choose the controller endpoints and TLS files"), [this] { editConnection(); })
      ->setShortcut(QKeySequence::Open);
  add(QStringLiteral("quit"), tr("&Quit"), tr("Quit the console"), [this] {
    close();
  })->setShortcut(QKeySequence::Quit);
  add(QStringLiteral("createVm"), tr("&Create VM…"), tr("Create a VM"), [this] {
    createVm();
  })->setShortcut(QKeySequence::New);
  add(QStringLiteral("startVm"), tr("&Start"), tr("Start the selected VM"),
      [this] { vmAction(QStringLiteral("StartVm")); });
  add(QStringLiteral("stopVm"), tr("S&top"), tr("Stop the selected VM"),
      [this] { vmAction(QStringLiteral("StopVm")); });
  add(QStringLiteral("restartVm"), tr("&Restart"), tr("Restart the selected VM"),
      [this] { vmAction(QStringLiteral("RestartVm")); });
  add(QStringLiteral("deleteVm"), tr("&Delete…"), tr("Delete the selected VM"), [this] {
    deleteVm();
  })->setShortcut(QKeySequence::Delete);
  add(QStringLiteral("migrateVm"), tr("&Migrate…"),
      tr("Live-migrate the selected VM to another host"), [this] { migrateSelected(); });
  add(QStringLiteral("cancelMigration"), tr("&Cancel migration"),
      tr("Cancel the selected migration (the VM stays on its source)"),
      [this] { cancelMigration(); });
  add(QStringLiteral("cordonHost"), tr("C&ordon"), tr("No new VMs on the selected host"),
      [this] { cordonHost(true); });
  add(QStringLiteral("uncordonHost"), tr("&Uncordon"), tr("Allow new VMs on the selected host"),
      [this] { cordonHost(false); });
  add(QStringLiteral("drainHost"), tr("&Drain…"),
      tr("Move every VM off the selected host (it is cordoned first)"), [this] { drainHost(); });
  add(QStringLiteral("undrainHost"), tr("U&ndrain"),
      tr("Cancel the selected host's drain and uncordon it"),
      [this] { undrainHost(selected_host_); });
  add(QStringLiteral("rebalance"), tr("&Rebalance…"),
      tr("Show the moves the rebalancer would make, then apply them"), [this] { rebalance(); });
}

QAction* MainWindow::action(const QString& name) const {
  return findChild<QAction*>(name, Qt::FindDirectChildrenOnly);
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(action(QStringLiteral("connect")));
  file->addSeparator();
  file->addAction(action(QStringLiteral("quit")));
  QMenu* vm = menuBar()->addMenu(tr("&VM"));
  for (const char* name :
       {"createVm", "startVm", "stopVm", "restartVm", "migrateVm", "cancelMigration", "deleteVm"}) {
    vm->addAction(action(QString::fromLatin1(name)));
  }
  QMenu* host = menuBar()->addMenu(tr("&Host"));
  for (const char* name : {"cordonHost", "uncordonHost", "drainHost", "undrainHost"}) {
    host->addAction(action(QString::fromLatin1(name)));
  }
  QMenu* cluster = menuBar()->addMenu(tr("&Cluster"));
  cluster->addAction(action(QStringLiteral("rebalance")));
  QMenu* view = menuBar()->addMenu(tr("Vie&w"));
  view->addAction(drain_dock_->toggleViewAction());

  QToolBar* toolbar = addToolBar(tr("Actions"));
  toolbar->setObjectName(QStringLiteral("actionsToolbar"));
  toolbar->setToolButtonStyle(Qt::ToolButtonTextOnly);
  for (const char* name : {"connect", "createVm", "startVm", "stopVm", "migrateVm", "deleteVm"}) {
    toolbar->addAction(action(QString::fromLatin1(name)));
  }
  toolbar->addSeparator();
  for (const char* name : {"cordonHost", "drainHost", "undrainHost", "rebalance"}) {
    toolbar->addAction(action(QString::fromLatin1(name)));
  }
}

void MainWindow::updateActions() {
  const bool connected = client_ != nullptr;
  const v1::Vm* vm = store_.vm(selected_vm_);
  const v1::Host* host = store_.host(selected_host_);
  action(QStringLiteral("createVm"))->setEnabled(connected);
  action(QStringLiteral("rebalance"))->setEnabled(connected);
  for (const char* name : {"startVm", "stopVm", "restartVm", "deleteVm"}) {
    action(QString::fromLatin1(name))->setEnabled(connected && vm != nullptr);
  }
  action(QStringLiteral("migrateVm"))
      ->setEnabled(connected && vm != nullptr && !vm->status().host().empty());
  const v1::MigrationRecord* migration = store_.migration(selected_migration_);
  action(QStringLiteral("cancelMigration"))
      ->setEnabled(connected && migration != nullptr && migrationActive(*migration));
  const bool cordoned = host != nullptr && host->record().cordoned();
  action(QStringLiteral("cordonHost"))->setEnabled(connected && host != nullptr && !cordoned);
  action(QStringLiteral("uncordonHost"))->setEnabled(connected && host != nullptr && cordoned);
  action(QStringLiteral("drainHost"))->setEnabled(connected && host != nullptr);
  action(QStringLiteral("undrainHost"))->setEnabled(connected && host != nullptr);
}

QMenu* MainWindow::migrateMenu(QWidget* parent, const QString& vm) {
  auto* menu = new QMenu(tr("Migrate &to"), parent);
  const v1::Vm* record = store_.vm(vm);
  const QString source = record != nullptr ? fromProto(record->status().host()) : QString();
  auto add = [this, menu, vm](const QString& text, const QString& target) {
    QAction* to = menu->addAction(text);
    connect(to, &QAction::triggered, this, [this, vm, target] { migrate(vm, target); });
    return to;
  };
  add(tr("Scheduler's choice"), QString());
  menu->addSeparator();
  for (const auto& [name, host] : store_.hosts()) {
    const QString target = fromProto(name);
    add(target, target)->setEnabled(target != source);
  }
  menu->setEnabled(!source.isEmpty());
  return menu;
}

void MainWindow::showContextMenu(QWidget* view, const QPoint& position) {
  // Select what was clicked, then offer what applies to it.
  QString vm, host, migration;
  if (view == tree_view_) {
    const QModelIndex index = tree_view_->indexAt(position);
    if (index.isValid()) {
      tree_view_->setCurrentIndex(index);
      if (tree_model_->kindOf(index) == ClusterTreeModel::NodeKind::kVm)
        vm = tree_model_->nameOf(index);
      if (tree_model_->kindOf(index) == ClusterTreeModel::NodeKind::kHost)
        host = tree_model_->nameOf(index);
    }
  } else if (auto* table = qobject_cast<QTableView*>(view)) {
    const QModelIndex index = table->indexAt(position);
    if (index.isValid()) {
      table->setCurrentIndex(index);
      const QString name = table->model()->index(index.row(), 0).data(kNameRole).toString();
      if (table == vm_table_) vm = name;
      if (table == host_table_) host = name;
      if (table == migration_table_) migration = name;
    }
  }
  QMenu menu(this);
  if (!migration.isEmpty()) {
    selectMigration(migration);
    menu.addAction(action(QStringLiteral("cancelMigration")));
  } else if (!vm.isEmpty()) {
    selectVm(vm);
    for (const char* name : {"startVm", "stopVm", "restartVm"}) {
      menu.addAction(action(QString::fromLatin1(name)));
    }
    menu.addMenu(migrateMenu(&menu, vm));
    menu.addSeparator();
    menu.addAction(action(QStringLiteral("deleteVm")));
  } else if (!host.isEmpty()) {
    selectHost(host);
    for (const char* name : {"cordonHost", "uncordonHost", "drainHost", "undrainHost"}) {
      menu.addAction(action(QString::fromLatin1(name)));
    }
  } else {
    menu.addAction(action(QStringLiteral("createVm")));
    menu.addAction(action(QStringLiteral("rebalance")));
  }
  menu.exec(view->mapToGlobal(position));
}

void MainWindow::actionFailed(const QString& what, const QString& message) {
  statusBar()->showMessage(tr("%1 failed: %2").arg(what, message), 10000);
  prompts_.error(this, tr("%1 failed").arg(what), message);
}

void MainWindow::actionDone(const QString& what) {
  statusBar()->showMessage(tr("%1: done").arg(what), 5000);
}

// --- VMs.

void MainWindow::createVm() {
  std::optional<v1::CreateVmClusterRequest> request = prompts_.newVm(this);
  if (!request) return;
  write<v1::CreateVmClusterRequest, v1::Vm>(tr("CreateVm %1").arg(fromProto(request->name())),
                                            &ConsoleClient::Stub::CreateVm, *request);
}

void MainWindow::vmAction(const QString& method_name) {
  if (selected_vm_.isEmpty()) return;
  const QString what = QStringLiteral("%1 %2").arg(method_name, selected_vm_);
  const v1::NameRequest request = nameRequest(selected_vm_);
  if (method_name == QStringLiteral("StartVm")) {
    write<v1::NameRequest, v1::Vm>(what, &ConsoleClient::Stub::StartVm, request);
  } else if (method_name == QStringLiteral("StopVm")) {
    write<v1::NameRequest, v1::Vm>(what, &ConsoleClient::Stub::StopVm, request);
  } else if (method_name == QStringLiteral("RestartVm")) {
    write<v1::NameRequest, v1::Vm>(what, &ConsoleClient::Stub::RestartVm, request);
  }
}

void MainWindow::deleteVm() {
  if (selected_vm_.isEmpty()) return;
  if (!prompts_.confirm(this, tr("Delete VM"),
                        tr("Delete VM %1? It is stopped and removed from its host; its volumes "
                           "are kept.")
                            .arg(selected_vm_))) {
    return;
  }
  write<v1::NameRequest, v1::DeleteResponse>(tr("DeleteVm %1").arg(selected_vm_),
                                             &ConsoleClient::Stub::DeleteVm,
                                             nameRequest(selected_vm_));
}

void MainWindow::migrateSelected() {
  const v1::Vm* vm = store_.vm(selected_vm_);
  if (vm == nullptr) return;
  QStringList hosts;
  for (const auto& [name, host] : store_.hosts()) {
    if (name != vm->status().host()) hosts << fromProto(name);
  }
  std::optional<QString> target =
      prompts_.migrationTarget(this, selected_vm_, fromProto(vm->status().host()), hosts);
  if (!target) return;
  migrate(selected_vm_, *target);
}

void MainWindow::migrate(const QString& vm, const QString& target) {
  v1::MigrateVmRequest request;
  request.set_name(vm.toStdString());
  request.set_target(target.toStdString());
  request.set_mode(v1::MIGRATION_MODE_LIVE);
  const QString what =
      target.isEmpty() ? tr("MigrateVm %1").arg(vm) : tr("MigrateVm %1 to %2").arg(vm, target);
  write<v1::MigrateVmRequest, v1::MigrationRecord>(
      what, &ConsoleClient::Stub::MigrateVm, request, [this](const v1::MigrationRecord& migration) {
        // Follow it: the migrations tab and its chart.
        tabs_->setCurrentWidget(migration_table_);
        selectMigration(fromProto(migration.meta().name()));
      });
}

void MainWindow::cancelMigration() {
  if (selected_migration_.isEmpty()) return;
  write<v1::NameRequest, v1::MigrationRecord>(tr("CancelMigration %1").arg(selected_migration_),
                                              &ConsoleClient::Stub::CancelMigration,
                                              nameRequest(selected_migration_));
}

// --- Hosts.

void MainWindow::cordonHost(bool cordon) {
  if (selected_host_.isEmpty()) return;
  if (cordon) {
    v1::CordonHostRequest request;
    request.set_name(selected_host_.toStdString());
    request.set_reason("cordoned from flotilla-console");
    write<v1::CordonHostRequest, v1::Host>(tr("CordonHost %1").arg(selected_host_),
                                           &ConsoleClient::Stub::CordonHost, request);
  } else {
    write<v1::NameRequest, v1::Host>(tr("UncordonHost %1").arg(selected_host_),
                                     &ConsoleClient::Stub::UncordonHost,
                                     nameRequest(selected_host_));
  }
}

void MainWindow::drainHost() {
  if (selected_host_.isEmpty()) return;
  const QString host = selected_host_;
  if (!prompts_.confirm(this, tr("Drain host"),
                        tr("Drain host %1? It is cordoned and every VM on it is live-migrated "
                           "to other hosts.")
                            .arg(host))) {
    return;
  }
  v1::DrainHostRequest request;
  request.set_name(host.toStdString());
  write<v1::DrainHostRequest, v1::DrainRecord>(
      tr("DrainHost %1").arg(host), &ConsoleClient::Stub::DrainHost, request,
      [this, host](const v1::DrainRecord&) { showDrain(host); });
}

void MainWindow::undrainHost(const QString& host) {
  if (host.isEmpty()) return;
  write<v1::NameRequest, v1::Host>(tr("UndrainHost %1").arg(host),
                                   &ConsoleClient::Stub::UndrainHost, nameRequest(host));
}

// --- Cluster.

void MainWindow::rebalance() {
  if (!client_) return;
  client_->call<v1::PlanRebalanceRequest, v1::RebalancePlan>(
      cli::CallKind::kRead, tr("PlanRebalance"), &ConsoleClient::Stub::PlanRebalance,
      v1::PlanRebalanceRequest(), this, [this](const absl::StatusOr<v1::RebalancePlan>& plan) {
        if (!plan.ok()) {
          actionFailed(tr("PlanRebalance"), statusMessage(plan.status()));
          return;
        }
        prompts_.rebalancePlan(this, *plan, [this] {
          write<v1::PlanRebalanceRequest, v1::RebalancePlan>(
              tr("ApplyRebalance"), &ConsoleClient::Stub::ApplyRebalance,
              v1::PlanRebalanceRequest(), [this](const v1::RebalancePlan& applied) {
                statusBar()->showMessage(
                    tr("Rebalance: %n migration(s) started", nullptr, applied.moves_size()), 10000);
                tabs_->setCurrentWidget(migration_table_);
              });
        });
      });
}

void MainWindow::editConnection() {
  std::optional<ConnectionSettings> settings = prompts_.connection(this, connection_);
  if (!settings) return;
  if (settings_store_ != nullptr) saveConnectionSettings(*settings, *settings_store_);
  connectTo(*settings);
}

}  // namespace flotilla::console
