// cluster_bench steps 2 and 3: leader failover among 3 controller replicas (kill -9 of the
// leader: time to a new leader, and to a VM created after the kill being placed), and HA (a
// simulated host with HA VMs killed: time until they run on other hosts). The floors printed
// next to them are what the design cannot beat: the election lease (a killed leader's lease
// must expire first), and the host lease plus the fencing timeout.
#include <algorithm>
#include <thread>
#include <vector>

#include "bench/cluster/bench_util.h"
#include "bench/cluster/cluster_steps.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {
namespace {

constexpr double kFailoverTargetSeconds = 2;
constexpr double kHaTargetSeconds = 15;
constexpr char kHaLabel[] = "flotilla-bench-ha";

double secondsSince(absl::Time start, absl::Time end) {
  return absl::ToDoubleSeconds(end - start);
}

std::string medianAndMax(const std::vector<double>& values) {
  return fmt::format("{} / {}", formatSeconds(percentile(values, 50)),
                     formatSeconds(percentile(values, 100)));
}

// Every replica running, and a leader among them.
absl::StatusOr<std::string> startReplicas(ControllerReplicas& controllers, int count) {
  for (int i = 0; i < count; ++i) RETURN_IF_ERROR(controllers.start(i));
  return controllers.waitForLeader("", absl::Seconds(60));
}

// The first running replica other than `not_this`.
int survivor(const ControllerReplicas& controllers, int not_this) {
  for (int i = 0; i < controllers.size(); ++i) {
    if (i != not_this && controllers.running(i)) return i;
  }
  return -1;
}

absl::Status waitRunning(VmStatusTracker& tracker, const std::vector<std::string>& vms,
                         const std::function<bool(const std::string& host)>& host_ok,
                         absl::Duration stall) {
  auto done = [&](const VmStatusTracker::View& view) {
    for (const std::string& vm : vms) {
      auto it = view.entries.find(vm);
      if (it == view.entries.end()) return false;
      const flotilla::v1::VmStatus& status = it->second.status;
      if (status.state() != flotilla::v1::VM_STATE_RUNNING || !host_ok(status.host())) {
        return false;
      }
    }
    return true;
  };
  auto describe = [&] {
    std::string states;
    for (const std::string& vm : vms) {
      std::optional<VmStatusTracker::Entry> entry = tracker.get(vm);
      states += entry ? fmt::format(" {}: {} on '{}' ({});", vm,
                                    flotilla::v1::VmState_Name(entry->status.state()),
                                    entry->status.host(), entry->status.message())
                      : fmt::format(" {}: no status;", vm);
    }
    return "the VMs are" + states;
  };
  return tracker.waitFor(done, stall, describe);
}

// "Leading" events the replicas recorded since `since_ms`.
absl::StatusOr<int> countLeadingEvents(ControllerReplicas& controllers, int64_t since_ms) {
  const int asker = survivor(controllers, -1);
  if (asker < 0) return absl::FailedPreconditionError("no controller replica runs");
  int count = 0;
  for (int i = 0; i < controllers.size(); ++i) {
    flotilla::v1::ListEventsRequest request;
    request.set_object(controllers.name(i));
    request.set_limit(1000);
    flotilla::v1::ListEventsResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::Status status = controllers.client(asker).ListEvents(&context, request, &response);
    if (!status.ok()) {
      return absl::UnavailableError(
          fmt::format("ListEvents of {}: {}", controllers.name(i), status.error_message()));
    }
    for (const flotilla::v1::Event& event : response.events()) {
      if (event.reason() == "Leading" && event.unix_ms() >= since_ms) ++count;
    }
  }
  return count;
}

}  // namespace

