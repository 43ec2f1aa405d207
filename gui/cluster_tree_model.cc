// The cluster tree (see cluster_tree_model.h). A top-level index has no internal pointer; a
// VM's index points at its host's Node (Nodes are heap objects: they do not move when hosts
// come and go).
#include "gui/cluster_tree_model.h"

#include <QMimeData>
#include <algorithm>

#include "gui/console_format.h"

namespace flotilla::console {
namespace {

int sortedPosition(const QStringList& list, const QString& name) {
  return static_cast<int>(std::lower_bound(list.begin(), list.end(), name) - list.begin());
}

}  // namespace

ClusterTreeModel::ClusterTreeModel(const ClusterStore& store, QObject* parent)
    : QAbstractItemModel(parent), store_(store) {
  nodes_.push_back(std::make_unique<Node>());
  connect(&store, &ClusterStore::hostPut, this, &ClusterTreeModel::hostPut);
  connect(&store, &ClusterStore::hostRemoved, this, &ClusterTreeModel::hostRemoved);
  connect(&store, &ClusterStore::vmPut, this, &ClusterTreeModel::vmPut);
  connect(&store, &ClusterStore::vmRemoved, this, &ClusterTreeModel::vmRemoved);
  connect(&store, &ClusterStore::cleared, this, &ClusterTreeModel::clearAll);
  // A host's state column says whether it is being drained.
  auto drainChanged = [this](const QString& host) {
    if (hostNode(host) != nullptr) hostPut(host);
  };
  connect(&store, &ClusterStore::drainPut, this, drainChanged);
  connect(&store, &ClusterStore::drainRemoved, this, drainChanged);
  for (const auto& [name, host] : store.hosts()) hostPut(fromProto(name));
  for (const auto& [name, vm] : store.vms()) vmPut(fromProto(name));
}

ClusterTreeModel::~ClusterTreeModel() = default;

// --- Structure.

QModelIndex ClusterTreeModel::index(int row, int column, const QModelIndex& parent) const {
  if (row < 0 || column < 0 || column >= 2) return {};
  if (!parent.isValid()) {
    if (static_cast<size_t>(row) >= nodes_.size()) return {};
    return createIndex(row, column, nullptr);
  }
  if (parent.internalPointer() != nullptr || parent.column() != 0) return {};  // VMs: no children
  const Node* node = nodes_[static_cast<size_t>(parent.row())].get();
  if (row >= node->vms.size()) return {};
  return createIndex(row, column, const_cast<Node*>(node));
}

QModelIndex ClusterTreeModel::parent(const QModelIndex& child) const {
  if (!child.isValid() || child.internalPointer() == nullptr) return {};
  const auto* node = static_cast<const Node*>(child.internalPointer());
  return createIndex(rowOfNode(node), 0, nullptr);
}

int ClusterTreeModel::rowCount(const QModelIndex& parent) const {
  if (!parent.isValid()) return static_cast<int>(nodes_.size());
  if (parent.internalPointer() != nullptr || parent.column() != 0) return 0;
  return static_cast<int>(nodes_[static_cast<size_t>(parent.row())]->vms.size());
}

int ClusterTreeModel::columnCount(const QModelIndex&) const {
  return 2;
}

QVariant ClusterTreeModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
  return section == 0 ? tr("Cluster") : tr("State");
}

ClusterTreeModel::NodeKind ClusterTreeModel::kindOf(const QModelIndex& index) const {
  if (index.internalPointer() != nullptr) return NodeKind::kVm;
  return static_cast<size_t>(index.row()) + 1 == nodes_.size() ? NodeKind::kUnplaced
                                                               : NodeKind::kHost;
}

QString ClusterTreeModel::nameOf(const QModelIndex& index) const {
  if (!index.isValid()) return {};
  if (index.internalPointer() != nullptr) {
    return static_cast<const Node*>(index.internalPointer())->vms.value(index.row());
  }
  return nodes_[static_cast<size_t>(index.row())]->host;
}

