// The agent's host record in etcd and its self-fencing (see host_reporter.h).
#include "node-agent/host_reporter.h"

#include "common/clock.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"

namespace flotilla::agent {

HostReporter::HostReporter(etcd::EtcdClient& etcd, VmManager& vms, StatusSource source,
                           HostReporterOptions options)
    : etcd_(etcd),
      vms_(vms),
      source_(std::move(source)),
      options_(std::move(options)),
      log_(Logger("agent.report").with("host", options_.host)) {}

HostReporter::~HostReporter() {
  stop();
}

std::string HostReporter::statusKey() const {
  return fmt::format("{}hosts-status/{}", options_.key_prefix, options_.host);
}

void HostReporter::start() {
  report_thread_ = std::thread([this] {
    setCurrentThreadName("host-report");
    reportLoop();
  });
  fence_thread_ = std::thread([this] {
    setCurrentThreadName("self-fence");
    fenceLoop();
  });
}

void HostReporter::stop() {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  if (report_thread_.joinable()) report_thread_.join();
  if (fence_thread_.joinable()) fence_thread_.join();
  absl::MutexLock lock(&mu_);
  keepalive_.reset();
}

flotilla::v1::HostStatus HostReporter::current() {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::Duration HostReporter::sinceRenewal() {
  absl::MutexLock lock(&mu_);
  if (keepalive_ == nullptr) return absl::ZeroDuration();
  return systemClock().monotonicNow() - keepalive_->lastRenewal();
}

absl::Status HostReporter::reportOnce() {
  vms_.refreshUsage();
  flotilla::v1::HostStatus status = source_();
  status.set_name(options_.host);
  for (const flotilla::v1::AgentVm& vm : vms_.listVms()) {
    flotilla::v1::HostVm* host_vm = status.add_vms();
    host_vm->set_name(vm.name());
    host_vm->set_state(vm.state());
    *host_vm->mutable_usage() = vm.usage();
    host_vm->set_memory_bytes(vm.spec().memory_bytes());
    host_vm->set_vcpus(vm.spec().vcpus());
    if (vm.state() == flotilla::v1::VM_STATE_RUNNING ||
        vm.state() == flotilla::v1::VM_STATE_MIGRATING) {
      status.mutable_load()->set_vms_running(status.load().vms_running() + 1);
      status.mutable_load()->set_vm_memory_bytes(status.load().vm_memory_bytes() +
                                                 vm.spec().memory_bytes());
    }
  }
  status.set_updated_unix_ms(absl::ToUnixMillis(absl::Now()));

  // A lease that etcd dropped (or none yet): a new one, and the fence is re-armed.
  bool need_lease = false;
  {
    absl::MutexLock lock(&mu_);
    need_lease = keepalive_ == nullptr || keepalive_->lost();
    if (!need_lease) status.set_lease_id(static_cast<uint64_t>(keepalive_->id()));
    current_ = status;
  }
  if (need_lease) {
    ASSIGN_OR_RETURN(etcd::Lease lease, etcd_.grantLease(options_.lease_ttl));
    auto keepalive = std::make_unique<etcd::LeaseKeepAlive>(etcd_, lease);
    absl::MutexLock lock(&mu_);
    if (keepalive_ != nullptr) log_.warn("lease {} was lost; now holding lease {}", keepalive_->id(), lease.id);
    keepalive_ = std::move(keepalive);
    fenced_ = false;
    status.set_lease_id(static_cast<uint64_t>(lease.id));
    current_ = status;
  }
  std::string value;
  status.SerializeToString(&value);
  ASSIGN_OR_RETURN(int64_t revision,
                   etcd_.put(statusKey(), value, static_cast<int64_t>(status.lease_id())));
  (void)revision;
  return absl::OkStatus();
}

void HostReporter::reportLoop() {
  LogRateLimiter limiter(systemClock(), 3, absl::Minutes(1));
  do {
    absl::Status status = reportOnce();
    if (!status.ok()) {
      log_.limited(limiter, LogLevel::kWarn, "cannot report the host's status to etcd: {}", status.message());
    }
  } while (!stopping_.WaitForNotificationWithTimeout(options_.report_interval));
}

void HostReporter::fenceLoop() {
  while (!stopping_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const absl::Duration since = sinceRenewal();
    if (since < options_.fence_after) continue;
    {
      absl::MutexLock lock(&mu_);
      if (fenced_) continue;
      fenced_ = true;
    }
    const std::string reason = fmt::format(
        "the host's etcd lease was not renewed for {} (fence_after {}); the controller may "
        "restart HA VMs elsewhere once it expires",
        absl::FormatDuration(since), absl::FormatDuration(options_.fence_after));
    const int killed = vms_.fenceHaVms(reason);
    fences_.fetch_add(1);
    log_.error("self-fencing: killed {} HA VM(s): {}", killed, reason);
  }
}

}  // namespace flotilla::agent
