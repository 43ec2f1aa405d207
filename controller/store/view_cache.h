// ViewCache: the leader's ClusterView, read whole once and then kept current from the etcd
// watch its passes already wait on (the informer pattern), so that a pass over 20,000 VMs
// costs no read of 20,000 keys. Events at or below the view's revision are skipped (a reload
// may overtake a watch that is behind), so the view is exactly etcd's state at its revision:
// the leader's writes stay conditioned on "not modified since view.revision".
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "common/etcd/watch.h"
#include "controller/model/cluster_view.h"
#include "controller/store/store.h"

namespace flotilla::controller {

class ViewCache {
 public:
  explicit ViewCache(Store& store) : store_(store) {}

  // Reads the whole cluster anew (Store::readView).
  absl::Status reload();
  // Applies a batch of watch events on the prefix /flotilla/v1/ (every event of a revision
  // comes in one batch). An error (a value that does not decode) asks for a reload.
  absl::Status apply(const etcd::WatchBatch& batch);

  const ClusterView& view() const { return view_; }

 private:
  absl::Status applyEvent(const etcd::WatchEvent& event);

  Store& store_;
  ClusterView view_;
  // Statuses of VMs whose record is not there (yet): readView ignores them too.
  std::map<std::string, v1::VmStatus> unattached_;
};

}  // namespace flotilla::controller
