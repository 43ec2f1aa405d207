// Shell completion scripts (see completion.h). The zsh script loads zsh's bash-completion
// emulation (bashcompinit) and registers the same function, so both shells share one logic.
#include "cli/completion.h"

#include <set>
#include <vector>

#include "cli/exit_codes.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::cli {
namespace {

struct Node {
  std::string path;  // "" for the root, "vm migrate"
  std::vector<std::string> words;
  std::vector<std::string> flags;
};

void optionNames(const CLI::App& app, std::vector<std::string>& flags,
                 std::set<std::string>& with_value) {
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional()) continue;
    for (const std::string& name : option->get_lnames()) {
      flags.push_back("--" + name);
      if (option->get_expected_min() > 0) with_value.insert("--" + name);
    }
    for (const std::string& name : option->get_snames()) {
      flags.push_back("-" + name);
      if (option->get_expected_min() > 0) with_value.insert("-" + name);
    }
  }
}

void collect(const CLI::App& app, const std::string& path, std::vector<Node>& nodes,
             std::set<std::string>& with_value) {
  Node node;
  node.path = path;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    node.words.push_back(sub->get_name());
  }
  optionNames(app, node.flags, with_value);
  nodes.push_back(node);
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    collect(*sub, path.empty() ? sub->get_name() : path + " " + sub->get_name(), nodes, with_value);
  }
}

std::string bashFunction(const CLI::App& app, const std::map<std::string, CompletionHint>& hints) {
  std::vector<Node> nodes;
  std::set<std::string> with_value;
  collect(app, "", nodes, with_value);
  std::vector<std::string> global_flags;
  {
    std::set<std::string> ignored;
    optionNames(app, global_flags, ignored);
  }

  std::string cases;
  std::set<std::string> covered;
  for (const Node& node : nodes) {
    std::vector<std::string> words = node.words;
    std::string names;
    if (auto hint = hints.find(node.path); hint != hints.end()) {
      if (!hint->second.words.empty()) words.push_back(hint->second.words);
      names = hint->second.names_of;
    }
    std::vector<std::string> flags = node.flags;
    if (!node.path.empty()) flags.insert(flags.end(), global_flags.begin(), global_flags.end());
    cases += fmt::format("    \"{}\")\n      words=\"{}\"\n      flags=\"{}\"\n", node.path,
                         fmt::join(words, " "), fmt::join(flags, " "));
    if (!names.empty()) cases += fmt::format("      names={}\n", names);
    cases += "      ;;\n";
    covered.insert(node.path);
  }
  for (const auto& [path, hint] : hints) {
    if (covered.count(path) != 0) continue;
    cases += fmt::format("    \"{}\")\n      words=\"{}\"\n      flags=\"{}\"\n", path, hint.words,
                         fmt::join(global_flags, " "));
    if (!hint.names_of.empty()) cases += fmt::format("      names={}\n", hint.names_of);
    cases += "      ;;\n";
  }

  return fmt::format(R"BASH(__clusterctl_names() {{
  clusterctl get "$1" -o name 2>/dev/null | sed 's|^[^/]*/||'
}}

_clusterctl() {{
  local cur prev path i w words flags names
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  case "$prev" in
    -o|--output)
      COMPREPLY=($(compgen -W "table wide json yaml name" -- "$cur")); return ;;
    --config|-f|--file)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    {})
      COMPREPLY=(); return ;;
  esac
  # The command path: the words before the cursor that are neither flags nor flag values.
  path=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    case "$w" in -*) continue ;; esac
    case "${{COMP_WORDS[i-1]}}" in {}) continue ;; esac
    path="${{path:+$path }}$w"
  done
  # Longest known prefix of the path (names already typed do not change what follows).
  while :; do
    words=""; flags=""; names=""
    case "$path" in
{}      *)
        if [[ "$path" == *" "* ]]; then path="${{path% *}}"; continue; fi
        if [[ -n "$path" ]]; then path=""; continue; fi
        ;;
    esac
    break
  done
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  [[ -n "$names" ]] && words="$words $(__clusterctl_names "$names")"
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
)BASH",
                     fmt::join(with_value, "|"), fmt::join(with_value, "|"), cases);
}

}  // namespace

absl::StatusOr<std::string> completionScript(const CLI::App& app, std::string_view shell,
                                             const std::map<std::string, CompletionHint>& hints) {
  if (shell == "bash") {
    return "# bash completion for clusterctl. Load it with:\n"
           "#   source <(clusterctl completion bash)\n"
           "# or install it as /etc/bash_completion.d/clusterctl.\n" +
           bashFunction(app, hints) + "complete -F _clusterctl clusterctl\n";
  }
  if (shell == "zsh") {
    return "#compdef clusterctl\n"
           "# zsh completion for clusterctl (through zsh's bash completion emulation). Load it "
           "with:\n"
           "#   source <(clusterctl completion zsh)\n"
           "autoload -U +X compinit && compinit\n"
           "autoload -U +X bashcompinit && bashcompinit\n" +
           bashFunction(app, hints) + "complete -F _clusterctl clusterctl\n";
  }
  return usageError(fmt::format("completion {}: unknown shell; use bash or zsh", shell));
}

}  // namespace flotilla::cli
