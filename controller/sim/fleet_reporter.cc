// Every simulated host's lease-bound status in etcd (see fleet_reporter.h).
#include "controller/sim/fleet_reporter.h"

#include <algorithm>

#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"

namespace flotilla::sim {

absl::StatusOr<std::unique_ptr<FleetReporter>> FleetReporter::start(SimFleet& fleet) {
  const SimulatorOptions& options = fleet.options();
  etcd::ClientOptions client_options;
  client_options.endpoints = options.etcd_endpoints;
  ASSIGN_OR_RETURN(std::unique_ptr<etcd::EtcdClient> client,
                   etcd::EtcdClient::connect(client_options));
  std::unique_ptr<FleetReporter> reporter(new FleetReporter(fleet, std::move(client)));
  LeaseKeeperOptions keeper;
  keeper.endpoints = reporter->etcd_->endpoints();
  keeper.interval = std::max(options.lease_ttl / 3, absl::Milliseconds(100));
  keeper.answer_timeout = std::min(keeper.interval, absl::Seconds(2));
  // About 125 leases per stream, at most 8 streams.
  keeper.streams = std::clamp((options.hosts + 124) / 125, 1, 8);
  keeper.on_lost = [raw = reporter.get()](int64_t lease) { raw->onLeaseLost(lease); };
  ASSIGN_OR_RETURN(reporter->keeper_, LeaseKeeper::start(std::move(keeper)));

  // Every host is in etcd before start() returns.
  RETURN_IF_ERROR(
      reporter->forEachSlot("registering", [&](Slot& slot) { return reporter->report(slot); }));
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&reporter->schedule_mu_);
    for (size_t i = 0; i < reporter->slots_.size(); ++i) {
      reporter->schedule_.push(Due{now + reporter->slots_[i]->phase, i});
    }
  }
  for (int i = 0; i < options.report_threads; ++i) {
    reporter->threads_.emplace_back([raw = reporter.get()] {
      setCurrentThreadName("sim-report");
      raw->reportLoop();
    });
  }
  return reporter;
}

FleetReporter::FleetReporter(SimFleet& fleet, std::unique_ptr<etcd::EtcdClient> etcd)
    : fleet_(fleet),
      options_(fleet.options()),
      etcd_(std::move(etcd)),
      log_("sim.report"),
      failure_limiter_(systemClock(), 5, absl::Minutes(1)) {
  for (const auto& host : fleet_.hosts()) {
    auto slot = std::make_unique<Slot>();
    slot->host = host.get();
    slot->phase = options_.report_interval * stableFraction(host->name() + "/report");
    by_name_.emplace(host->name(), slot.get());
    slots_.push_back(std::move(slot));
  }
}

FleetReporter::~FleetReporter() {
  (void)stop(false);
}

std::string FleetReporter::statusKey(std::string_view host) const {
  return fmt::format("{}hosts-status/{}", options_.key_prefix, host);
}

absl::StatusOr<FleetReporter::Slot*> FleetReporter::slotOf(std::string_view host) {
  auto it = by_name_.find(host);
  if (it == by_name_.end()) {
    return absl::NotFoundError(
        fmt::format("host '{}' is not simulated here ({})", host, fleet_.describeHosts()));
  }
  return it->second;
}

absl::Status FleetReporter::forEachSlot(std::string_view what,
                                        const std::function<absl::Status(Slot&)>& work) {
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first;
  {
    std::vector<std::jthread> workers;
    for (int i = 0; i < options_.report_threads; ++i) {
      workers.push_back(namedThread("sim-report", [&] {
        for (size_t index = next++; index < slots_.size(); index = next++) {
          absl::Status status = work(*slots_[index]);
          if (status.ok()) continue;
          // The first failure stops the rest: with etcd unreachable, each host would wait out
          // the client's request timeout in turn.
          next = slots_.size();
          absl::MutexLock lock(&mu);
          if (first.ok()) first = status;
        }
      }));
    }
  }
  return annotate(first, fmt::format("{} {} simulated hosts stopped at the first failure", what,
                                     slots_.size()));
}

absl::Status FleetReporter::report(Slot& slot) {
  absl::MutexLock lock(&slot.mu);
  return reportLocked(slot);
}

