// The agent's host record in etcd and its self-fencing (see host_reporter.h).
#include "node-agent/host_reporter.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"

namespace flotilla::agent {
namespace {

// This boot's id (/proc/sys/kernel/random/boot_id); empty when unreadable.
std::string bootId() {
  auto id = readFileToString("/proc/sys/kernel/random/boot_id", 4096);
  return id.ok() ? std::string(absl::StripAsciiWhitespace(*id)) : "";
}

}  // namespace

HostReporter::HostReporter(etcd::EtcdClient& etcd, VmManager& vms, StatusSource source,
                           HostReporterOptions options)
    : etcd_(etcd),
      vms_(vms),
      source_(std::move(source)),
      options_(std::move(options)),
      log_(Logger("agent.report").with("host", options_.host)),
      initial_renewal_(systemClock().monotonicNow()) {
  // The previous agent process's last renewal, when it was in this boot: CLOCK_MONOTONIC
  // values are comparable across processes of one boot only.
  if (options_.renewal_file.empty()) return;
  auto saved = readFileToString(options_.renewal_file, 4096);
  if (!saved.ok()) return;
  std::vector<std::string> fields = absl::StrSplit(*saved, ' ', absl::SkipWhitespace());
  int64_t nanoseconds = 0;
  if (fields.size() == 2 && fields[0] == bootId() && absl::SimpleAtoi(fields[1], &nanoseconds)) {
    initial_renewal_ = std::min(initial_renewal_, absl::Nanoseconds(nanoseconds));
    log_.info("the previous agent's lease was last renewed {} ago",
              absl::FormatDuration(systemClock().monotonicNow() - initial_renewal_));
  }
}

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
  const absl::Duration last = keepalive_ == nullptr ? initial_renewal_ : keepalive_->lastRenewal();
  return systemClock().monotonicNow() - last;
}

void HostReporter::saveRenewal() {
  if (options_.renewal_file.empty()) return;
  absl::Duration last;
  {
    absl::MutexLock lock(&mu_);
    if (keepalive_ == nullptr) return;
    last = keepalive_->lastRenewal();
    if (last == saved_renewal_) return;
    saved_renewal_ = last;
  }
  absl::Status saved = writeFileAtomically(
      options_.renewal_file, fmt::format("{} {}\n", bootId(), absl::ToInt64Nanoseconds(last)));
  if (!saved.ok()) log_.warn("cannot save the lease's renewal time: {}", saved.message());
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
    if (keepalive_ != nullptr)
      log_.warn("lease {} was lost; now holding lease {}", keepalive_->id(), lease.id);
    keepalive_ = std::move(keepalive);
    status.set_lease_id(static_cast<uint64_t>(lease.id));
    current_ = status;
  }
  std::string value;
  status.SerializeToString(&value);
  ASSIGN_OR_RETURN(int64_t revision,
                   etcd_.put(statusKey(), value, static_cast<int64_t>(status.lease_id())));
  (void)revision;
  saveRenewal();
  return absl::OkStatus();
}

void HostReporter::reportLoop() {
  LogRateLimiter limiter(systemClock(), 3, absl::Minutes(1));
  do {
    absl::Status status = reportOnce();
    if (!status.ok()) {
      log_.limited(limiter, LogLevel::kWarn, "cannot report the host's status to etcd: {}",
                   status.message());
    }
  } while (!stopping_.WaitForNotificationWithTimeout(options_.report_interval));
}

void HostReporter::fenceLoop() {
  while (!stopping_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const absl::Duration since = sinceRenewal();
    if (since < options_.fence_after) {
      // Renewed (again): a later outage fences again.
      absl::MutexLock lock(&mu_);
      fenced_ = false;
      continue;
    }
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
