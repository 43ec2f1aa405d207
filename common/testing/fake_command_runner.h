// FakeCommandRunner: a CommandRunner for unit tests. It records every call (argv and options,
// in order) and answers through a handler the test installs; without one, every command
// "exits with status 0" and prints nothing. Thread-safe.
//
//   FakeCommandRunner runner;
//   runner.setHandler([](const std::vector<std::string>& argv, const CommandOptions&)
//                         -> absl::StatusOr<CommandResult> {
//     if (argv[0] == "tgtadm") return FakeCommandRunner::exited(22, "", "already exists\n");
//     return FakeCommandRunner::exited(0);
//   });
//   ... code under test ...
//   EXPECT_EQ(runner.lastCall().commandLine(), "tgtadm --op show");
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/command.h"

namespace flotilla {

class FakeCommandRunner final : public CommandRunner {
 public:
  struct Call {
    std::vector<std::string> argv;
    CommandOptions options;

    // As formatCommandLine() shows it ("ip link set 'my dev' up"), for readable assertions.
    std::string commandLine() const { return formatCommandLine(argv); }
  };

  using Handler = std::function<absl::StatusOr<CommandResult>(const std::vector<std::string>& argv,
                                                              const CommandOptions& options)>;

  // A result for handlers: the command exited with `code` after writing `out` and `err`.
  static CommandResult exited(int code, std::string out = {}, std::string err = {}) {
    CommandResult result;
    result.status.code = code;
    result.out = std::move(out);
    result.err = std::move(err);
    return result;
  }

  // A result for handlers: the command was killed by `signal`.
  static CommandResult killedBy(int signal) {
    CommandResult result;
    result.status.signal = signal;
    return result;
  }

  // Replaces the handler; an empty one restores the default (status 0, no output). The
  // handler runs without the runner's lock held (it may call calls()), and concurrently
  // when the code under test runs commands from several threads.
  void setHandler(Handler handler) {
    absl::MutexLock lock(&mu_);
    handler_ = std::move(handler);
  }

  absl::StatusOr<CommandResult> run(const std::vector<std::string>& argv,
                                    const CommandOptions& options) override {
    Handler handler;
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(Call{argv, options});
      handler = handler_;
    }
    if (!handler) return exited(0);
    return handler(argv, options);
  }

  // Every call so far, oldest first.
  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  // The command lines of every call so far, oldest first.
  std::vector<std::string> commandLines() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> lines;
    lines.reserve(calls_.size());
    for (const Call& call : calls_) lines.push_back(call.commandLine());
    return lines;
  }

  // The most recent call; a Call with an empty argv when there was none, so that an
  // assertion on it fails with a readable message instead of crashing the test.
  Call lastCall() const {
    absl::MutexLock lock(&mu_);
    return calls_.empty() ? Call{} : calls_.back();
  }

  size_t callCount() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }

  void clearCalls() {
    absl::MutexLock lock(&mu_);
    calls_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  Handler handler_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla
