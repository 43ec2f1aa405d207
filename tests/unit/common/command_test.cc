// Tests for SystemCommandRunner, runChecked and formatCommandLine (common/command.h) with
// real processes, and for FakeCommandRunner (common/testing/fake_command_runner.h).
#include "common/command.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "common/testing/fake_command_runner.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "gtest/gtest.h"

namespace flotilla {
namespace {

// Processes in process group `pgid` that are still running (zombies do not count: a killed
// orphan stays one until init reaps it, which this machine's init may never do).
int runningInGroup(pid_t pgid) {
  int count = 0;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  while (dirent* entry = ::readdir(proc)) {  // NOLINT(concurrency-mt-unsafe): a DIR of its own
    const char* name = entry->d_name;
    if (name[0] < '0' || name[0] > '9') continue;
    UniqueFd fd(::open(fmt::format("/proc/{}/stat", name).c_str(), O_RDONLY | O_CLOEXEC));
    char buffer[1024];
    ssize_t n = fd.valid() ? ::read(fd.get(), buffer, sizeof(buffer) - 1) : -1;
    if (n <= 0) continue;
    std::string stat(buffer, static_cast<size_t>(n));
    // "pid (comm) state ppid pgrp ...": comm may hold anything, so parse after the last ')'.
    std::istringstream fields(stat.substr(stat.rfind(')') + 1));
    char state = 0;
    pid_t ppid = 0;
    pid_t pgrp = 0;
    fields >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != 'Z') ++count;
  }
  ::closedir(proc);
  return count;
}

// Waits (generously: the machine is shared) until nothing in group `pgid` is running.
bool groupStops(pid_t pgid) {
  for (int i = 0; i < 3000; ++i) {
    if (runningInGroup(pgid) == 0) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

std::set<std::string> lines(const std::string& text) {
  std::set<std::string> result;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) result.insert(line);
  return result;
}

CommandOptions withInput(std::string input) {
  CommandOptions options;
  options.input = std::move(input);
  return options;
}

// `size` bytes that are not all the same, so that a lost or reordered chunk shows.
std::string pattern(size_t size) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return data;
}

TEST(CommandRunnerTest, CapturesStatusAndBothStreams) {
  SystemCommandRunner runner;
  absl::StatusOr<CommandResult> result =
      runner.run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.code, 3);
  EXPECT_EQ(result->out, "out\n");
  EXPECT_EQ(result->err, "err\n");
}

TEST(CommandRunnerTest, SignalDeathIsAResult) {
  SystemCommandRunner runner;
  absl::StatusOr<CommandResult> result = runner.run({"/bin/sh", "-c", "kill -9 $$"}, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.signal, SIGKILL);
}