absl::Status FleetReporter::reportLocked(Slot& slot) {
  if (slot.down) return absl::OkStatus();
  if (keeper_ == nullptr) {
    return absl::FailedPreconditionError(
        "the simulator's reporter was stopped: nothing is reported");
  }
  const std::string& name = slot.host->name();
  for (int attempt = 0;; ++attempt) {
    if (slot.lease == 0 || slot.lost.exchange(false)) {
      dropLeaseLocked(slot);
      absl::StatusOr<etcd::Lease> lease = etcd_->grantLease(options_.lease_ttl);
      if (!lease.ok()) {
        failures_++;
        return annotate(lease.status(), fmt::format("host '{}': granting its lease", name));
      }
      grants_++;
      slot.lease = lease->id;
      slot.host->setLeaseId(lease->id);
      {
        absl::MutexLock lock(&leases_mu_);
        by_lease_[lease->id] = &slot;
      }
      keeper_->add(lease->id);
    }
    std::string value;
    slot.host->status().SerializeToString(&value);
    absl::StatusOr<int64_t> put = etcd_->put(statusKey(name), value, slot.lease);
    if (put.ok()) {
      reports_++;
      return absl::OkStatus();
    }
    // etcd refuses a put bound to a lease it no longer has: take a new one, once.
    if (absl::IsNotFound(put.status()) && attempt == 0) {
      slot.lost = true;
      continue;
    }
    failures_++;
    return annotate(put.status(), fmt::format("host '{}': writing its status", name));
  }
}

void FleetReporter::dropLeaseLocked(Slot& slot) {
  if (slot.lease == 0) return;
  if (keeper_ != nullptr) keeper_->remove(slot.lease);
  {
    absl::MutexLock lock(&leases_mu_);
    by_lease_.erase(slot.lease);
  }
  slot.lease = 0;
  slot.host->setLeaseId(0);
}

void FleetReporter::onLeaseLost(int64_t lease) {
  absl::MutexLock lock(&leases_mu_);
  auto it = by_lease_.find(lease);
  if (it != by_lease_.end()) it->second->lost = true;
}

void FleetReporter::reportLoop() {
  while (true) {
    Due due;
    {
      absl::MutexLock lock(&schedule_mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(schedule_mu_) {
        return stopping_ || (!schedule_.empty() && schedule_.top().at <= absl::Now());
      };
      while (!ready()) {
        const absl::Time wake =
            schedule_.empty() ? absl::Now() + absl::Seconds(1) : schedule_.top().at;
        schedule_mu_.AwaitWithDeadline(absl::Condition(&stopping_), wake);
      }
      if (stopping_) return;
      due = schedule_.top();
      schedule_.pop();
    }
    Slot& slot = *slots_[due.slot];
    absl::Status status = report(slot);
    if (!status.ok()) {
      log_.limited(failure_limiter_, LogLevel::kWarn, "{}", status.message());
    }
    // The next report at the host's phase; a report that fell behind skips the missed ones.
    absl::Time next = due.at + options_.report_interval;
    const absl::Time now = absl::Now();
    while (next <= now) next += options_.report_interval;
    absl::MutexLock lock(&schedule_mu_);
    schedule_.push(Due{next, due.slot});
  }
}

absl::Status FleetReporter::stop(bool revoke) {
  {
    absl::MutexLock lock(&schedule_mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  keeper_.reset();
  if (!revoke) return absl::OkStatus();
  absl::Status revoked_all = forEachSlot("revoking the leases of", [&](Slot& slot) {
    absl::MutexLock lock(&slot.mu);
    slot.down = true;
    const int64_t lease = slot.lease;
    slot.lease = 0;
    slot.host->setLeaseId(0);
    if (lease == 0) return absl::OkStatus();
    absl::Status revoked = etcd_->revokeLease(lease);
    return absl::IsNotFound(revoked) ? absl::OkStatus() : revoked;
  });
  return annotate(revoked_all, "the leases not revoked expire after their TTL");
}

absl::Status FleetReporter::hostDown(std::string_view host, bool revoke) {
  ASSIGN_OR_RETURN(Slot * slot, slotOf(host));
  absl::MutexLock lock(&slot->mu);
  slot->down = true;
  const int64_t lease = slot->lease;
  if (lease == 0) return absl::OkStatus();
  dropLeaseLocked(*slot);
  if (!revoke) return absl::OkStatus();
  absl::Status revoked = etcd_->revokeLease(lease);
  if (absl::IsNotFound(revoked)) return absl::OkStatus();
  return annotate(revoked, fmt::format("host '{}': revoking its lease", host));
}

absl::Status FleetReporter::hostUp(std::string_view host) {
  ASSIGN_OR_RETURN(Slot * slot, slotOf(host));
  absl::MutexLock lock(&slot->mu);
  slot->down = false;
  return reportLocked(*slot);
}

absl::Status FleetReporter::reportNow(std::string_view host) {
  ASSIGN_OR_RETURN(Slot * slot, slotOf(host));
  return report(*slot);
}

int64_t FleetReporter::leaseOf(std::string_view host) {
  absl::StatusOr<Slot*> slot = slotOf(host);
  if (!slot.ok()) return 0;
  absl::MutexLock lock(&(*slot)->mu);
  return (*slot)->lease;
}

FleetReporter::Stats FleetReporter::stats() const {
  Stats stats;
  stats.reports = reports_.load();
  stats.failures = failures_.load();
  stats.grants = grants_.load();
  if (keeper_ != nullptr) stats.leases = keeper_->stats();
  return stats;
}

}  // namespace flotilla::sim
