// clusterctl's configuration file (see config.h).
#include "cli/config.h"

#include "common/config.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::cli {

absl::StatusOr<ClusterctlConfig> loadClusterctlConfig(const std::string& path) {
  ClusterctlConfig config;
  config.source = path;
  ASSIGN_OR_RETURN(ConfigDocument document, ConfigDocument::loadFile(path));
  ConfigNode root = document.root();
  root.optional("endpoints", config.endpoints);
  root.optional("plaintext", config.plaintext);
  root.optional("timeout", config.timeout);
  const bool has_tls = root.has("tls");
  ConfigNode tls = root.child("tls");
  tls.optional("ca", config.tls.ca_file);
  tls.optional("cert", config.tls.cert_file);
  tls.optional("key", config.tls.key_file);
  if (config.plaintext && has_tls) {
    root.fail("tls", "plaintext: true and tls exclude each other: remove one of them");
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty()) {
    tls.fail(config.tls.cert_file.empty() ? "key" : "cert",
             "a client certificate needs both cert and key");
  }
  if (config.timeout <= absl::ZeroDuration()) {
    root.fail("timeout", "must be longer than 0s (e.g. 10s)");
  }
  for (const std::string& endpoint : config.endpoints) {
    if (endpoint.empty()) root.fail("endpoints", "an endpoint is empty; expected HOST:PORT");
  }
  RETURN_IF_ERROR(document.finish());
  return config;
}

std::optional<std::string> defaultConfigPath(
    const std::function<std::optional<std::string>(const std::string&)>& getenv,
    const std::function<bool(const std::string&)>& exists) {
  if (auto explicit_path = getenv("CLUSTERCTL_CONFIG");
      explicit_path.has_value() && !explicit_path->empty()) {
    return explicit_path;
  }
  if (auto home = getenv("HOME"); home.has_value() && !home->empty()) {
    std::string path = *home + "/.config/flotilla/clusterctl.yaml";
    if (exists(path)) return path;
  }
  if (exists("/etc/flotilla/clusterctl.yaml")) return std::string("/etc/flotilla/clusterctl.yaml");
  return std::nullopt;
}

}  // namespace flotilla::cli