QVariant ClusterTreeModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid()) return {};
  const NodeKind kind = kindOf(index);
  const QString name = nameOf(index);
  if (role == kNameRole) return name;
  if (role == kKindRole) return static_cast<int>(kind);
  if (role != Qt::DisplayRole && role != Qt::ToolTipRole) return {};
  if (kind == NodeKind::kVm) {
    const v1::Vm* vm = store_.vm(name);
    if (index.column() == 0) return name;
    if (vm == nullptr) return {};
    if (role == Qt::ToolTipRole) return fromProto(vm->status().message());
    return vmStateName(vm->status().state());
  }
  const Node* node = nodes_[static_cast<size_t>(index.row())].get();
  if (kind == NodeKind::kUnplaced) {
    if (index.column() == 0) return tr("(no host)");
    return tr("%n VM(s)", nullptr, static_cast<int>(node->vms.size()));
  }
  const v1::Host* host = store_.host(name);
  if (index.column() == 0) return name;
  if (host == nullptr) return {};
  QString state = hostStateName(host->record().state());
  if (host->record().cordoned()) state += tr(", cordoned");
  if (store_.drain(name) != nullptr && store_.drain(name)->phase() == v1::DRAIN_PHASE_RUNNING) {
    state += tr(", draining");
  }
  return state;
}

Qt::ItemFlags ClusterTreeModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  Qt::ItemFlags flags = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
  switch (kindOf(index)) {
    case NodeKind::kVm:
      return flags | Qt::ItemIsDragEnabled;
    case NodeKind::kHost:
      return flags | Qt::ItemIsDropEnabled;
    case NodeKind::kUnplaced:
      return flags;
  }
  return flags;
}

int ClusterTreeModel::rowOfNode(const Node* node) const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].get() == node) return static_cast<int>(i);
  }
  return -1;
}

ClusterTreeModel::Node* ClusterTreeModel::hostNode(const QString& host) const {
  if (host.isEmpty()) return nullptr;
  for (size_t i = 0; i + 1 < nodes_.size(); ++i) {
    if (nodes_[i]->host == host) return nodes_[i].get();
  }
  return nullptr;
}

ClusterTreeModel::Node* ClusterTreeModel::nodeFor(const QString& vm) const {
  const v1::Vm* record = store_.vm(vm);
  if (record == nullptr) return nullptr;
  Node* node = hostNode(fromProto(record->status().host()));
  return node != nullptr ? node : unplaced();
}

ClusterTreeModel::Node* ClusterTreeModel::nodeHolding(const QString& vm) const {
  for (const auto& node : nodes_) {
    auto it = std::lower_bound(node->vms.begin(), node->vms.end(), vm);
    if (it != node->vms.end() && *it == vm) return node.get();
  }
  return nullptr;
}

QModelIndex ClusterTreeModel::hostIndex(const QString& host) const {
  const Node* node = hostNode(host);
  return node == nullptr ? QModelIndex() : createIndex(rowOfNode(node), 0, nullptr);
}

QModelIndex ClusterTreeModel::unplacedIndex() const {
  return createIndex(static_cast<int>(nodes_.size()) - 1, 0, nullptr);
}

QModelIndex ClusterTreeModel::vmIndex(const QString& vm) const {
  Node* node = nodeHolding(vm);
  if (node == nullptr) return {};
  return createIndex(sortedPosition(node->vms, vm), 0, node);
}

// --- Following the store.

void ClusterTreeModel::insertVm(Node* node, const QString& vm) {
  const int row = sortedPosition(node->vms, vm);
  beginInsertRows(createIndex(rowOfNode(node), 0, nullptr), row, row);
  node->vms.insert(row, vm);
  endInsertRows();
}

void ClusterTreeModel::removeVm(Node* node, const QString& vm) {
  const int row = sortedPosition(node->vms, vm);
  beginRemoveRows(createIndex(rowOfNode(node), 0, nullptr), row, row);
  node->vms.removeAt(row);
  endRemoveRows();
}

