// LeaderLoop (see leader.h).
#include "controller/leader.h"

#include <thread>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/etcd/election.h"
#include "common/etcd/lease.h"
#include "controller/events.h"
#include "controller/reconciler.h"
#include "controller/store/store.h"
#include "fmt/format.h"

namespace flotilla::controller {

std::string electionName() {
  return std::string(kKeyPrefix) + "election";
}

void LeaderLoop::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    leadOnce(stop);
    if (!stop.stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void LeaderLoop::leadOnce(std::stop_token stop) {
  auto lease = etcd_.grantLease(config_.election_ttl);
  if (!lease.ok()) {
    log_.warn("cannot get an election lease: {}", lease.status().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return;
  }
  auto keep_alive = etcd_.keepAlive(*lease);
  etcd::Election election(etcd_, electionName());
  // The campaign ends when this replica stops or its lease is lost.
  std::stop_source campaign;
  std::stop_callback forward(stop, [&] { campaign.request_stop(); });
  std::jthread standby([this](std::stop_token standby_stop) { standBy(standby_stop); });
  std::jthread lease_watch([&](std::stop_token watch_stop) {
    while (!watch_stop.stop_requested()) {
      if (keep_alive->waitLost(absl::Milliseconds(200))) {
        campaign.request_stop();
        return;
      }
    }
  });
  auto leader = election.campaign(lease->id, config_.name, campaign.get_token());
  standby.request_stop();
  standby.join();
  if (!leader.ok()) {
    lease_watch.request_stop();
    lease_watch.join();
    if (!absl::IsCancelled(leader.status())) {
      log_.warn("campaign failed: {}", leader.status().message());
    }
    (void)etcd_.revokeLease(lease->id);
    return;
  }
  lease_watch.request_stop();
  lease_watch.join();
  leading_.store(true);
  log_.info("leading (lease {:x}): reconciling", lease->id);
  EventLog(etcd_, config_.name)
      .record(EventLog::make("controller", config_.name, v1::Event::SEVERITY_INFO, "Leading",
                             fmt::format("replica {} leads", config_.name)));
  {
    Reconciler reconciler(config_, etcd_, agents_, *leader, view_);
    std::jthread worker([&](std::stop_token worker_stop) { reconciler.run(worker_stop); });
    const absl::Duration doubt = config_.election_ttl * 2 / 3;  // one renewal missed
    std::string why;
    while (why.empty()) {
      if (stop.stop_requested()) {
        why = "stopping";
      } else if (keep_alive->waitLost(absl::Milliseconds(100))) {
        why = "its election lease was lost";
      } else if (systemClock().monotonicNow() - keep_alive->lastRenewal() > doubt) {
        why = fmt::format("its election lease was not renewed for {}", absl::FormatDuration(doubt));
      } else if (reconciler.lost()) {
        why = "another replica leads";
      }
    }
    log_.warn("stops leading: {}", why);
    worker.request_stop();
  }
  leading_.store(false);
  if (stop.stop_requested()) {
    if (auto resigned = election.resign(*leader); !resigned.ok()) {
      log_.warn("cannot resign: {}", resigned.message());
    }
  }
  keep_alive.reset();
  (void)etcd_.revokeLease(lease->id);
}

void LeaderLoop::standBy(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (absl::Status current = view_.refresh(absl::Now()); !current.ok()) {
      log_.warn("standby: cannot read the cluster state: {}", current.message());
      // Retry in 500 ms, but let an election that ends meanwhile take over at once.
      for (int i = 0; i < 10 && !stop.stop_requested(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    // Short waits: the campaign's end must not wait for the next change.
    (void)view_.next(absl::Milliseconds(100));
  }
}

}  // namespace flotilla::controller
