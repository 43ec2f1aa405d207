// cluster_bench step 1: placement. Two measurements against one controller and the
// simulated hosts:
// - backlog: VMs waiting to be placed when the leader starts (written to etcd exactly as
//   ClusterService.CreateVm writes them, while no controller runs: what a leader finds after a
//   failover, a mass start, a host's HA VMs); VMs/s from the leader's election until all are
//   placed (VmStatus.host set) and until all are Running. This is the placement rate: the
//   scheduler's decisions, committed to etcd in batches, and the agents' CreateVm calls;
// - API: VMs created through ClusterService.CreateVm(start=true) from several client threads;
//   the rate CreateVm is answered at, and until they are placed and Running.
// The peer, in the same run: etcd itself, writing what a placement needs at the least (the
// VM's record and its status: two puts per VM) from as many client threads.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench/cluster/bench_util.h"
#include "bench/cluster/cluster_steps.h"
#include "common/status.h"
#include "common/thread.h"
#include "controller/store/store.h"
#include "fmt/format.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace flotilla::bench {
namespace {

constexpr char kBaselinePrefix[] = "/bench-baseline/";
constexpr double kTargetRate = 2000;

std::string placementName(int i) {
  return fmt::format("place-{:05d}", i);
}

std::string backlogName(int i) {
  return fmt::format("backlog-{:05d}", i);
}

struct Baseline {
  double rate = 0;  // VMs per second
  double seconds = 0;
  size_t record_bytes = 0;
  size_t status_bytes = 0;
};

// What the controller stores for a VM it placed and started, as nearly as the bench can tell.
std::pair<std::string, std::string> baselineValues(int i) {
  flotilla::v1::VmRecord record;
  record.mutable_meta()->set_name(placementName(i));
  record.mutable_meta()->set_uid(fmt::format("6f1c2a9e-0b7d-4c3e-9a55-{:012d}", i));
  *record.mutable_meta()->mutable_created_at() =
      google::protobuf::util::TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(absl::Now()));
  *record.mutable_spec() = benchVmSpec(i);
  record.set_want_running(true);
  flotilla::v1::VmStatus status;
  status.set_state(flotilla::v1::VM_STATE_RUNNING);
  status.set_host(fmt::format("sim-{:04d}", 1 + i % 1000));
  status.set_generation(1);
  status.set_state_since_unix_ms(absl::ToUnixMillis(absl::Now()));
  return {record.SerializeAsString(), status.SerializeAsString()};
}

// Runs `work(i)` for i in [0, count) on `threads` threads; the first error stops them all.
absl::Status parallelFor(int count, int threads, const std::function<absl::Status(int)>& work) {
  std::atomic<int> next{0};
  absl::Mutex mu;
  absl::Status first;
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.push_back(namedThread("bench-client", [&] {
        for (int i = next++; i < count; i = next++) {
          absl::Status status = work(i);
          if (status.ok()) continue;
          absl::MutexLock lock(&mu);
          if (first.ok()) first = status;
          next = count;  // the others stop too
        }
      }));
    }
  }
  return first;
}

absl::StatusOr<Baseline> runEtcdBaseline(etcd::EtcdClient& etcd, int vms, int clients) {
  Baseline baseline;
  auto [record, status] = baselineValues(0);
  baseline.record_bytes = record.size();
  baseline.status_bytes = status.size();
  const absl::Time start = absl::Now();
  absl::Status written = parallelFor(vms, clients, [&](int i) -> absl::Status {
    auto [vm_record, vm_status] = baselineValues(i);
    RETURN_IF_ERROR(
        etcd.put(fmt::format("{}vms/{}", kBaselinePrefix, placementName(i)), vm_record).status());
    return etcd.put(fmt::format("{}vms-status/{}", kBaselinePrefix, placementName(i)), vm_status)
        .status();
  });
  baseline.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  baseline.rate = vms / baseline.seconds;
  // Removed 100 keys at a time: one delete of 40,000 keys stalls etcd's apply loop for seconds,
  // and with it every lease renewal (the simulated hosts' leases would expire).
  absl::Status removed = parallelFor((vms + 99) / 100, clients, [&](int chunk) -> absl::Status {
    for (const char* kind : {"vms", "vms-status"}) {
      const std::string prefix =
          fmt::format("{}{}/{}", kBaselinePrefix, kind, placementName(chunk * 100).substr(0, 9));
      RETURN_IF_ERROR(etcd.del(prefix, /*prefix=*/true).status());
    }
    return absl::OkStatus();
  });
  RETURN_IF_ERROR(annotate(written, "etcd baseline"));
  RETURN_IF_ERROR(annotate(removed, "removing the etcd baseline's keys"));
  return baseline;
}

