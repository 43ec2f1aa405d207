// The console's table models: hosts, VMs, migrations and events, one row per object of the
// ClusterStore, sorted by name (events: in arrival order). They follow the store's signals
// with row insertions, removals and dataChanged; never a reset except when the store clears.
#pragma once

#include <QAbstractTableModel>
#include <QStringList>

#include "gui/cluster_store.h"
#include "gui/widgets/migration_progress_delegate.h"  // kProgressRole

namespace flotilla::console {

// Every table model answers these roles besides Qt::DisplayRole.
inline constexpr int kNameRole = Qt::UserRole + 100;  // the object's name (QString)

// A table with one row per named object, kept sorted by name.
class NamedRowModel : public QAbstractTableModel {
  Q_OBJECT

 public:
  NamedRowModel(const ClusterStore& store, QStringList headers, QObject* parent);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role) const override;
  QVariant data(const QModelIndex& index, int role) const override;

  QString nameAt(int row) const { return names_.value(row); }
  int rowOf(const QString& name) const;  // -1: not shown
  const QStringList& names() const { return names_; }

 protected:
  // The text (or other role) of `column` for the object `name`; invalid when it is gone.
  virtual QVariant cell(const QString& name, int column, int role) const = 0;

  void put(const QString& name);
  void remove(const QString& name);
  void clearRows();
  void connectClear();

  const ClusterStore& store_;

 private:
  QStringList headers_;
  QStringList names_;  // sorted
};

// Name, state, cordoned, CPUs, memory, CPU busy, memory used, VMs.
class HostTableModel : public NamedRowModel {
  Q_OBJECT
 public:
  enum Column { kName, kState, kCordoned, kCpus, kMemory, kCpuBusy, kMemoryUsed, kVms };
  explicit HostTableModel(const ClusterStore& store, QObject* parent = nullptr);

 protected:
  QVariant cell(const QString& name, int column, int role) const override;
};

// Name, state, host, vCPUs, memory, HA, generation.
class VmTableModel : public NamedRowModel {
  Q_OBJECT
 public:
  enum Column { kName, kState, kHost, kVcpus, kMemory, kHa, kGeneration };
  explicit VmTableModel(const ClusterStore& store, QObject* parent = nullptr);

 protected:
  QVariant cell(const QString& name, int column, int role) const override;
};

// VM, source → target, phase, progress, downtime, message. The progress column answers
// MigrationProgressDelegate::kProgressRole (the fraction 0..1).
class MigrationTableModel : public NamedRowModel {
  Q_OBJECT
 public:
  enum Column { kVm, kRoute, kPhase, kProgress, kDowntime, kMessage };
  explicit MigrationTableModel(const ClusterStore& store, QObject* parent = nullptr);

 protected:
  QVariant cell(const QString& name, int column, int role) const override;
};

// Time, severity, kind, object, reason, message; oldest first.
class EventTableModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  explicit EventTableModel(const ClusterStore& store, QObject* parent = nullptr);
  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role) const override;
  QVariant data(const QModelIndex& index, int role) const override;

 private:
  const ClusterStore& store_;
  int rows_ = 0;  // store_.events().size() as announced to views
};

}  // namespace flotilla::console