TEST(CommandRunnerTest, MissingProgramIsNotFound) {
  SystemCommandRunner runner;
  absl::StatusOr<CommandResult> result = runner.run({"flotilla-no-such-program", "--flag"}, {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(),
            "`flotilla-no-such-program --flag`: cannot run 'flotilla-no-such-program': No such "
            "file or directory (is it installed? see deploy/install-deps.sh)");
}

TEST(CommandRunnerTest, EmptyArgvIsInvalid) {
  SystemCommandRunner runner;
  EXPECT_EQ(runner.run({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommandRunnerTest, StandardInputIsDevNullWithoutInput) {
  SystemCommandRunner runner;
  absl::StatusOr<CommandResult> result = runner.run({"/bin/readlink", "/proc/self/fd/0"}, {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out, "/dev/null\n");
}

TEST(CommandRunnerTest, WritesInput) {
  SystemCommandRunner runner;
  absl::StatusOr<CommandResult> result = runner.run({"/bin/cat"}, withInput("hello"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.code, 0);
  EXPECT_EQ(result->out, "hello");
}

TEST(CommandRunnerTest, WritesInputLargerThanThePipeBuffer) {
  SystemCommandRunner runner;
  const std::string input = pattern(4 << 20);
  absl::StatusOr<CommandResult> result = runner.run({"/bin/cat"}, withInput(input));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.code, 0);
  EXPECT_EQ(result->out.size(), input.size());
  EXPECT_TRUE(result->out == input);
}

// The command exits without reading its input: EPIPE, and no SIGPIPE for this process.
TEST(CommandRunnerTest, CommandMayIgnoreItsInput) {
  SystemCommandRunner runner;
  const std::string input = pattern(2 << 20);
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{"/bin/true"}, {"/usr/bin/head", "-c", "10"}}) {
    absl::StatusOr<CommandResult> result = runner.run(argv, withInput(input));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->status.code, 0) << result->status.describe();
  }
  // Nothing left pending for this thread either.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
}

TEST(CommandRunnerTest, CapturesLargeOutputOnBothStreams) {
  SystemCommandRunner runner;
  // Both streams at once: a runner that drained one before the other would deadlock.
  absl::StatusOr<CommandResult> result =
      runner.run({"/bin/sh", "-c",
                  "head -c 6000000 /dev/zero >&2 & head -c 5000000 /dev/zero; wait; echo done >&2"},
                 {});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status.code, 0);
  EXPECT_EQ(result->out.size(), 5000000u);
  EXPECT_EQ(result->err.size(), 6000005u);
}

TEST(CommandRunnerTest, OutputLimitKillsTheCommand) {
  SystemCommandRunner runner;
  CommandOptions options;
  options.max_output_bytes = 1000;

  absl::StatusOr<CommandResult> exact =
      runner.run({"/usr/bin/head", "-c", "1000", "/dev/zero"}, options);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->out.size(), 1000u);

  absl::StatusOr<CommandResult> over =
      runner.run({"/usr/bin/head", "-c", "100000", "/dev/zero"}, options);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_NE(over.status().message().find("`/usr/bin/head -c 100000 /dev/zero`: wrote more than "
                                         "1000 bytes to standard output"),
            absl::string_view::npos)
      << over.status();

  // Endless output on standard error.
  absl::StatusOr<CommandResult> endless = runner.run({"/bin/sh", "-c", "yes >&2"}, options);
  EXPECT_EQ(endless.status().code(), absl::StatusCode::kResourceExhausted) << endless.status();
  EXPECT_NE(endless.status().message().find("standard error"), absl::string_view::npos);
}

TEST(CommandRunnerTest, TimeoutKillsTheWholeProcessGroup) {
  SystemCommandRunner runner;
  CommandOptions options;
  options.timeout = absl::Seconds(1);  // a timeout is the expected outcome
  const std::vector<std::string> argv = {"/bin/sh", "-c",
                                         "/bin/sleep 100 & echo $$ >&2; exec /bin/sleep 100"};
  absl::StatusOr<CommandResult> result = runner.run(argv, options);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
  const std::string prefix = fmt::format(
      "`{}` timed out after 1s and was killed; standard error so far: ", formatCommandLine(argv));
  std::string message(result.status().message());
  ASSERT_EQ(message.substr(0, prefix.size()), prefix);
  // The shell's pid, which is also the group id; "(none)" if the machine was too slow to
  // get that far (then there is no group to check).
  pid_t pgid = std::atoi(message.substr(prefix.size()).c_str());
  if (pgid > 0) {
    EXPECT_TRUE(groupStops(pgid)) << "group " << pgid << " survived";
  }
}

TEST(CommandRunnerTest, BackgroundProcessHoldingOutputIsKilledAtTheDeadline) {
  SystemCommandRunner runner;
  CommandOptions options;
  options.timeout = absl::Seconds(1);
  // The shell exits at once, but sleep keeps standard output open.
  absl::StatusOr<CommandResult> result =
      runner.run({"/bin/sh", "-c", "echo $$ >&2; /bin/sleep 100 &"}, options);
  ASSERT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
  std::string message(result.status().message());
  EXPECT_NE(message.find("kept its output open"), std::string::npos) << message;
  size_t so_far = message.find("so far: ");
  ASSERT_NE(so_far, std::string::npos);
  pid_t pgid = std::atoi(message.substr(so_far + 8).c_str());
  if (pgid > 0) {
    EXPECT_TRUE(groupStops(pgid)) << "group " << pgid << " survived";
  }
}

TEST(CommandRunnerTest, AddsEnvironment) {
  SystemCommandRunner runner;
  CommandOptions options;
  options.env = {"FLOTILLA_TEST_VALUE=hello world"};
  absl::StatusOr<CommandResult> result =
      runner.run({"/bin/sh", "-c", "echo \"$FLOTILLA_TEST_VALUE\""}, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out, "hello world\n");
}