void ClusterTreeModel::hostPut(const QString& name) {
  if (Node* node = hostNode(name); node != nullptr) {
    const int row = rowOfNode(node);
    Q_EMIT dataChanged(createIndex(row, 0, nullptr), createIndex(row, 1, nullptr));
    return;
  }
  int row = 0;
  while (static_cast<size_t>(row) + 1 < nodes_.size() &&
         nodes_[static_cast<size_t>(row)]->host < name) {
    ++row;
  }
  beginInsertRows({}, row, row);
  auto node = std::make_unique<Node>();
  node->host = name;
  nodes_.insert(nodes_.begin() + row, std::move(node));
  endInsertRows();
  // VMs that were waiting for this host under the unplaced node move to it.
  const QStringList waiting = unplaced()->vms;
  for (const QString& vm : waiting) vmPut(vm);
}

void ClusterTreeModel::hostRemoved(const QString& name) {
  Node* node = hostNode(name);
  if (node == nullptr) return;
  const QStringList orphans = node->vms;
  for (const QString& vm : orphans) {
    removeVm(node, vm);
    insertVm(unplaced(), vm);
  }
  const int row = rowOfNode(node);
  beginRemoveRows({}, row, row);
  nodes_.erase(nodes_.begin() + row);
  endRemoveRows();
}

void ClusterTreeModel::vmPut(const QString& name) {
  Node* target = nodeFor(name);
  if (target == nullptr) return;
  Node* current = nodeHolding(name);
  if (current == target) {
    const int row = sortedPosition(target->vms, name);
    Q_EMIT dataChanged(createIndex(row, 0, target), createIndex(row, 1, target));
    return;
  }
  if (current != nullptr) removeVm(current, name);
  insertVm(target, name);
  const int unplaced_row = static_cast<int>(nodes_.size()) - 1;
  Q_EMIT dataChanged(createIndex(unplaced_row, 1, nullptr), createIndex(unplaced_row, 1, nullptr));
}

void ClusterTreeModel::vmRemoved(const QString& name) {
  if (Node* node = nodeHolding(name); node != nullptr) removeVm(node, name);
}

void ClusterTreeModel::clearAll() {
  beginResetModel();
  nodes_.clear();
  nodes_.push_back(std::make_unique<Node>());
  endResetModel();
}

// --- Drag and drop.

QStringList ClusterTreeModel::mimeTypes() const {
  return {QString::fromLatin1(kVmMimeType)};
}

QMimeData* ClusterTreeModel::mimeData(const QModelIndexList& indexes) const {
  QStringList names;
  for (const QModelIndex& index : indexes) {
    if (index.column() != 0 || kindOf(index) != NodeKind::kVm) continue;
    if (!names.contains(nameOf(index))) names << nameOf(index);
  }
  if (names.isEmpty()) return nullptr;
  auto* data = new QMimeData;
  data->setData(QString::fromLatin1(kVmMimeType), names.join(QLatin1Char('\n')).toUtf8());
  data->setText(names.join(QLatin1Char('\n')));
  return data;
}

bool ClusterTreeModel::canDropMimeData(const QMimeData* data, Qt::DropAction, int, int,
                                       const QModelIndex& parent) const {
  return data != nullptr && data->hasFormat(QString::fromLatin1(kVmMimeType)) && parent.isValid() &&
         kindOf(parent) == NodeKind::kHost;
}

bool ClusterTreeModel::dropMimeData(const QMimeData* data, Qt::DropAction action, int row,
                                    int column, const QModelIndex& parent) {
  if (!canDropMimeData(data, action, row, column, parent)) return false;
  const QString target = nameOf(parent);
  const QStringList names = QString::fromUtf8(data->data(QString::fromLatin1(kVmMimeType)))
                                .split(QLatin1Char('\n'), Qt::SkipEmptyParts);
  for (const QString& vm : names) {
    const v1::Vm* record = store_.vm(vm);
    if (record != nullptr && fromProto(record->status().host()) == target) continue;
    Q_EMIT migrateRequested(vm, target);
  }
  // Nothing moves here: the row moves when the Watch stream reports the VM on its new host.
  return false;
}

Qt::DropActions ClusterTreeModel::supportedDropActions() const {
  return Qt::MoveAction | Qt::CopyAction;
}

Qt::DropActions ClusterTreeModel::supportedDragActions() const {
  return Qt::MoveAction | Qt::CopyAction;
}

}  // namespace flotilla::console
