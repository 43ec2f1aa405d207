// The console's copy of the cluster (see cluster_store.h).
#include "gui/cluster_store.h"

#include <algorithm>

#include "gui/console_format.h"

namespace flotilla::console {
namespace {

template <typename T>
const T* find(const std::map<std::string, T>& map, const QString& name) {
  auto it = map.find(name.toStdString());
  return it == map.end() ? nullptr : &it->second;
}

}  // namespace

const v1::Host* ClusterStore::host(const QString& name) const {
  return find(hosts_, name);
}
const v1::Vm* ClusterStore::vm(const QString& name) const {
  return find(vms_, name);
}
const v1::MigrationRecord* ClusterStore::migration(const QString& name) const {
  return find(migrations_, name);
}
const v1::DrainRecord* ClusterStore::drain(const QString& name) const {
  return find(drains_, name);
}

void ClusterStore::apply(const v1::WatchEvent& event) {
  revision_ = std::max(revision_, event.revision());
  const QString name = fromProto(event.name());
  const bool put = event.type() == v1::WatchEvent::TYPE_PUT;
  switch (event.kind()) {
    case v1::OBJECT_KIND_HOST:
      if (put) {
        hosts_[event.name()] = event.host();
        Q_EMIT hostPut(name);
      } else if (hosts_.erase(event.name()) != 0) {
        Q_EMIT hostRemoved(name);
      }
      break;
    case v1::OBJECT_KIND_VM:
      if (put) {
        vms_[event.name()] = event.vm();
        Q_EMIT vmPut(name);
      } else if (vms_.erase(event.name()) != 0) {
        Q_EMIT vmRemoved(name);
      }
      break;
    case v1::OBJECT_KIND_MIGRATION:
      if (put) {
        migrations_[event.name()] = event.migration();
        Q_EMIT migrationPut(name);
      } else if (migrations_.erase(event.name()) != 0) {
        Q_EMIT migrationRemoved(name);
      }
      break;
    case v1::OBJECT_KIND_DRAIN:
      if (put) {
        drains_[event.name()] = event.drain();
        Q_EMIT drainPut(name);
      } else if (drains_.erase(event.name()) != 0) {
        Q_EMIT drainRemoved(name);
      }
      break;
    case v1::OBJECT_KIND_EVENT:
      if (put) appendEvent(event.event());
      break;
    default:
      break;  // networks, pools, volumes: not shown
  }
}

void ClusterStore::appendEvent(const v1::Event& event) {
  events_.push_back(event);
  Q_EMIT eventAdded();
  if (events_.size() > kMaxEvents) {
    const size_t excess = events_.size() - kMaxEvents;
    events_.erase(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(excess));
    Q_EMIT eventsTrimmed(static_cast<int>(excess));
  }
}

void ClusterStore::addHistory(const v1::ListEventsResponse& events) {
  for (const v1::Event& event : events.events()) appendEvent(event);
}

void ClusterStore::clear() {
  Q_EMIT aboutToClear();
  hosts_.clear();
  vms_.clear();
  migrations_.clear();
  drains_.clear();
  events_.clear();
  revision_ = 0;
  Q_EMIT cleared();
}

}  // namespace flotilla::console
