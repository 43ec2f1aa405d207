// The console's table models (see table_models.h).
#include "gui/table_models.h"

#include <algorithm>

#include "gui/console_format.h"
#include "gui/widgets/host_load_chart.h"

namespace flotilla::console {

NamedRowModel::NamedRowModel(const ClusterStore& store, QStringList headers, QObject* parent)
    : QAbstractTableModel(parent), store_(store), headers_(std::move(headers)) {}

int NamedRowModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(names_.size());
}

int NamedRowModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(headers_.size());
}

QVariant NamedRowModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation == Qt::Horizontal && role == Qt::DisplayRole) return headers_.value(section);
  return {};
}

QVariant NamedRowModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= names_.size()) return {};
  const QString& name = names_[index.row()];
  if (role == kNameRole) return name;
  return cell(name, index.column(), role);
}

int NamedRowModel::rowOf(const QString& name) const {
  auto it = std::lower_bound(names_.begin(), names_.end(), name);
  if (it == names_.end() || *it != name) return -1;
  return static_cast<int>(it - names_.begin());
}

void NamedRowModel::put(const QString& name) {
  auto it = std::lower_bound(names_.begin(), names_.end(), name);
  const int row = static_cast<int>(it - names_.begin());
  if (it != names_.end() && *it == name) {
    Q_EMIT dataChanged(index(row, 0), index(row, columnCount() - 1));
    return;
  }
  beginInsertRows({}, row, row);
  names_.insert(row, name);
  endInsertRows();
}

void NamedRowModel::remove(const QString& name) {
  const int row = rowOf(name);
  if (row < 0) return;
  beginRemoveRows({}, row, row);
  names_.removeAt(row);
  endRemoveRows();
}

void NamedRowModel::clearRows() {
  if (names_.isEmpty()) return;
  beginRemoveRows({}, 0, static_cast<int>(names_.size()) - 1);
  names_.clear();
  endRemoveRows();
}

void NamedRowModel::connectClear() {
  connect(&store_, &ClusterStore::cleared, this, &NamedRowModel::clearRows);
}

// --- Hosts.

HostTableModel::HostTableModel(const ClusterStore& store, QObject* parent)
    : NamedRowModel(store,
                    {tr("Name"), tr("State"), tr("Cordoned"), tr("CPUs"), tr("Memory"),
                     tr("CPU busy"), tr("Memory used"), tr("VMs")},
                    parent) {
  connect(&store, &ClusterStore::hostPut, this, &HostTableModel::put);
  connect(&store, &ClusterStore::hostRemoved, this, &HostTableModel::remove);
  // The VM count changes with the VMs.
  auto refreshAll = [this] {
    if (rowCount() > 0) Q_EMIT dataChanged(index(0, kVms), index(rowCount() - 1, kVms));
  };
  connect(&store, &ClusterStore::vmPut, this, refreshAll);
  connect(&store, &ClusterStore::vmRemoved, this, refreshAll);
  connectClear();
}

QVariant HostTableModel::cell(const QString& name, int column, int role) const {
  const v1::Host* host = store_.host(name);
  if (host == nullptr) return {};
  const v1::HostStatus& status = host->status();
  if (role == Qt::TextAlignmentRole && column >= kCpus) {
    return QVariant::fromValue(Qt::AlignRight | Qt::AlignVCenter);
  }
  if (role == Qt::ToolTipRole && column == kCordoned)
    return fromProto(host->record().cordon_reason());
  if (role != Qt::DisplayRole) return {};
  switch (column) {
    case kName:
      return name;
    case kState:
      return host->reporting() || host->record().state() != v1::HOST_STATE_UNSPECIFIED
                 ? hostStateName(host->record().state())
                 : tr("not reporting");
    case kCordoned:
      return host->record().cordoned() ? tr("yes") : QString();
    case kCpus:
      return status.inventory().cpus();
    case kMemory:
      return formatBytes(status.inventory().memory_bytes());
    case kCpuBusy:
      return host->has_status() ? formatPercent(status.load().cpu_busy()) : QString();
    case kMemoryUsed:
      return host->has_status() ? formatPercent(memoryUsedFraction(status).value_or(0.0))
                                : QString();
    case kVms: {
      int count = 0;
      for (const auto& [vm_name, vm] : store_.vms()) {
        if (vm.status().host() == host->name()) ++count;
      }
      return count;
    }
    default:
      return {};
  }
}

// --- VMs.

VmTableModel::VmTableModel(const ClusterStore& store, QObject* parent)
    : NamedRowModel(store,
                    {tr("Name"), tr("State"), tr("Host"), tr("vCPUs"), tr("Memory"), tr("HA"),
                     tr("Generation")},
                    parent) {
  connect(&store, &ClusterStore::vmPut, this, &VmTableModel::put);
  connect(&store, &ClusterStore::vmRemoved, this, &VmTableModel::remove);
  connectClear();
}