absl::StatusOr<StepResult> runFailoverStep(BenchCluster& cluster,
                                           const ClusterBenchOptions& options) {
  StepResult result;
  ControllerReplicas& controllers = *cluster.controllers;
  ASSIGN_OR_RETURN(std::string leader, startReplicas(controllers, 3));
  int64_t first_kill_ms = 0;
  RETURN_IF_ERROR(waitForHosts(controllers.client(0), options.hosts, absl::Seconds(120)));
  std::vector<double> to_leader;
  std::vector<double> to_placed;
  std::vector<double> to_running;
  for (int round = 0; round < options.failover_rounds; ++round) {
    ASSIGN_OR_RETURN(leader, controllers.waitForLeader("", absl::Seconds(60)));
    const int victim = controllers.indexOf(leader);
    if (victim < 0) {
      return absl::FailedPreconditionError(
          fmt::format("the leader is '{}', a replica this bench did not start", leader));
    }
    const int other = survivor(controllers, victim);
    fmt::print(stderr, "cluster_bench: failover round {}: kill -9 {} (pid {})...\n", round + 1,
               leader, controllers.pid(victim));
    const std::string vm =
        fmt::format("failover-{}-{}", round + 1, absl::ToUnixMillis(absl::Now()));
    const absl::Time killed = absl::Now();
    if (round == 0) first_kill_ms = absl::ToUnixMillis(killed);
    RETURN_IF_ERROR(controllers.kill(victim));
    // A change made right after the kill: any replica accepts it; only a leader places it.
    RETURN_IF_ERROR(createVm(controllers.client(other), vm, benchVmSpec(round)));
    ASSIGN_OR_RETURN(std::string new_leader, controllers.waitForLeader(leader, absl::Seconds(60)));
    const absl::Time elected = absl::Now();
    RETURN_IF_ERROR(waitRunning(
        *cluster.tracker, {vm}, [](const std::string& host) { return !host.empty(); },
        options.stall));
    std::optional<VmStatusTracker::Entry> entry = cluster.tracker->get(vm);
    to_leader.push_back(secondsSince(killed, elected));
    to_placed.push_back(secondsSince(killed, entry->placed));
    to_running.push_back(secondsSince(killed, entry->running));
    fmt::print(stderr,
               "cluster_bench:   new leader {} after {}, {} placed after {}, Running after {}\n",
               new_leader, formatSeconds(to_leader.back()), vm, formatSeconds(to_placed.back()),
               formatSeconds(to_running.back()));
    RETURN_IF_ERROR(controllers.restart(victim));
  }
  // A killed leader's election lease expires about one TTL after its last renewal (etcd checks
  // expiries every 500 ms).
  const std::string floor =
      fmt::format("TTL {}", formatSeconds(absl::ToDoubleSeconds(options.election_ttl)));
  result.rows.push_back({.step = "failover",
                         .what = "kill -9 leader -> new leader (median / max)",
                         .value = medianAndMax(to_leader),
                         .peer = floor,
                         .ratio = "-",
                         .target = "-",
                         .verdict = ""});
  const double worst = percentile(to_placed, 100);
  result.rows.push_back({.step = "failover",
                         .what = "kill -9 leader -> new VM placed (median / max)",
                         .value = medianAndMax(to_placed),
                         .peer = floor,
                         .ratio = "-",
                         .target = fmt::format("<= {:.0f} s", kFailoverTargetSeconds),
                         .verdict = worst <= kFailoverTargetSeconds ? "met" : "MISSED"});
  result.rows.push_back({.step = "failover",
                         .what = "kill -9 leader -> new VM Running (median / max)",
                         .value = medianAndMax(to_running),
                         .peer = floor,
                         .ratio = "-",
                         .target = "-",
                         .verdict = ""});
  result.notes.push_back(fmt::format(
      "failover: 3 replicas, election_ttl {}; {} round(s), each killing the leader with SIGKILL, "
      "creating a VM through a surviving replica at once, and restarting the killed one; the "
      "floor is the election lease, which a killed leader cannot give up",
      absl::FormatDuration(options.election_ttl), options.failover_rounds));
  // A short election lease must not cost leaderships nobody killed: from the first kill on,
  // every "Leading" event should follow a kill.
  ASSIGN_OR_RETURN(int elections, countLeadingEvents(controllers, first_kill_ms));
  result.notes.push_back(
      fmt::format("failover: {} elections from the first kill on, {} kills: {}", elections,
                  options.failover_rounds,
                  elections > options.failover_rounds   ? "LEADERSHIP WAS ALSO LOST WITHOUT A KILL"
                  : elections < options.failover_rounds ? "fewer than the kills (events trimmed?)"
                                                        : "no leadership was lost otherwise"));
  return result;
}

