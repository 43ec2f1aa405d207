// `clusterctl completion bash|zsh`: shell completion generated from clusterctl's own command
// tree (CLI11), so that it lists exactly the verbs and flags the program has. Object names are
// completed by running `clusterctl get KIND -o name` against the configured cluster.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"

namespace flotilla::cli {

// What follows a command path that CLI11 does not know as subcommands: `words` (a
// space-separated list) and/or the names of objects of the kind `names_of` ("vms").
struct CompletionHint {
  std::string words;
  std::string names_of;
};

// The script for `shell` ("bash" or "zsh"; anything else is a usage error). `hints` maps a
// command path ("get", "get vms", "vm start") to what may follow it.
absl::StatusOr<std::string> completionScript(const CLI::App& app, std::string_view shell,
                                             const std::map<std::string, CompletionHint>& hints);

}  // namespace flotilla::cli