TEST(CommandRunnerTest, CommandInheritsOnlyStandardDescriptors) {
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull.valid());
  UniqueFd leaky(::fcntl(devnull.get(), F_DUPFD, 20));  // not close-on-exec
  ASSERT_TRUE(leaky.valid());
  SystemCommandRunner runner;
  absl::StatusOr<CommandResult> result = runner.run({"/bin/ls", "-1", "/proc/self/fd"}, {});
  ASSERT_TRUE(result.ok()) << result.status();
  // 3 is the directory ls is listing.
  EXPECT_EQ(lines(result->out), (std::set<std::string>{"0", "1", "2", "3"}));
}

TEST(CommandRunnerTest, RunsConcurrently) {
  SystemCommandRunner runner;
  std::vector<std::string> failures[8];
  {
    std::vector<std::jthread> threads;
    threads.reserve(8);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&runner, &failures, t] {
        for (int i = 0; i < 10; ++i) {
          std::string input = fmt::format("thread {} run {}\n", t, i);
          absl::StatusOr<CommandResult> result = runner.run({"/bin/cat"}, withInput(input));
          if (!result.ok()) {
            failures[t].push_back(result.status().ToString());
          } else if (result->out != input) {
            failures[t].push_back(fmt::format("got '{}' for '{}'", result->out, input));
          }
        }
      });
    }
  }
  for (const auto& thread_failures : failures) {
    EXPECT_TRUE(thread_failures.empty()) << thread_failures.front();
  }
}

