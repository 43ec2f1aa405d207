// clusterctl: the command line of a Flotilla cluster, a client of ClusterService
// (docs/clusterctl.md). The whole program runs in runClusterctl() so that tests call it
// in-process with their own streams, environment and Ctrl-C.
#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/interrupt.h"

namespace flotilla::cli {

// What clusterctl takes from its process; tests replace each part.
struct ClusterctlEnvironment {
  // An environment variable (nullopt: unset). Default: getenv(3).
  std::function<std::optional<std::string>(const std::string&)> getenv;
  // Whether `out` is a terminal: progress bars are redrawn in place only then.
  bool out_is_tty = false;
  // Ctrl-C; null: never interrupted.
  Interrupt* interrupt = nullptr;
  // The time ages are computed from. Default: absl::Now().
  std::function<absl::Time()> now;
};

// Runs clusterctl with `args` (without the program name) and returns its exit status
// (cli/exit_codes.h). Output goes to `out`, errors to `err` as "clusterctl: MESSAGE".
int runClusterctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                  const ClusterctlEnvironment& environment);

// The same with the process's environment (getenv, isatty when `out` is std::cout, no
// interrupt).
int runClusterctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace flotilla::cli
