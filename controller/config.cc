// flotilla-controller's configuration (see config.h).
#include "controller/config.h"

#include <unistd.h>

#include "common/config.h"
#include "common/files.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

void readTls(ConfigNode node, TlsFiles& tls) {
  node.optional("ca", tls.ca_file);
  node.optional("cert", tls.cert_file);
  node.optional("key", tls.key_file);
}

std::string hostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

bool complete(const TlsFiles& tls) {
  return !tls.ca_file.empty() && !tls.cert_file.empty() && !tls.key_file.empty();
}

absl::Status validate(const ControllerConfig& config) {
  std::vector<std::string> problems;
  if (config.etcd_endpoints.empty()) {
    problems.push_back("etcd.endpoints is empty: list the etcd members, e.g. [127.0.0.1:2379]");
  }
  if (!config.plaintext && !complete(config.tls)) {
    problems.push_back(
        "tls.ca, tls.cert and tls.key are required (or plaintext: true, for tests only)");
  }
  if (!config.agents_plaintext && !complete(config.agents_tls)) {
    problems.push_back(
        "agents.tls.ca, agents.tls.cert and agents.tls.key are required (or agents.plaintext: "
        "true, for tests only)");
  }
  if (config.election_ttl < absl::Seconds(1) ||
      absl::Ceil(config.election_ttl, absl::Seconds(1)) != config.election_ttl) {
    problems.push_back(
        "election_ttl must be whole seconds, at least 1s (etcd's leases are in seconds; etcd "
        "raises a TTL below 1.5 times its election timeout to that, so 1s takes an etcd "
        "election timeout of at most 666ms)");
  }
  if (config.scheduler.strategy != "spread" && config.scheduler.strategy != "pack") {
    problems.push_back(
        fmt::format("scheduler.strategy '{}': expected spread or pack", config.scheduler.strategy));
  }
  if (config.scheduler.cpu_overcommit <= 0 || config.scheduler.memory_overcommit <= 0) {
    problems.push_back("scheduler.cpu_overcommit and memory_overcommit must be positive");
  }
  if (config.agent_parallelism == 0 || config.agent_parallelism > 1024) {
    problems.push_back(fmt::format("agent_parallelism {}: expected 1 to 1024 VM tasks at once",
                                   config.agent_parallelism));
  }
  if (config.migrations.per_source == 0 || config.migrations.per_target == 0 ||
      config.migrations.per_cluster == 0) {
    problems.push_back("migrations.per_source, per_target and per_cluster must be at least 1");
  }
  if (config.rebalance.threshold < 0 || config.rebalance.threshold > 1) {
    problems.push_back("rebalance.threshold must be between 0 and 1");
  }
  if (config.resync_interval <= absl::ZeroDuration()) {
    problems.push_back("resync_interval must be positive");
  }
  if (problems.empty()) return absl::OkStatus();
  std::string text;
  for (const std::string& problem : problems) text += (text.empty() ? "" : "\n") + problem;
  return absl::InvalidArgumentError(text);
}

}  // namespace

absl::StatusOr<ControllerConfig> parseControllerConfig(std::string_view text,
                                                       std::string_view source_name) {
  ASSIGN_OR_RETURN(ConfigDocument document, ConfigDocument::parse(text, source_name));
  ControllerConfig config;
  ConfigNode root = document.root();
  root.optional("name", config.name);
  root.optional("listen", config.listen);
  root.optional("plaintext", config.plaintext);
  readTls(root.child("tls"), config.tls);
  ConfigNode etcd = root.child("etcd");
  etcd.optional("endpoints", config.etcd_endpoints);
  readTls(etcd.child("tls"), config.etcd_tls);
  ConfigNode agents = root.child("agents");
  agents.optional("plaintext", config.agents_plaintext);
  readTls(agents.child("tls"), config.agents_tls);
  root.optional("election_ttl", config.election_ttl);
  root.optional("host_fence_timeout", config.host_fence_timeout);
  root.optional("resync_interval", config.resync_interval);
  root.optional("agent_timeout", config.agent_timeout);
  root.optional("agent_parallelism", config.agent_parallelism);
  ConfigNode scheduler = root.child("scheduler");
  scheduler.optional("strategy", config.scheduler.strategy);
  scheduler.optional("cpu_overcommit", config.scheduler.cpu_overcommit);
  scheduler.optional("memory_overcommit", config.scheduler.memory_overcommit);
  ConfigNode migrations = root.child("migrations");
  migrations.optional("per_source", config.migrations.per_source);
  migrations.optional("per_target", config.migrations.per_target);
  migrations.optional("per_cluster", config.migrations.per_cluster);
  migrations.optional("downtime_limit_ms", config.migrations.downtime_limit_ms);
  migrations.optional("attempts", config.migrations.attempts);
  ConfigNode rebalance = root.child("rebalance");
  rebalance.optional("automatic", config.rebalance.automatic);
  rebalance.optional("interval", config.rebalance.interval);
  rebalance.optional("threshold", config.rebalance.threshold);
  rebalance.optional("max_moves", config.rebalance.max_moves);
  rebalance.optional("cooldown", config.rebalance.cooldown);
  root.optional("max_events", config.max_events);
  ConfigNode log = root.child("log");
  log.optional("level", config.log_level);
  log.optional("file", config.log_file);
  RETURN_IF_ERROR(document.finish());
  if (config.name.empty()) config.name = hostName();
  RETURN_IF_ERROR(validate(config));
  return config;
}

absl::StatusOr<ControllerConfig> loadControllerConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, readFileToString(path));
  return parseControllerConfig(text, path);
}

}  // namespace flotilla::controller