// Prints how far the VMs got every few seconds until destroyed.
class Progress {
 public:
  Progress(VmStatusTracker& tracker, int vms)
      : thread_(namedThread("bench-progress", [&tracker, vms](std::stop_token stop) {
          while (!stop.stop_requested()) {
            for (int i = 0; i < 50 && !stop.stop_requested(); ++i) {
              absl::SleepFor(absl::Milliseconds(100));
            }
            if (stop.stop_requested()) return;
            fmt::print(stderr, "cluster_bench:   {} of {} VMs placed, {} Running\n",
                       tracker.placedCount(), vms, tracker.runningCount());
          }
        })) {}

 private:
  std::jthread thread_;
};

// Writes `count` VMs as ClusterService.CreateVm(start=true) stores them (record and pending
// status; without its "Created" event), from `clients` threads.
absl::Status writeBacklog(etcd::EtcdClient& etcd, int count, int clients) {
  return parallelFor(count, clients, [&](int i) -> absl::Status {
    const std::string name = backlogName(i);
    flotilla::v1::VmRecord record;
    record.mutable_meta()->set_name(name);
    record.mutable_meta()->set_uid(fmt::format("{}-{:x}", name, absl::ToUnixNanos(absl::Now())));
    record.mutable_meta()->mutable_created_at()->set_seconds(absl::ToUnixSeconds(absl::Now()));
    *record.mutable_spec() = benchVmSpec(i);
    record.mutable_spec()->set_migration_policy(flotilla::v1::MIGRATION_POLICY_LIVE_OR_COLD);
    record.mutable_spec()->set_cpu_model("host");
    record.set_want_running(true);
    flotilla::v1::VmStatus status;
    status.set_state(flotilla::v1::VM_STATE_PENDING);
    status.set_state_since_unix_ms(absl::ToUnixMillis(absl::Now()));
    status.set_message("waiting for the scheduler");
    etcd::Txn txn;
    txn.ifVersion(controller::vmKey(name), etcd::CompareOp::kEqual, 0);
    txn.thenPut(controller::vmKey(name), controller::encodeValue(record));
    txn.thenPut(controller::vmStatusKey(name), controller::encodeValue(status));
    ASSIGN_OR_RETURN(etcd::TxnResult written, etcd.txn(txn));
    if (!written.succeeded) return absl::AlreadyExistsError(fmt::format("vm {} exists", name));
    return absl::OkStatus();
  });
}

// When the last of `names` was placed and Running, and each one's latency from `since(i)` to
// Running.
struct Completion {
  absl::Time first_placed = absl::InfiniteFuture();
  absl::Time all_placed = absl::InfinitePast();
  absl::Time all_running = absl::InfinitePast();
  std::vector<double> latencies_ms;
};

absl::StatusOr<Completion> completion(const VmStatusTracker& tracker, int count,
                                      const std::function<std::string(int)>& name,
                                      const std::function<absl::Time(int)>& since) {
  Completion done;
  for (int i = 0; i < count; ++i) {
    std::optional<VmStatusTracker::Entry> entry = tracker.get(name(i));
    if (!entry) return absl::NotFoundError(fmt::format("VM {} has no status", name(i)));
    done.first_placed = std::min(done.first_placed, entry->placed);
    done.all_placed = std::max(done.all_placed, entry->placed);
    done.all_running = std::max(done.all_running, entry->running);
    done.latencies_ms.push_back(absl::ToDoubleMilliseconds(entry->running - since(i)));
  }
  return done;
}

// Waits until `total` VMs (every step so far) were placed, then Running.
absl::Status waitPlacedAndRunning(VmStatusTracker& tracker, size_t total, absl::Duration stall) {
  auto describe = [&] {
    return fmt::format("{} of {} VMs placed, {} Running (see the controller's log)",
                       tracker.placedCount(), total, tracker.runningCount());
  };
  RETURN_IF_ERROR(
      tracker.waitFor([total](const auto& view) { return view.placed >= total; }, stall, describe));
  return tracker.waitFor([total](const auto& view) { return view.running >= total; }, stall,
                         describe);
}

