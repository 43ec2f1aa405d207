// The console's copy of the cluster, fed by Watch events on the UI thread. The Qt models
// (cluster_models.h) and the main window read it and follow its signals; it is the only
// place that interprets WatchEvent.
#pragma once

#include <QObject>
#include <QString>
#include <deque>
#include <map>
#include <string>

#include "flotilla/v1/cluster.pb.h"

namespace flotilla::console {

class ClusterStore : public QObject {
  Q_OBJECT

 public:
  explicit ClusterStore(QObject* parent = nullptr) : QObject(parent) {}

  // Applies one Watch event (PUT or DELETE of a host, VM, migration, drain; PUT of an event).
  void apply(const v1::WatchEvent& event);
  // Forgets everything (the watch starts again from revision 0).
  void clear();
  // Adds events read with ListEvents (history the Watch stream does not replay).
  void addHistory(const v1::ListEventsResponse& events);

  const std::map<std::string, v1::Host>& hosts() const { return hosts_; }
  const std::map<std::string, v1::Vm>& vms() const { return vms_; }
  const std::map<std::string, v1::MigrationRecord>& migrations() const { return migrations_; }
  const std::map<std::string, v1::DrainRecord>& drains() const { return drains_; }
  const std::deque<v1::Event>& events() const { return events_; }
  const v1::Host* host(const QString& name) const;
  const v1::Vm* vm(const QString& name) const;
  const v1::MigrationRecord* migration(const QString& name) const;
  const v1::DrainRecord* drain(const QString& name) const;
  int64_t revision() const { return revision_; }

  static constexpr size_t kMaxEvents = 1000;  // older events are dropped

 Q_SIGNALS:
  void hostPut(const QString& name);  // added or changed
  void hostRemoved(const QString& name);
  void vmPut(const QString& name);
  void vmRemoved(const QString& name);
  void migrationPut(const QString& name);
  void migrationRemoved(const QString& name);
  void drainPut(const QString& name);
  void drainRemoved(const QString& name);
  void eventAdded();              // appended at the end of events()
  void eventsTrimmed(int count);  // the oldest `count` events were dropped
  void aboutToClear();
  void cleared();

 private:
  void appendEvent(const v1::Event& event);

  std::map<std::string, v1::Host> hosts_;
  std::map<std::string, v1::Vm> vms_;
  std::map<std::string, v1::MigrationRecord> migrations_;
  std::map<std::string, v1::DrainRecord> drains_;
  std::deque<v1::Event> events_;
  int64_t revision_ = 0;
};

}  // namespace flotilla::console