TEST(CommandRunnerTest, RunCheckedReturnsStandardOutput) {
  SystemCommandRunner runner;
  absl::StatusOr<std::string> out = runChecked(runner, {"/bin/echo", "hello"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "hello\n");
}

TEST(CommandRunnerTest, RunCheckedQuotesCommandStatusAndStandardError) {
  SystemCommandRunner runner;
  absl::StatusOr<std::string> out =
      runChecked(runner, {"/bin/sh", "-c", "echo ignored; echo 'this target exists' >&2; exit 22"});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(out.status().message(),
            "`/bin/sh -c 'echo ignored; echo '\\''this target exists'\\'' >&2; exit 22'`: exited "
            "with status 22: this target exists");

  absl::StatusOr<std::string> killed = runChecked(runner, {"/bin/sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.status().message(), "`/bin/sh -c 'kill -9 $$'`: killed by signal 9 (Killed)");

  absl::StatusOr<std::string> stdout_only =
      runChecked(runner, {"/bin/sh", "-c", "echo usage; exit 2"});
  EXPECT_EQ(stdout_only.status().message(),
            "`/bin/sh -c 'echo usage; exit 2'`: exited with status 2 (no standard error; "
            "standard output: usage)");

  EXPECT_EQ(runChecked(runner, {"flotilla-no-such-program"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(CommandRunnerTest, RunCheckedShortensLongErrorOutput) {
  FakeCommandRunner runner;
  runner.setHandler([](const std::vector<std::string>&, const CommandOptions&) {
    return FakeCommandRunner::exited(1, "", std::string(10000, 'x') + "the real error\n\n");
  });
  absl::StatusOr<std::string> out = runChecked(runner, {"tool"});
  std::string message(out.status().message());
  EXPECT_LT(message.size(), 2100u);
  EXPECT_EQ(message.substr(0, 29), "`tool`: exited with status 1:");
  EXPECT_EQ(message.substr(message.size() - 15), "xthe real error");
}

TEST(CommandRunnerTest, FormatsCommandLines) {
  EXPECT_EQ(formatCommandLine({"tgtadm", "--lld", "iscsi", "--tid=1", "/dev/vg0/lv-1",
                               "user@host:port", "50%", "a,b", "x+y"}),
            "tgtadm --lld iscsi --tid=1 /dev/vg0/lv-1 user@host:port 50% a,b x+y");
  EXPECT_EQ(formatCommandLine({"echo", "hello world"}), "echo 'hello world'");
  EXPECT_EQ(formatCommandLine({"echo", "it's"}), "echo 'it'\\''s'");
  EXPECT_EQ(formatCommandLine({"echo", ""}), "echo ''");
  EXPECT_EQ(formatCommandLine({"sh", "-c", "a;b", "$HOME", "*", "~", "\"q\"", "tab\there"}),
            "sh -c 'a;b' '$HOME' '*' '~' '\"q\"' 'tab\there'");
  EXPECT_EQ(formatCommandLine({}), "");
}

TEST(FakeCommandRunnerTest, DefaultsToSuccessWithoutOutput) {
  FakeCommandRunner runner;
  absl::StatusOr<CommandResult> result = runner.run({"ip", "link"}, {});
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->status.success());
  EXPECT_EQ(result->out, "");
  EXPECT_EQ(result->err, "");
}

TEST(FakeCommandRunnerTest, RecordsCallsInOrderWithOptions) {
  FakeCommandRunner runner;
  EXPECT_EQ(runner.callCount(), 0u);
  EXPECT_TRUE(runner.lastCall().argv.empty());

  CommandOptions options;
  options.timeout = absl::Seconds(5);
  options.input = "data";
  options.env = {"A=b"};
  ASSERT_TRUE(runner.run({"first", "x"}, {}).ok());
  ASSERT_TRUE(runner.run({"second", "two words"}, options).ok());

  std::vector<FakeCommandRunner::Call> calls = runner.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].argv, (std::vector<std::string>{"first", "x"}));
  EXPECT_EQ(calls[1].argv, (std::vector<std::string>{"second", "two words"}));
  EXPECT_EQ(runner.lastCall().options.timeout, absl::Seconds(5));
  EXPECT_EQ(runner.lastCall().options.input, "data");
  EXPECT_EQ(runner.lastCall().options.env, (std::vector<std::string>{"A=b"}));
  EXPECT_EQ(runner.commandLines(), (std::vector<std::string>{"first x", "second 'two words'"}));
  EXPECT_EQ(runner.lastCall().commandLine(), "second 'two words'");

  runner.clearCalls();
  EXPECT_EQ(runner.callCount(), 0u);
}

TEST(FakeCommandRunnerTest, HandlerDecidesResults) {
  FakeCommandRunner runner;
  runner.setHandler([&runner](const std::vector<std::string>& argv,
                              const CommandOptions& options) -> absl::StatusOr<CommandResult> {
    // A handler may look at the calls (the runner's lock is not held).
    EXPECT_GE(runner.callCount(), 1u);
    if (argv[0] == "missing") return absl::NotFoundError("cannot run 'missing'");
    if (argv[0] == "cat") return FakeCommandRunner::exited(0, options.input);
    if (argv[0] == "crash") return FakeCommandRunner::killedBy(SIGSEGV);
    return FakeCommandRunner::exited(22, "", "tgtadm: this target already exists\n");
  });

  EXPECT_EQ(runner.run({"missing"}, {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(runner.run({"cat"}, withInput("echo"))->out, "echo");
  EXPECT_EQ(runner.run({"crash"}, {})->status.signal, SIGSEGV);
  absl::StatusOr<std::string> out = runChecked(runner, {"tgtadm", "--op", "new"});
  EXPECT_EQ(out.status().message(),
            "`tgtadm --op new`: exited with status 22: tgtadm: this target already exists");
  EXPECT_EQ(runner.callCount(), 4u);

  runner.setHandler(nullptr);  // back to the default
  EXPECT_TRUE(runner.run({"anything"}, {})->status.success());
}

TEST(FakeCommandRunnerTest, IsThreadSafe) {
  FakeCommandRunner runner;
  {
    std::vector<std::jthread> threads;
    threads.reserve(8);
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&runner, t] {
        for (int i = 0; i < 100; ++i) {
          (void)runner.run({"cmd", std::to_string(t), std::to_string(i)}, {});
          (void)runner.lastCall();
        }
      });
    }
  }
  EXPECT_EQ(runner.callCount(), 800u);
  // Each thread's calls stay in its own order.
  std::vector<int> next(8, 0);
  for (const FakeCommandRunner::Call& call : runner.calls()) {
    int t = std::stoi(call.argv[1]);
    EXPECT_EQ(std::stoi(call.argv[2]), next[static_cast<size_t>(t)]++);
  }
}

}  // namespace
}  // namespace flotilla
