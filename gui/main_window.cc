// flotilla-console's main window: layout, models, selection, the Watch stream and the
// console log (see main_window.h; the actions are in main_window_actions.cc).
#include "gui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QDateTime>
#include <QDockWidget>
#include <QHeaderView>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QSettings>
#include <QSplitter>
#include <QStatusBar>
#include <QTabWidget>
#include <QTableView>
#include <QTextBrowser>
#include <QToolBar>
#include <QTreeView>
#include <QVBoxLayout>

#include "gui/console_format.h"
#include "gui/detail_pane.h"
#include "gui/widgets/console_log_view.h"
#include "gui/widgets/drain_view.h"
#include "gui/widgets/host_load_chart.h"
#include "gui/widgets/migration_chart.h"
#include "gui/widgets/migration_progress_delegate.h"

namespace flotilla::console {
namespace {

QTableView* makeTable(QAbstractItemModel* model, const QString& name, QWidget* parent) {
  auto* table = new QTableView(parent);
  table->setObjectName(name);
  table->setModel(model);
  table->setSelectionBehavior(QAbstractItemView::SelectRows);
  table->setSelectionMode(QAbstractItemView::SingleSelection);
  table->setAlternatingRowColors(true);
  table->setSortingEnabled(false);
  table->verticalHeader()->hide();
  table->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table->horizontalHeader()->setStretchLastSection(true);
  table->setContextMenuPolicy(Qt::CustomContextMenu);
  return table;
}

}  // namespace

MainWindow::MainWindow(ConsolePrompts& prompts, QSettings* settings_store, QWidget* parent)
    : QMainWindow(parent), prompts_(prompts), settings_store_(settings_store) {
  setWindowTitle(tr("Flotilla console"));
  setObjectName(QStringLiteral("mainWindow"));
  tree_model_ = new ClusterTreeModel(store_, this);
  host_model_ = new HostTableModel(store_, this);
  vm_model_ = new VmTableModel(store_, this);
  migration_model_ = new MigrationTableModel(store_, this);
  event_model_ = new EventTableModel(store_, this);
  buildActions();
  buildLayout();
  buildMenus();
  wireStore();
  updateActions();
  resize(1400, 860);
}

MainWindow::~MainWindow() {
  // Stop the stream and the calls before the models they feed go away.
  watcher_.reset();
  client_.reset();
}

void MainWindow::buildLayout() {
  tree_view_ = new QTreeView(this);
  tree_view_->setObjectName(QStringLiteral("clusterTree"));
  tree_view_->setModel(tree_model_);
  tree_view_->setDragEnabled(true);
  tree_view_->setAcceptDrops(true);
  tree_view_->setDropIndicatorShown(true);
  tree_view_->setDragDropMode(QAbstractItemView::DragDrop);
  tree_view_->setDefaultDropAction(Qt::MoveAction);
  tree_view_->setContextMenuPolicy(Qt::CustomContextMenu);
  tree_view_->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  tree_view_->setUniformRowHeights(true);
  // New hosts open: their VMs are what the tree is for.
  connect(tree_model_, &QAbstractItemModel::rowsInserted, this,
          [this](const QModelIndex& parent, int first, int last) {
            if (parent.isValid()) return;
            for (int row = first; row <= last; ++row) {
              tree_view_->expand(tree_model_->index(row, 0));
            }
          });
  connect(tree_model_, &QAbstractItemModel::modelReset, tree_view_, &QTreeView::expandAll);

  tabs_ = new QTabWidget(this);
  tabs_->setObjectName(QStringLiteral("tabs"));
  host_table_ = makeTable(host_model_, QStringLiteral("hostTable"), this);
  vm_table_ = makeTable(vm_model_, QStringLiteral("vmTable"), this);
  migration_table_ = makeTable(migration_model_, QStringLiteral("migrationTable"), this);
  migration_table_->setItemDelegateForColumn(MigrationTableModel::kProgress,
                                             new MigrationProgressDelegate(migration_table_));
  event_table_ = makeTable(event_model_, QStringLiteral("eventTable"), this);
  tabs_->addTab(host_table_, tr("Hosts"));
  tabs_->addTab(vm_table_, tr("VMs"));
  tabs_->addTab(migration_table_, tr("Migrations"));
  tabs_->addTab(event_table_, tr("Events"));
  // New events scroll into view.
  connect(event_model_, &QAbstractItemModel::rowsInserted, event_table_,
          &QTableView::scrollToBottom);

  host_load_chart_ = new HostLoadChart(this);
  migration_chart_ = new MigrationChart(this);
  auto* charts = new QSplitter(Qt::Horizontal, this);
  charts->addWidget(host_load_chart_);
  charts->addWidget(migration_chart_);
  charts->setStretchFactor(0, 1);
  charts->setStretchFactor(1, 1);
  charts->setSizes({500, 460});

  auto* middle = new QSplitter(Qt::Vertical, this);
  middle->addWidget(tabs_);
  middle->addWidget(charts);
  middle->setStretchFactor(0, 2);
  middle->setStretchFactor(1, 3);
  middle->setSizes({340, 520});

  side_tabs_ = new QTabWidget(this);
  side_tabs_->setObjectName(QStringLiteral("sideTabs"));
  details_ = new QTextBrowser(this);
  details_->setObjectName(QStringLiteral("details"));
  details_->setOpenLinks(false);
  console_log_ = new ConsoleLogView(this);
  side_tabs_->addTab(details_, tr("Details"));
  side_tabs_->addTab(console_log_, tr("Console"));
  connect(console_log_, &ConsoleLogView::readRequested, this, &MainWindow::readConsoleLog);

  auto* main = new QSplitter(Qt::Horizontal, this);
  main->addWidget(tree_view_);
  main->addWidget(middle);
  main->addWidget(side_tabs_);
  main->setStretchFactor(0, 2);
  main->setStretchFactor(1, 5);
  main->setStretchFactor(2, 3);
  main->setSizes({250, 950, 400});
  setCentralWidget(main);

  drain_view_ = new DrainView(this);
  drain_dock_ = new QDockWidget(tr("Drain"), this);
  drain_dock_->setObjectName(QStringLiteral("drainDock"));
  drain_dock_->setWidget(drain_view_);
  addDockWidget(Qt::BottomDockWidgetArea, drain_dock_);
  drain_dock_->hide();
  connect(drain_view_, &DrainView::cancelRequested, this, &MainWindow::undrainHost);

  connection_label_ = new QLabel(tr("not connected"), this);
  connection_label_->setObjectName(QStringLiteral("connectionState"));
  busy_label_ = new QLabel(this);
  busy_label_->setObjectName(QStringLiteral("busy"));
  statusBar()->addPermanentWidget(busy_label_);
  statusBar()->addPermanentWidget(connection_label_);

  // Selection: the tree and the tables select hosts, VMs and migrations.
  connect(tree_view_->selectionModel(), &QItemSelectionModel::currentChanged, this,
          [this](const QModelIndex& current) {
            if (!current.isValid()) return;
            const QString name = tree_model_->nameOf(current);
            switch (tree_model_->kindOf(current)) {
              case ClusterTreeModel::NodeKind::kHost:
                selectHost(name);
                break;
              case ClusterTreeModel::NodeKind::kVm:
                selectVm(name);
                break;
              case ClusterTreeModel::NodeKind::kUnplaced:
                break;
            }
          });
  auto followTable = [this](QTableView* table, const std::function<void(const QString&)>& select) {
    connect(table->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
            [table, select](const QModelIndex& current) {
              if (!current.isValid()) return;
              select(table->model()->index(current.row(), 0).data(kNameRole).toString());
            });
  };
  followTable(host_table_, [this](const QString& name) { selectHost(name); });
  followTable(vm_table_, [this](const QString& name) { selectVm(name); });
  followTable(migration_table_, [this](const QString& name) { selectMigration(name); });
  for (QAbstractItemView* view : std::initializer_list<QAbstractItemView*>{
           tree_view_, host_table_, vm_table_, migration_table_}) {
    connect(view, &QWidget::customContextMenuRequested, this,
            [this, view](const QPoint& position) { showContextMenu(view, position); });
  }
  connect(tree_model_, &ClusterTreeModel::migrateRequested, this, &MainWindow::migrate);
}

void MainWindow::wireStore() {
  connect(&store_, &ClusterStore::hostPut, this, [this](const QString& name) {
    const v1::Host* host = store_.host(name);
    if (host != nullptr && host->has_status()) host_load_chart_->addSample(host->status());
    if (name == selected_host_) updateDetails();
    updateActions();
  });
  connect(&store_, &ClusterStore::hostRemoved, this, [this](const QString& name) {
    host_load_chart_->removeHost(name);
    if (name == selected_host_) updateDetails();
  });
  connect(&store_, &ClusterStore::vmPut, this, [this](const QString& name) {
    if (name == selected_vm_) {
      updateDetails();
      updateActions();
    }
  });
  connect(&store_, &ClusterStore::vmRemoved, this, [this](const QString& name) {
    if (name == selected_vm_) {
      updateDetails();
      updateActions();
    }
  });
  connect(&store_, &ClusterStore::migrationPut, this, [this](const QString& name) {
    const v1::MigrationRecord* migration = store_.migration(name);
    // The chart follows the selected migration, or else the latest one that runs.
    if (selected_migration_.isEmpty() && migration != nullptr && migrationActive(*migration)) {
      selected_migration_ = name;
    }
    if (name == selected_migration_ && migration != nullptr) {
      migration_chart_->update(*migration, QDateTime::currentMSecsSinceEpoch());
      if (details_->property("shows").toString() == QStringLiteral("migration")) updateDetails();
      updateActions();
    }
  });
  connect(&store_, &ClusterStore::drainPut, this, [this](const QString& name) {
    const v1::DrainRecord* drain = store_.drain(name);
    if (drain == nullptr) return;
    // A drain that starts (from here or elsewhere) shows up in the dock.
    if (shown_drain_.isEmpty() && drain->phase() == v1::DRAIN_PHASE_RUNNING) shown_drain_ = name;
    if (name == shown_drain_) {
      drain_view_->update(*drain);
      drain_dock_->show();
    }
    if (name == selected_host_) updateDetails();
  });
  connect(&store_, &ClusterStore::cleared, this, [this] {
    host_load_chart_->clear();
    updateDetails();
    updateActions();
  });
}

void MainWindow::connectTo(const ConnectionSettings& settings) {
  watcher_.reset();  // stops within 100 ms
  // The old client goes once its calls have come back (cancelled): no waiting here.
  if (client_) client_.release()->retire();
  store_.clear();
  connection_ = settings;
  const cli::ClientOptions options = clientOptions(settings);
  client_ = std::make_unique<ConsoleClient>(options);
  connect(client_.get(), &ConsoleClient::busyChanged, this, [this](int calls) {
    busy_label_->setText(calls > 0 ? tr("%n call(s) in flight", nullptr, calls) : QString());
  });
  watcher_ = std::make_unique<ClusterWatcher>(options);
  connect(watcher_.get(), &ClusterWatcher::eventReceived, &store_, &ClusterStore::apply);
  connect(watcher_.get(), &ClusterWatcher::resetting, &store_, &ClusterStore::clear);
  connect(watcher_.get(), &ClusterWatcher::stateChanged, this,
          [this](ClusterWatcher::State state, const QString& text) {
            connection_label_->setText(text);
            if (state == ClusterWatcher::State::kFailed) {
              statusBar()->showMessage(tr("Watch: %1").arg(text), 10000);
            }
          });
  connection_label_->setText(
      tr("connecting to %1").arg(settings.endpoints.join(QStringLiteral(", "))));
  watcher_->start();
  // The event history (the Watch stream sends only new events).
  v1::ListEventsRequest request;
  request.set_limit(200);
  client_->call<v1::ListEventsRequest, v1::ListEventsResponse>(
      cli::CallKind::kRead, tr("ListEvents"), &ConsoleClient::Stub::ListEvents, request, this,
      [this](const absl::StatusOr<v1::ListEventsResponse>& events) {
        if (!events.ok()) {
          statusBar()->showMessage(
              tr("Could not read the events: %1").arg(statusMessage(events.status())), 10000);
          return;
        }
        store_.addHistory(*events);
      });
}

QString MainWindow::connectionText() const {
  return connection_label_->text();
}

QString MainWindow::detailsHtml() const {
  return details_->toHtml();
}

// --- Selection.

void MainWindow::selectHost(const QString& host) {
  selected_host_ = host;
  details_->setProperty("shows", QStringLiteral("host"));
  updateDetails();
  updateActions();
}

void MainWindow::selectVm(const QString& vm) {
  selected_vm_ = vm;
  details_->setProperty("shows", QStringLiteral("vm"));
  if (console_log_->vm() != vm) console_log_->setVm(vm);
  updateDetails();
  updateActions();
}

void MainWindow::selectMigration(const QString& migration) {
  selected_migration_ = migration;
  details_->setProperty("shows", QStringLiteral("migration"));
  migration_chart_->clear();
  if (const v1::MigrationRecord* record = store_.migration(migration); record != nullptr) {
    migration_chart_->update(*record, QDateTime::currentMSecsSinceEpoch());
  }
  updateDetails();
  updateActions();
}

void MainWindow::showDrain(const QString& host) {
  shown_drain_ = host;
  if (const v1::DrainRecord* drain = store_.drain(host); drain != nullptr) {
    drain_view_->update(*drain);
  }
  drain_dock_->show();
}

void MainWindow::updateDetails() {
  const QString shows = details_->property("shows").toString();
  QString html;
  if (shows == QStringLiteral("host")) {
    const v1::Host* host = store_.host(selected_host_);
    html = host != nullptr ? hostDetailsHtml(*host, store_)
                           : tr("<p>Host %1 is gone.</p>").arg(selected_host_.toHtmlEscaped());
  } else if (shows == QStringLiteral("vm")) {
    const v1::Vm* vm = store_.vm(selected_vm_);
    html = vm != nullptr ? vmDetailsHtml(*vm)
                         : tr("<p>VM %1 is gone.</p>").arg(selected_vm_.toHtmlEscaped());
  } else if (shows == QStringLiteral("migration")) {
    const v1::MigrationRecord* migration = store_.migration(selected_migration_);
    html = migration != nullptr
               ? migrationDetailsHtml(*migration)
               : tr("<p>Migration %1 is gone.</p>").arg(selected_migration_.toHtmlEscaped());
  } else {
    html = tr("<p>Select a host, a VM or a migration.</p>");
  }
  details_->setHtml(html);
}

// --- The console log.

void MainWindow::readConsoleLog(const QString& vm, quint64 offset) {
  if (!client_) {
    console_log_->showError(vm, tr("not connected: use File → Connect"));
    return;
  }
  v1::VmConsoleLogRequest request;
  request.set_name(vm.toStdString());
  request.set_offset(offset);
  client_->call<v1::VmConsoleLogRequest, v1::VmConsoleLog>(
      cli::CallKind::kRead, tr("GetVmConsoleLog %1").arg(vm), &ConsoleClient::Stub::GetVmConsoleLog,
      request, console_log_, [this, vm](const absl::StatusOr<v1::VmConsoleLog>& log) {
        if (!log.ok()) {
          console_log_->showError(vm, statusMessage(log.status()));
          return;
        }
        console_log_->appendData(vm, QByteArray::fromStdString(log->data()), log->next_offset());
      });
}

}  // namespace flotilla::console