ResultRow rateRow(std::string what, double rate, const Baseline& baseline, bool target) {
  return {.step = "placement",
          .what = std::move(what),
          .value = formatRate(rate),
          .peer = formatRate(baseline.rate),
          .ratio = formatRatio(rate / baseline.rate),
          .target = target ? fmt::format(">= {:.0f}/s", kTargetRate) : "-",
          .verdict = target ? (rate >= kTargetRate ? "met" : "MISSED") : ""};
}

// The backlog: VMs written while no controller runs, then ctl-1 started; placed and Running
// counted from its start (its election included: it places as soon as it leads, often before a
// client sees it lead).
absl::Status measureBacklog(BenchCluster& cluster, const ClusterBenchOptions& options,
                            const Baseline& baseline, StepResult& result) {
  ControllerReplicas& controllers = *cluster.controllers;
  // ctl-1 ran once already, so every simulated host is joined; it resigns on SIGTERM.
  RETURN_IF_ERROR(controllers.kill(0, SIGTERM));
  fmt::print(stderr, "cluster_bench: writing {} pending VMs to etcd (no controller runs)...\n",
             options.vms);
  RETURN_IF_ERROR(writeBacklog(*cluster.etcd, options.vms, options.clients));
  fmt::print(stderr, "cluster_bench: starting ctl-1 against the backlog...\n");
  const absl::Time started = absl::Now();
  RETURN_IF_ERROR(controllers.start(0));
  ASSIGN_OR_RETURN(std::string leader, controllers.waitForLeader("", absl::Seconds(60)));
  const absl::Time elected = absl::Now();
  const double cpu_before = controllers.cpuSeconds(0);
  {
    Progress progress(*cluster.tracker, options.vms);
    RETURN_IF_ERROR(
        waitPlacedAndRunning(*cluster.tracker, static_cast<size_t>(options.vms), options.stall));
  }
  ASSIGN_OR_RETURN(Completion done, completion(*cluster.tracker, options.vms, backlogName,
                                               [started](int) { return started; }));
  result.rows.push_back(rateRow(fmt::format("backlog: ctl-1 started -> all {} placed", options.vms),
                                options.vms / absl::ToDoubleSeconds(done.all_placed - started),
                                baseline, true));
  result.rows.push_back(rateRow(
      "backlog: first placement -> last",
      options.vms / absl::ToDoubleSeconds(done.all_placed - done.first_placed), baseline, false));
  result.rows.push_back(
      rateRow(fmt::format("backlog: ctl-1 started -> all {} Running", options.vms),
              options.vms / absl::ToDoubleSeconds(done.all_running - started), baseline, false));
  result.notes.push_back(fmt::format(
      "backlog: {} VMs pending in etcd (as CreateVm writes them) when {} was started; a client "
      "saw it lead {} after its start, its first placement came {} after its start; during "
      "the step: {:.1f} s of CPU, peak RSS {:.0f} MiB",
      options.vms, leader, formatSeconds(absl::ToDoubleSeconds(elected - started)),
      formatSeconds(absl::ToDoubleSeconds(done.first_placed - started)),
      controllers.cpuSeconds(0) - cpu_before, controllers.peakRssMib(0)));
  return absl::OkStatus();
}

