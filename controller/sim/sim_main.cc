// flotilla-agent-sim: the agent simulator as a program (see sim_main.h, docs/simulator.md).
#include "controller/sim/sim_main.h"

#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "common/log.h"
#include "common/status.h"
#include "common/text.h"
#include "common/units.h"
#include "controller/sim/simulator.h"
#include "fmt/format.h"

namespace flotilla::sim {
namespace {

int fail(const absl::Status& status, int code) {
  std::fprintf(stderr, "flotilla-agent-sim: %s\n", std::string(status.message()).c_str());
  return code;
}

// "a,b,c" → {a, b, c}; "" → {}.
std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> items;
  if (text.empty()) return items;
  for (std::string_view item : splitText(text, ',')) {
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

absl::Status parseDurationFlag(const std::string& flag, const std::string& text,
                               absl::Duration& out) {
  absl::StatusOr<absl::Duration> parsed = parseDuration(text);
  if (!parsed.ok()) return annotate(parsed.status(), flag);
  out = *parsed;
  return absl::OkStatus();
}

}  // namespace

int runSimulatorMain(int argc, const char* const* argv) {
  CLI::App app(
      "flotilla-agent-sim: simulates many flotilla-agents in one process (one AgentService "
      "address for all hosts, each host's status in etcd under a lease of its own), so that "
      "flotilla-controller can be run against 1000 hosts (docs/simulator.md).");
  SimulatorOptions options;
  std::string etcd;
  std::string shapes = "16:64G";
  std::string cpu_models = fmt::format("{}", fmt::join(options.cpu_models, ","));
  std::string pools = "shared";
  std::string networks;
  std::string report_interval = "3s";
  std::string lease_ttl = "10s";
  std::string migration_duration = "200ms";
  std::string log_level = "info";
  app.add_option("--etcd", etcd, "etcd members, comma-separated host:port")->required();
  app.add_option("--hosts", options.hosts, "number of simulated hosts")->capture_default_str();
  app.add_option("--listen", options.listen,
                 "AgentService address of every host (port 0: a free port, printed)")
      ->capture_default_str();
  app.add_option("--prefix", options.prefix, "host names are PREFIX-0001, PREFIX-0002, ...")
      ->capture_default_str();
  app.add_option("--first-index", options.first_index, "number of the first host")
      ->capture_default_str();
  app.add_option("--host-shapes", shapes,
                 "CPUS:MEMORY of the hosts, cycled through: 16:64G,32:128G")
      ->capture_default_str();
  app.add_option("--cpu-models", cpu_models, "VMM CPU models every host can run")
      ->capture_default_str();
  app.add_option("--pools", pools, "storage pools every host reaches")->capture_default_str();
  app.add_option("--networks", networks, "networks every host reports (besides its VMs')");
  app.add_option("--report-interval", report_interval, "how often each host writes its status")
      ->capture_default_str();
  app.add_option("--lease-ttl", lease_ttl, "TTL of each host's etcd lease")->capture_default_str();
  app.add_option("--migration-duration", migration_duration,
                 "how long a simulated live migration takes")
      ->capture_default_str();
  app.add_option("--vm-cpu-min", options.vm_cpu_min, "least share of its vCPUs a VM uses")
      ->capture_default_str();
  app.add_option("--vm-cpu-max", options.vm_cpu_max, "largest share of its vCPUs a VM uses")
      ->capture_default_str();
  app.add_option("--report-threads", options.report_threads, "threads writing to etcd")
      ->capture_default_str();
  app.add_option("--key-prefix", options.key_prefix, "etcd key prefix of the cluster state")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  options.etcd_endpoints = splitList(etcd);
  if (options.etcd_endpoints.empty()) {
    return fail(absl::InvalidArgumentError("--etcd: give at least one etcd member (host:port)"), 2);
  }
  absl::StatusOr<std::vector<HostShape>> parsed_shapes = parseHostShapes(shapes);
  if (!parsed_shapes.ok()) return fail(annotate(parsed_shapes.status(), "--host-shapes"), 2);
  options.shapes = std::move(*parsed_shapes);
  options.cpu_models = splitList(cpu_models);
  options.pools = splitList(pools);
  options.networks = splitList(networks);
  for (absl::Status status :
       {parseDurationFlag("--report-interval", report_interval, options.report_interval),
        parseDurationFlag("--lease-ttl", lease_ttl, options.lease_ttl),
        parseDurationFlag("--migration-duration", migration_duration,
                          options.migration_duration)}) {
    if (!status.ok()) return fail(status, 2);
  }
  if (absl::Status valid = validateOptions(options); !valid.ok()) return fail(valid, 2);
  absl::StatusOr<LogLevel> level = parseLogLevel(log_level);
  if (!level.ok()) return fail(annotate(level.status(), "--log-level"), 2);
  if (absl::Status logging = initLogging({.level = *level, .file = ""}); !logging.ok()) {
    return fail(logging, 2);
  }
  const Logger log("sim");

  // Termination signals go to this thread alone (sigwait below), never to gRPC or reporters.
  sigset_t termination;
  sigemptyset(&termination);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&termination, sig);
  pthread_sigmask(SIG_BLOCK, &termination, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const int hosts = options.hosts;
  absl::StatusOr<std::unique_ptr<Simulator>> sim = Simulator::start(std::move(options));
  if (!sim.ok()) return fail(sim.status(), 1);
  std::vector<std::string> names = (*sim)->hostNames();
  std::printf("listening on %s\n", (*sim)->address().c_str());
  std::fflush(stdout);
  log.info("serving AgentService for {} hosts ({} to {}) on {}; their status is in etcd", hosts,
           names.front(), names.back(), (*sim)->address());

  int sig = 0;
  sigwait(&termination, &sig);
  log.info("received signal {} ({}): revoking the hosts' leases and stopping", sig,
           sigabbrev_np(sig));
  const SimulatorStats stats = (*sim)->stats();
  absl::Status stopped = (*sim)->shutdown(/*revoke_leases=*/true);
  log.info("{} agent calls answered, {} status reports, {} leases granted, {} renewals",
           stats.agent_calls, stats.etcd.reports, stats.etcd.grants, stats.etcd.leases.renewals);
  flushLogs();
  if (!stopped.ok()) return fail(stopped, 1);
  return 0;
}

}  // namespace flotilla::sim
