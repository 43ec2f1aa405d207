// The cluster tree of the console's left pane: hosts (sorted by name), each with the VMs
// placed on it, then one node for the VMs on no (known) host. A VM that moves host moves in
// the tree (a row removed under one host, inserted under the other). VMs can be dragged onto
// a host: the model does not move them itself, it asks for a migration
// (migrateRequested) and the Watch stream moves the row once the VM has moved.
#pragma once

#include <QAbstractItemModel>
#include <QStringList>
#include <memory>
#include <vector>

#include "gui/cluster_store.h"

namespace flotilla::console {

class ClusterTreeModel : public QAbstractItemModel {
  Q_OBJECT

 public:
  enum class NodeKind { kHost, kUnplaced, kVm };
  // Roles besides Qt::DisplayRole.
  static constexpr int kNameRole = Qt::UserRole + 100;  // host or VM name (QString)
  static constexpr int kKindRole = Qt::UserRole + 101;  // NodeKind as int
  // The drag-and-drop payload: VM names, one per line (UTF-8).
  static constexpr const char* kVmMimeType = "application/x-flotilla-vm-names";

  explicit ClusterTreeModel(const ClusterStore& store, QObject* parent = nullptr);
  ~ClusterTreeModel() override;

  QModelIndex index(int row, int column, const QModelIndex& parent = {}) const override;
  QModelIndex parent(const QModelIndex& child) const override;
  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role) const override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;

  QStringList mimeTypes() const override;
  QMimeData* mimeData(const QModelIndexList& indexes) const override;
  bool canDropMimeData(const QMimeData* data, Qt::DropAction action, int row, int column,
                       const QModelIndex& parent) const override;
  bool dropMimeData(const QMimeData* data, Qt::DropAction action, int row, int column,
                    const QModelIndex& parent) override;
  Qt::DropActions supportedDropActions() const override;
  Qt::DropActions supportedDragActions() const override;

  // Lookups for the views and tests.
  QModelIndex hostIndex(const QString& host) const;  // invalid: no such host node
  QModelIndex unplacedIndex() const;
  QModelIndex vmIndex(const QString& vm) const;
  NodeKind kindOf(const QModelIndex& index) const;
  QString nameOf(const QModelIndex& index) const;  // host or VM name; "" for the unplaced node

 Q_SIGNALS:
  // A VM was dropped on a host it is not on.
  void migrateRequested(const QString& vm, const QString& target_host);

 private:
  struct Node {
    QString host;     // empty: the unplaced node
    QStringList vms;  // sorted
  };

  void hostPut(const QString& name);
  void hostRemoved(const QString& name);
  void vmPut(const QString& name);
  void vmRemoved(const QString& name);
  void clearAll();
  // The node a VM belongs under now, per the store.
  Node* nodeFor(const QString& vm) const;
  Node* hostNode(const QString& host) const;
  Node* unplaced() const { return nodes_.back().get(); }
  int rowOfNode(const Node* node) const;
  // Where the VM is in the tree now (nullptr: not in it).
  Node* nodeHolding(const QString& vm) const;
  void insertVm(Node* node, const QString& vm);
  void removeVm(Node* node, const QString& vm);

  const ClusterStore& store_;
  // Hosts sorted by name, then the unplaced node (always last).
  std::vector<std::unique_ptr<Node>> nodes_;
};

}  // namespace flotilla::console
