// Running host tools (ovs-vsctl, tgtadm, drbdadm, ip, ...) without a shell: argv in, exit
// status, standard output and standard error out, with a timeout that kills the command and
// its children. The CommandRunner interface lets unit tests substitute
// FakeCommandRunner (common/testing/fake_command_runner.h).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process.h"

namespace flotilla {

struct CommandOptions {
  absl::Duration timeout = absl::Seconds(30);
  std::string input;  // written to the command's standard input, then closed; empty: /dev/null
  std::vector<std::string> env;        // "NAME=value" added to the environment
  size_t max_output_bytes = 16 << 20;  // per stream; more is an error, the command is killed
};

struct CommandResult {
  ExitStatus status;
  std::string out;
  std::string err;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;

  // Runs argv[0] (looked up in PATH) with the given arguments. A command that ran and exited,
  // whatever its status, is a result; an error status means it could not be started
  // (NotFound naming the program), it timed out (DeadlineExceeded; it was killed with its
  // process group) or its output exceeded the limit (ResourceExhausted). Each message quotes
  // the command line.
  virtual absl::StatusOr<CommandResult> run(const std::vector<std::string>& argv,
                                            const CommandOptions& options) = 0;
};

// Runs commands for real, as child processes.
class SystemCommandRunner final : public CommandRunner {
 public:
  absl::StatusOr<CommandResult> run(const std::vector<std::string>& argv,
                                    const CommandOptions& options) override;
};

// Runs the command and returns its standard output when it exited with status 0; otherwise
// an error (Internal) quoting the command line, how it ended and its standard error, e.g.
//   `tgtadm --lld iscsi --op new --mode target --tid 1`: exited with status 22: tgtadm:
//   this target already exists
absl::StatusOr<std::string> runChecked(CommandRunner& runner, const std::vector<std::string>& argv,
                                       const CommandOptions& options = {});

// The command line as a person would type it in a shell (arguments quoted where needed),
// for messages only: commands are never run through a shell.
std::string formatCommandLine(const std::vector<std::string>& argv);

}  // namespace flotilla