// VMs created through ClusterService.CreateVm from `clients` threads, each with its own
// connection, on top of the backlog's.
absl::Status measureApi(BenchCluster& cluster, const ClusterBenchOptions& options,
                        const Baseline& baseline, StepResult& result) {
  ControllerReplicas& controllers = *cluster.controllers;
  std::vector<std::unique_ptr<flotilla::v1::ClusterService::Stub>> stubs;
  for (int t = 0; t < options.clients; ++t) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(flotilla::v1::ClusterService::NewStub(grpc::CreateCustomChannel(
        controllers.address(0), grpc::InsecureChannelCredentials(), args)));
  }
  std::atomic<int> next_stub{0};
  thread_local int my_stub = -1;
  std::vector<absl::Time> created(static_cast<size_t>(options.api_vms));
  fmt::print(stderr, "cluster_bench: creating {} VMs through ClusterService from {} threads...\n",
             options.api_vms, options.clients);
  const double cpu_before = controllers.cpuSeconds(0);
  const absl::Time start = absl::Now();
  absl::Time answered;
  {
    Progress progress(*cluster.tracker, options.vms + options.api_vms);
    RETURN_IF_ERROR(parallelFor(options.api_vms, options.clients, [&](int i) {
      if (my_stub < 0) my_stub = next_stub++;
      created[static_cast<size_t>(i)] = absl::Now();
      return createVm(*stubs[static_cast<size_t>(my_stub)], placementName(i), benchVmSpec(i));
    }));
    answered = absl::Now();
    RETURN_IF_ERROR(waitPlacedAndRunning(
        *cluster.tracker, static_cast<size_t>(options.vms + options.api_vms), options.stall));
  }
  ASSIGN_OR_RETURN(Completion done,
                   completion(*cluster.tracker, options.api_vms, placementName,
                              [&created](int i) { return created[static_cast<size_t>(i)]; }));
  result.rows.push_back(rateRow(fmt::format("API: {} CreateVm calls answered", options.api_vms),
                                options.api_vms / absl::ToDoubleSeconds(answered - start), baseline,
                                false));
  result.rows.push_back(rateRow("API: first create -> all placed",
                                options.api_vms / absl::ToDoubleSeconds(done.all_placed - start),
                                baseline, false));
  result.rows.push_back(rateRow("API: first create -> all Running",
                                options.api_vms / absl::ToDoubleSeconds(done.all_running - start),
                                baseline, false));
  result.rows.push_back(
      {.step = "placement",
       .what = "API: create -> Running per VM: median / p99",
       .value = fmt::format("{} / {}", formatMs(percentile(done.latencies_ms, 50)),
                            formatMs(percentile(done.latencies_ms, 99))),
       .peer = "-",
       .ratio = "-",
       .target = "-",
       .verdict = ""});
  result.notes.push_back(fmt::format(
      "API: {} VMs created by {} client threads, each with its own connection to ctl-1, with "
      "{} VMs already there; ctl-1 during it: {:.1f} s of CPU ({:.0f}% of a core)",
      options.api_vms, options.clients, options.vms, controllers.cpuSeconds(0) - cpu_before,
      100 * (controllers.cpuSeconds(0) - cpu_before) /
          absl::ToDoubleSeconds(done.all_running - start)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StepResult> runPlacementStep(BenchCluster& cluster,
                                            const ClusterBenchOptions& options) {
  StepResult result;
  fmt::print(stderr, "cluster_bench: etcd baseline, {} VMs (2 puts each) from {} threads...\n",
             options.vms, options.clients);
  ASSIGN_OR_RETURN(Baseline baseline, runEtcdBaseline(*cluster.etcd, options.vms, options.clients));
  result.notes.push_back(fmt::format(
      "etcd baseline: per VM a {}-byte VmRecord and a {}-byte VmStatus put from {} threads on one "
      "client (3 members): {} VMs in {}",
      baseline.record_bytes, baseline.status_bytes, options.clients, options.vms,
      formatSeconds(baseline.seconds)));
  if (cluster.controllers == nullptr) {
    result.rows.push_back({.step = "placement",
                           .what = "etcd baseline: 2 puts per VM",
                           .value = formatRate(baseline.rate),
                           .peer = "-",
                           .ratio = "-",
                           .target = "-",
                           .verdict = ""});
    result.notes.push_back("without the controller (--without-controller): no placement figures");
    return result;
  }
  ControllerReplicas& controllers = *cluster.controllers;
  RETURN_IF_ERROR(controllers.start(0));
  ASSIGN_OR_RETURN(std::string leader, controllers.waitForLeader("", absl::Seconds(60)));
  if (controllers.indexOf(leader) != 0) {
    return absl::FailedPreconditionError(
        fmt::format("the leader is '{}', not the ctl-1 this bench started", leader));
  }
  RETURN_IF_ERROR(waitForHosts(controllers.client(0), options.hosts, absl::Seconds(120)));
  RETURN_IF_ERROR(measureBacklog(cluster, options, baseline, result));
  RETURN_IF_ERROR(measureApi(cluster, options, baseline, result));
  result.notes.push_back(fmt::format(
      "placement: {} simulated hosts (16 CPUs, 64 GiB each); VMs of 1-2 vCPUs, 512 MiB-2 GiB",
      options.hosts));
  return result;
}

}  // namespace flotilla::bench