QVariant VmTableModel::cell(const QString& name, int column, int role) const {
  const v1::Vm* vm = store_.vm(name);
  if (vm == nullptr) return {};
  if (role == Qt::ToolTipRole && column == kState) return fromProto(vm->status().message());
  if (role == Qt::TextAlignmentRole && (column == kVcpus || column == kMemory)) {
    return QVariant::fromValue(Qt::AlignRight | Qt::AlignVCenter);
  }
  if (role != Qt::DisplayRole) return {};
  const v1::VmSpec& spec = vm->record().spec();
  switch (column) {
    case kName:
      return name;
    case kState:
      return vmStateName(vm->status().state());
    case kHost:
      return fromProto(vm->status().host());
    case kVcpus:
      return spec.vcpus();
    case kMemory:
      return formatBytes(spec.memory_bytes());
    case kHa:
      return spec.ha() ? tr("yes") : tr("no");
    case kGeneration:
      return QString::number(vm->status().generation());
    default:
      return {};
  }
}

// --- Migrations.

MigrationTableModel::MigrationTableModel(const ClusterStore& store, QObject* parent)
    : NamedRowModel(store,
                    {tr("VM"), tr("Source → target"), tr("Phase"), tr("Progress"), tr("Downtime"),
                     tr("Message")},
                    parent) {
  connect(&store, &ClusterStore::migrationPut, this, &MigrationTableModel::put);
  connect(&store, &ClusterStore::migrationRemoved, this, &MigrationTableModel::remove);
  connectClear();
}

QVariant MigrationTableModel::cell(const QString& name, int column, int role) const {
  const v1::MigrationRecord* migration = store_.migration(name);
  if (migration == nullptr) return {};
  if (role == MigrationProgressDelegate::kProgressRole && column == kProgress) {
    return migrationProgress(*migration);
  }
  if (role == Qt::ToolTipRole) return name;
  if (role != Qt::DisplayRole) return {};
  switch (column) {
    case kVm:
      return fromProto(migration->vm());
    case kRoute:
      return QStringLiteral("%1 → %2").arg(
          fromProto(migration->source()),
          migration->target().empty() ? tr("(scheduler)") : fromProto(migration->target()));
    case kPhase:
      return migrationPhaseName(migration->phase());
    case kProgress:
      return formatPercent(migrationProgress(*migration));
    case kDowntime:
      return migration->downtime_ms() > 0
                 ? QStringLiteral("%1 ms").arg(migration->downtime_ms(), 0, 'f', 1)
                 : QString();
    case kMessage:
      return fromProto(migration->message());
    default:
      return {};
  }
}

// --- Events.

EventTableModel::EventTableModel(const ClusterStore& store, QObject* parent)
    : QAbstractTableModel(parent), store_(store) {
  connect(&store, &ClusterStore::eventAdded, this, [this] {
    const int count = static_cast<int>(store_.events().size());
    if (count <= rows_) return;
    beginInsertRows({}, rows_, count - 1);
    rows_ = count;
    endInsertRows();
  });
  connect(&store, &ClusterStore::eventsTrimmed, this, [this](int trimmed) {
    if (trimmed <= 0 || rows_ == 0) return;
    beginRemoveRows({}, 0, std::min(trimmed, rows_) - 1);
    rows_ = static_cast<int>(store_.events().size());
    endRemoveRows();
  });
  connect(&store, &ClusterStore::aboutToClear, this, [this] { beginResetModel(); });
  connect(&store, &ClusterStore::cleared, this, [this] {
    rows_ = 0;
    endResetModel();
  });
}

int EventTableModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : rows_;
}

int EventTableModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : 6;
}

QVariant EventTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
  static const char* const kHeaders[] = {"Time", "Severity", "Kind", "Object", "Reason", "Message"};
  if (section < 0 || section >= 6) return {};
  return tr(kHeaders[section]);
}

QVariant EventTableModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || role != Qt::DisplayRole) return {};
  const auto row = static_cast<size_t>(index.row());
  if (row >= store_.events().size()) return {};
  const v1::Event& event = store_.events()[row];
  switch (index.column()) {
    case 0:
      return formatTimeMillis(event.unix_ms());
    case 1:
      return severityName(event.severity());
    case 2:
      return fromProto(event.kind());
    case 3:
      return fromProto(event.object());
    case 4:
      return fromProto(event.reason());
    case 5:
      return fromProto(event.message());
    default:
      return {};
  }
}

}  // namespace flotilla::console
