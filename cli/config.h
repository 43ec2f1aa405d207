// clusterctl's configuration file (docs/clusterctl.md "Configuration"):
//   endpoints: [127.0.0.1:7000, 127.0.0.1:7001]   # controller replicas, tried in order
//   plaintext: true                                # or tls: {ca: FILE, cert: FILE, key: FILE}
//   timeout: 10s                                   # per call
// Found at $CLUSTERCTL_CONFIG, else ~/.config/flotilla/clusterctl.yaml, else
// /etc/flotilla/clusterctl.yaml.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/channel.h"

namespace flotilla::cli {

struct ClusterctlConfig {
  std::vector<std::string> endpoints;
  bool plaintext = false;  // false: TLS (with `tls`, or the system's CAs when it is empty)
  TlsFiles tls{};
  absl::Duration timeout = absl::Seconds(10);
  std::string source;  // the file it came from (empty: defaults), for messages
};

absl::StatusOr<ClusterctlConfig> loadClusterctlConfig(const std::string& path);

// Where the configuration is. `getenv` returns a variable's value (nullopt: unset);
// `exists` tells whether a file exists. $CLUSTERCTL_CONFIG is returned even when the file is
// missing (it was asked for); the other two only when they exist. nullopt: no file.
std::optional<std::string> defaultConfigPath(
    const std::function<std::optional<std::string>(const std::string&)>& getenv,
    const std::function<bool(const std::string&)>& exists);

}  // namespace flotilla::cli