absl::StatusOr<StepResult> runHaStep(BenchCluster& cluster, const ClusterBenchOptions& options) {
  StepResult result;
  ControllerReplicas& controllers = *cluster.controllers;
  if (survivor(controllers, -1) < 0) RETURN_IF_ERROR(controllers.start(0));
  ASSIGN_OR_RETURN(std::string leader, controllers.waitForLeader("", absl::Seconds(60)));
  flotilla::v1::ClusterService::Stub& api = controllers.client(survivor(controllers, -1));
  RETURN_IF_ERROR(waitForHosts(api, options.hosts, absl::Seconds(120)));

  // The HA VMs all go to one host: only it carries the label they require. Then a few others
  // get the label, so that they have somewhere to go.
  const std::vector<std::string> hosts = cluster.sim->hostNames();
  const std::string victim = hosts[hosts.size() / 2];
  const std::string round = std::to_string(absl::ToUnixMillis(absl::Now()));
  RETURN_IF_ERROR(setHostLabels(api, victim, {{kHaLabel, round}}));
  std::vector<std::string> vms;
  fmt::print(stderr, "cluster_bench: HA: {} HA VMs on {}...\n", options.ha_vms, victim);
  for (int i = 0; i < options.ha_vms; ++i) {
    vms.push_back(fmt::format("ha-{}-{}", round, i));
    flotilla::v1::VmSpec spec = benchVmSpec(i);
    spec.set_memory_bytes(uint64_t{512} << 20);
    spec.set_ha(true);
    RETURN_IF_ERROR(createVm(api, vms.back(), spec, {{kHaLabel, round}}));
  }
  RETURN_IF_ERROR(waitRunning(
      *cluster.tracker, vms, [&](const std::string& host) { return host == victim; },
      options.stall));
  const int spares = std::min<int>(5, static_cast<int>(hosts.size()) - 1);
  for (int i = 1; i <= spares; ++i) {
    RETURN_IF_ERROR(setHostLabels(api,
                                  hosts[(hosts.size() / 2 + static_cast<size_t>(i)) % hosts.size()],
                                  {{kHaLabel, round}}));
  }

  fmt::print(stderr, "cluster_bench: HA: killing simulated host {}...\n", victim);
  const absl::Time killed = absl::Now();
  RETURN_IF_ERROR(cluster.sim->killHost(victim));
  // When its lease expired (its status key left etcd), watched alongside.
  absl::Time expired = absl::InfiniteFuture();
  std::jthread expiry_watch([&](std::stop_token stop) {
    const std::string key = cluster.sim->statusKey(victim);
    while (!stop.stop_requested()) {
      auto range = cluster.etcd->get(key, {.count_only = true});
      if (range.ok() && range->count == 0) {
        expired = absl::Now();
        return;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
  RETURN_IF_ERROR(waitRunning(
      *cluster.tracker, vms,
      [&](const std::string& host) { return !host.empty() && host != victim; }, options.stall));
  // The wait wakes on every status change: now is when the last one ran elsewhere.
  const absl::Time all_running = absl::Now();
  expiry_watch.request_stop();
  expiry_watch.join();
  const double total = secondsSince(killed, all_running);
  const bool saw_expiry = expired != absl::InfiniteFuture();
  const double expiry = saw_expiry ? secondsSince(killed, expired) : 0;
  result.rows.push_back(
      {.step = "ha",
       .what = "host killed -> its lease expired (key gone)",
       .value = saw_expiry ? formatSeconds(expiry) : "-",
       .peer = fmt::format("TTL {}", formatSeconds(absl::ToDoubleSeconds(options.host_lease_ttl))),
       .ratio = "-",
       .target = "-",
       .verdict = ""});
  // The controller restarts HA VMs only once the fencing timeout after the expiry has passed.
  const double fence = absl::ToDoubleSeconds(options.host_fence_timeout);
  result.rows.push_back(
      {.step = "ha",
       .what = fmt::format("host killed -> its {} HA VMs Running elsewhere", options.ha_vms),
       .value = formatSeconds(total),
       .peer = saw_expiry ? fmt::format("{} (expiry+fence)", formatSeconds(expiry + fence)) : "-",
       .ratio = "-",
       .target = fmt::format("<= {:.0f} s", kHaTargetSeconds),
       .verdict = total <= kHaTargetSeconds ? "met" : "MISSED"});
  result.notes.push_back(fmt::format(
      "HA: {} HA VMs (512 MiB) on {}, host lease TTL {} (renewed every third of it, so it "
      "expires 2/3 to 1 TTL after the kill, plus etcd's 500 ms expiry check), "
      "host_fence_timeout {}; the floor is the expiry plus the fencing timeout the controller "
      "must wait out",
      options.ha_vms, victim, absl::FormatDuration(options.host_lease_ttl),
      absl::FormatDuration(options.host_fence_timeout)));
  return result;
}

std::string formatResults(const std::vector<ResultRow>& rows) {
  size_t what = 11;
  for (const ResultRow& row : rows) what = std::max(what, row.what.size());
  std::string out =
      fmt::format("{:<10} {:<{}} {:>20} {:>20} {:>7} {:>10} {}\n", "step", "measurement", what,
                  "flotilla", "peer / floor", "ratio", "target", "");
  for (const ResultRow& row : rows) {
    out += fmt::format("{:<10} {:<{}} {:>20} {:>20} {:>7} {:>10} {}\n", row.step, row.what, what,
                       row.value, row.peer, row.ratio, row.target, row.verdict);
  }
  return out;
}

}  // namespace flotilla::bench
