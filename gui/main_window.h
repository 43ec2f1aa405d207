// flotilla-console's main window: the cluster tree on the left, the Hosts / VMs / Migrations
// / Events tables in the middle with the load and migration charts below them, the details
// and the serial console of the selection on the right, the drain view in a dock. It owns
// the ClusterStore and its models, the ConsoleClient for calls and the ClusterWatcher for
// the Watch stream; File → Connect replaces both. Actions are in main_window_actions.cc.
#pragma once

#include <QMainWindow>
#include <QPointer>
#include <QString>
#include <functional>
#include <memory>

#include "gui/cluster_store.h"
#include "gui/cluster_tree_model.h"
#include "gui/cluster_watcher.h"
#include "gui/console_client.h"
#include "gui/prompts.h"
#include "gui/table_models.h"
#include "gui/widgets/connection_settings.h"
#include "gui/widgets/format.h"

class QAction;
class QDockWidget;
class QLabel;
class QMenu;
class QSettings;
class QTabWidget;
class QTableView;
class QTextBrowser;
class QTreeView;

namespace flotilla::console {

class ConsoleLogView;
class DrainView;
class HostLoadChart;
class MigrationChart;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  // `prompts` asks the user (DialogPrompts, or a script in tests); `settings_store` keeps the
  // connection settings that File → Connect changes (nullptr: not saved).
  MainWindow(ConsolePrompts& prompts, QSettings* settings_store, QWidget* parent = nullptr);
  ~MainWindow() override;

  // Connects to `settings` (a new client and Watch stream; the models start empty).
  void connectTo(const ConnectionSettings& settings);
  const ConnectionSettings& connection() const { return connection_; }

  // The selection the actions apply to (tree, tables, tests).
  void selectHost(const QString& host);
  void selectVm(const QString& vm);
  void selectMigration(const QString& migration);
  QString selectedHost() const { return selected_host_; }
  QString selectedVm() const { return selected_vm_; }
  QString selectedMigration() const { return selected_migration_; }

  // The actions, by object name: "createVm", "startVm", "stopVm", "restartVm", "deleteVm",
  // "migrateVm", "cancelMigration", "cordonHost", "uncordonHost", "drainHost", "undrainHost",
  // "rebalance", "connect", "quit".
  QAction* action(const QString& name) const;

  // Asks for the migration of `vm` to `target` ("": the scheduler's choice).
  void migrate(const QString& vm, const QString& target);

  // For tests and the screenshots.
  ClusterStore& store() { return store_; }
  ClusterTreeModel& treeModel() { return *tree_model_; }
  HostTableModel& hostModel() { return *host_model_; }
  VmTableModel& vmModel() { return *vm_model_; }
  MigrationTableModel& migrationModel() { return *migration_model_; }
  EventTableModel& eventModel() { return *event_model_; }
  ConsoleClient* client() const { return client_.get(); }
  ClusterWatcher* watcher() const { return watcher_.get(); }
  QTreeView* treeView() const { return tree_view_; }
  QTabWidget* tabs() const { return tabs_; }
  DrainView* drainView() const { return drain_view_; }
  QDockWidget* drainDock() const { return drain_dock_; }
  HostLoadChart* hostLoadChart() const { return host_load_chart_; }
  MigrationChart* migrationChart() const { return migration_chart_; }
  ConsoleLogView* consoleLogView() const { return console_log_; }
  QString detailsHtml() const;
  QString connectionText() const;
  // The drain shown in the drain view ("": none).
  QString shownDrain() const { return shown_drain_; }
  void showDrain(const QString& host);

 private:
  void buildActions();
  void buildMenus();
  void buildLayout();
  void wireStore();
  void updateActions();
  void updateDetails();
  void showContextMenu(QWidget* view, const QPoint& position);
  QMenu* migrateMenu(QWidget* parent, const QString& vm);
  void readConsoleLog(const QString& vm, quint64 offset);

  // Actions (main_window_actions.cc).
  void createVm();
  void vmAction(const QString& method_name);
  void deleteVm();
  void migrateSelected();
  void cancelMigration();
  void cordonHost(bool cordon);
  void drainHost();
  void undrainHost(const QString& host);
  void rebalance();
  void editConnection();
  // A write call whose failure is shown in a message box with the server's message.
  template <typename Request, typename Response>
  void write(const QString& what,
             grpc::Status (ConsoleClient::Stub::*method)(grpc::ClientContext*, const Request&,
                                                         Response*),
             const Request& request, std::function<void(const Response&)> done = {}) {
    if (!client_) return;
    client_->call<Request, Response>(cli::CallKind::kWrite, what, method, request, this,
                                     [this, what, done](const absl::StatusOr<Response>& result) {
                                       if (!result.ok()) {
                                         actionFailed(what, statusMessage(result.status()));
                                         return;
                                       }
                                       actionDone(what);
                                       if (done) done(*result);
                                     });
  }
  void actionFailed(const QString& what, const QString& message);
  void actionDone(const QString& what);

  ConsolePrompts& prompts_;
  QSettings* settings_store_;
  ConnectionSettings connection_;
  ClusterStore store_;
  ClusterTreeModel* tree_model_;
  HostTableModel* host_model_;
  VmTableModel* vm_model_;
  MigrationTableModel* migration_model_;
  EventTableModel* event_model_;
  std::unique_ptr<ClusterWatcher> watcher_;
  std::unique_ptr<ConsoleClient> client_;

  QString selected_host_;
  QString selected_vm_;
  QString selected_migration_;
  QString shown_drain_;

  QTreeView* tree_view_ = nullptr;
  QTabWidget* tabs_ = nullptr;
  QTableView* host_table_ = nullptr;
  QTableView* vm_table_ = nullptr;
  QTableView* migration_table_ = nullptr;
  QTableView* event_table_ = nullptr;
  QTabWidget* side_tabs_ = nullptr;
  QTextBrowser* details_ = nullptr;
  ConsoleLogView* console_log_ = nullptr;
  HostLoadChart* host_load_chart_ = nullptr;
  MigrationChart* migration_chart_ = nullptr;
  DrainView* drain_view_ = nullptr;
  QDockWidget* drain_dock_ = nullptr;
  QLabel* connection_label_ = nullptr;
  QLabel* busy_label_ = nullptr;
};

}  // namespace flotilla::console
