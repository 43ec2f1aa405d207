// VmStatusTracker: follows every VM's status as the controller writes it to etcd
// (/flotilla/v1/vms-status/NAME, a VmStatus) through one etcd watch, and notes when each VM was
// first seen placed (a host set) and first seen Running. cluster_bench measures placement,
// failover and HA with it: polling ListVms of 20,000 VMs would load the controller it measures.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/etcd/client.h"
#include "common/etcd/watch.h"
#include "flotilla/v1/cluster_state.pb.h"

namespace flotilla::bench {

class VmStatusTracker {
 public:
  struct Entry {
    flotilla::v1::VmStatus status;              // the latest
    absl::Time placed = absl::InfinitePast();   // first seen with a host
    absl::Time running = absl::InfinitePast();  // first seen Running
  };

  // Reads every VM status now, then follows the changes.
  static absl::StatusOr<std::unique_ptr<VmStatusTracker>> start(etcd::EtcdClient& etcd,
                                                                std::string prefix);
  ~VmStatusTracker();
  VmStatusTracker(const VmStatusTracker&) = delete;
  VmStatusTracker& operator=(const VmStatusTracker&) = delete;

  size_t placedCount() const;
  size_t runningCount() const;
  std::optional<Entry> get(const std::string& vm) const;

  // What a wait looks at: every VM, and how many were ever placed / Running.
  struct View {
    const std::map<std::string, Entry>& entries;
    size_t placed = 0;
    size_t running = 0;
  };
  // Waits until `done` holds (checked after every change, with the lock held: it must not call
  // back into the tracker). DeadlineExceeded when nothing changed for `stall` (the message
  // says how far it got, through `describe`); the watch's error when it failed.
  using Predicate = std::function<bool(const View&)>;
  absl::Status waitFor(const Predicate& done, absl::Duration stall,
                       const std::function<std::string()>& describe);

 private:
  VmStatusTracker(std::string prefix, std::unique_ptr<etcd::Watch> watch)
      : prefix_(std::move(prefix)), watch_(std::move(watch)) {}
  void apply(const std::string& key, const std::string& value, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void run();

  const std::string prefix_;
  std::unique_ptr<etcd::Watch> watch_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  size_t placed_ ABSL_GUARDED_BY(mu_) = 0;
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t changes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace flotilla::bench
