// Every VM's status followed through one etcd watch (see vm_status_tracker.h).
#include "bench/cluster/vm_status_tracker.h"

#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"

namespace flotilla::bench {

absl::StatusOr<std::unique_ptr<VmStatusTracker>> VmStatusTracker::start(etcd::EtcdClient& etcd,
                                                                        std::string prefix) {
  ASSIGN_OR_RETURN(etcd::RangeResult current, etcd.get(prefix, {.prefix = true}));
  auto watch = etcd.watch(
      {.key = prefix, .prefix = true, .start_revision = current.revision + 1, .prev_kv = false});
  std::unique_ptr<VmStatusTracker> tracker(new VmStatusTracker(prefix, std::move(watch)));
  {
    absl::MutexLock lock(&tracker->mu_);
    const absl::Time now = absl::Now();
    for (const etcd::KeyValue& kv : current.kvs) tracker->apply(kv.key, kv.value, now);
  }
  tracker->thread_ = std::thread([raw = tracker.get()] {
    setCurrentThreadName("bench-vm-watch");
    raw->run();
  });
  return tracker;
}

VmStatusTracker::~VmStatusTracker() {
  watch_->cancel();
  if (thread_.joinable()) thread_.join();
}

void VmStatusTracker::apply(const std::string& key, const std::string& value, absl::Time now) {
  const std::string name = key.substr(prefix_.size());
  Entry& entry = entries_[name];
  if (!entry.status.ParseFromString(value)) return;
  if (!entry.status.host().empty() && entry.placed == absl::InfinitePast()) {
    entry.placed = now;
    ++placed_;
  }
  if (entry.status.state() == flotilla::v1::VM_STATE_RUNNING &&
      entry.running == absl::InfinitePast()) {
    entry.running = now;
    ++running_;
  }
  ++changes_;
}

void VmStatusTracker::run() {
  while (true) {
    absl::StatusOr<etcd::WatchBatch> batch = watch_->next(absl::Seconds(1));
    if (absl::IsDeadlineExceeded(batch.status())) continue;
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&mu_);
    if (!batch.ok()) {
      if (!absl::IsCancelled(batch.status())) error_ = batch.status();
      return;
    }
    for (const etcd::WatchEvent& event : batch->events) {
      // A deleted VM's status: the VM is gone (deleted by the bench, or never mattered).
      if (event.type == etcd::WatchEvent::Type::kDelete) {
        entries_.erase(event.kv.key.substr(prefix_.size()));
        ++changes_;
        continue;
      }
      apply(event.kv.key, event.kv.value, now);
    }
  }
}

size_t VmStatusTracker::placedCount() const {
  absl::MutexLock lock(&mu_);
  return placed_;
}

size_t VmStatusTracker::runningCount() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

std::optional<VmStatusTracker::Entry> VmStatusTracker::get(const std::string& vm) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(vm);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

absl::Status VmStatusTracker::waitFor(const Predicate& done, absl::Duration stall,
                                      const std::function<std::string()>& describe) {
  absl::MutexLock lock(&mu_);
  uint64_t seen = changes_;
  absl::Time last_change = absl::Now();
  while (true) {
    if (!error_.ok()) return annotate(error_, "watching the VMs' status");
    if (done(View{entries_, placed_, running_})) return absl::OkStatus();
    if (changes_ != seen) {
      seen = changes_;
      last_change = absl::Now();
    } else if (absl::Now() - last_change > stall) {
      mu_.Unlock();
      std::string progress = describe();
      mu_.Lock();
      return absl::DeadlineExceededError(
          fmt::format("nothing changed for {}: {}", absl::FormatDuration(stall), progress));
    }
    const uint64_t before = changes_;
    auto changed = [this, before]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return changes_ != before || !error_.ok();
    };
    mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Milliseconds(200));
  }
}

}  // namespace flotilla::bench
