// Tests for ChildProcess (common/process.h) with real processes: exit statuses, signals,
// descriptor mapping, environment, working directory, timeouts and cleanup. Every process a
// test starts is killed and reaped by PID before the test ends.
#include "common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "gtest/gtest.h"

namespace flotilla {
namespace {

// Reads `fd` until EOF.
std::string readAll(int fd) {
  std::string data;
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return data;
    data.append(buffer, static_cast<size_t>(n));
  }
}

// Reads `fd` up to and including the first newline (or EOF).
std::string readLine(int fd) {
  std::string line;
  char c = 0;
  while (line.empty() || line.back() != '\n') {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line += c;
  }
  return line;
}

std::set<std::string> lines(const std::string& text) {
  std::set<std::string> result;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) result.insert(line);
  return result;
}

// True while `pid` exists and is not a zombie (a killed orphan stays a zombie until init
// reaps it, which this machine's init may never do).
bool isRunning(pid_t pid) {
  std::string stat = readAll(
      UniqueFd(::open(fmt::format("/proc/{}/stat", pid).c_str(), O_RDONLY | O_CLOEXEC)).get());
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

// Waits (generously: the machine is shared) until `pid` is no longer running.
bool stopsRunning(pid_t pid) {
  for (int i = 0; i < 3000; ++i) {
    if (!isRunning(pid)) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

bool pidIsGone(pid_t pid) {
  return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH;
}

// Kills and reaps a process the test started but no longer owns through a ChildProcess.
void killAndReapPid(pid_t pid) {
  if (pid <= 1) return;  // kill(-1) would hit every process we may signal
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

SpawnOptions command(std::vector<std::string> argv) {
  SpawnOptions options;
  options.argv = std::move(argv);
  return options;
}

ChildProcess spawnOrDie(const SpawnOptions& options) {
  absl::StatusOr<ChildProcess> child = ChildProcess::spawn(options);
  EXPECT_TRUE(child.ok()) << child.status();
  return child.ok() ? std::move(*child) : ChildProcess();
}

ExitStatus waitOrDie(ChildProcess& child) {
  absl::StatusOr<ExitStatus> status = child.wait(absl::Seconds(60));
  EXPECT_TRUE(status.ok()) << status.status();
  return status.value_or(ExitStatus{});
}

Pipe pipeOrDie() {
  absl::StatusOr<Pipe> pipe = makePipe();
  EXPECT_TRUE(pipe.ok()) << pipe.status();
  return std::move(*pipe);
}

TEST(ChildProcessTest, ReportsExitStatus) {
  ChildProcess ok = spawnOrDie(command({"/bin/true"}));
  ExitStatus status = waitOrDie(ok);
  EXPECT_TRUE(status.success());
  EXPECT_EQ(status.code, 0);
  EXPECT_EQ(status.signal, 0);

  ChildProcess failed = spawnOrDie(command({"false"}));  // found through PATH
  EXPECT_EQ(waitOrDie(failed).code, 1);

  ChildProcess exit42 = spawnOrDie(command({"/bin/sh", "-c", "exit 42"}));
  status = waitOrDie(exit42);
  EXPECT_EQ(status.code, 42);
  EXPECT_FALSE(status.success());
  EXPECT_EQ(status.describe(), "exited with status 42");
}

TEST(ChildProcessTest, ReportsTerminatingSignal) {
  ChildProcess child = spawnOrDie(command({"/bin/sh", "-c", "kill -9 $$"}));
  ExitStatus status = waitOrDie(child);
  EXPECT_EQ(status.code, -1);
  EXPECT_EQ(status.signal, SIGKILL);
  EXPECT_FALSE(status.success());
  EXPECT_EQ(status.describe(), "killed by signal 9 (Killed)");
}

TEST(ChildProcessTest, DescribesStatuses) {
  EXPECT_EQ((ExitStatus{.code = 0, .signal = 0}).describe(), "exited with status 0");
  EXPECT_EQ((ExitStatus{.code = -1, .signal = SIGTERM}).describe(),
            "killed by signal 15 (Terminated)");
  EXPECT_EQ((ExitStatus{.code = -1, .signal = 200}).describe(),
            "killed by signal 200 (unknown signal)");
  EXPECT_FALSE(ExitStatus{}.success());
}

TEST(ChildProcessTest, MapsDescriptors) {
  Pipe pipe = pipeOrDie();
  SpawnOptions options = command({"/bin/sh", "-c", "echo hello >&3"});
  options.fds = {{3, pipe.write.get()}};
  ChildProcess child = spawnOrDie(options);
  pipe.write.reset();
  EXPECT_EQ(readAll(pipe.read.get()), "hello\n");
  EXPECT_EQ(waitOrDie(child).code, 0);
}

// Each parent descriptor is also the child number of the other mapping: a naive sequence
// of dup2 calls would overwrite one before it is read.
TEST(ChildProcessTest, MapsSwappedDescriptors) {
  Pipe a = pipeOrDie();
  Pipe b = pipeOrDie();
  const int fd_a = a.write.get();
  const int fd_b = b.write.get();
  // bash, because dash only redirects single-digit descriptors.
  SpawnOptions options = command(
      {"/bin/bash", "-c", fmt::format("echo to-{} >&{}; echo to-{} >&{}", fd_a, fd_a, fd_b, fd_b)});
  options.fds = {{fd_a, fd_b}, {fd_b, fd_a}};
  ChildProcess child = spawnOrDie(options);
  a.write.reset();
  b.write.reset();
  EXPECT_EQ(readAll(b.read.get()), fmt::format("to-{}\n", fd_a));
  EXPECT_EQ(readAll(a.read.get()), fmt::format("to-{}\n", fd_b));
  EXPECT_EQ(waitOrDie(child).code, 0);
}

// A close-on-exec descriptor mapped onto its own number must still reach the child (dup2
// onto the same number would leave close-on-exec set).
TEST(ChildProcessTest, MapsCloseOnExecDescriptorOntoItsOwnNumber) {
  Pipe pipe = pipeOrDie();
  ASSERT_NE(::fcntl(pipe.write.get(), F_GETFD) & FD_CLOEXEC, 0);
  const int fd = pipe.write.get();
  SpawnOptions options = command({"/bin/bash", "-c", fmt::format("echo same >&{}", fd)});
  options.fds = {{fd, fd}};
  ChildProcess child = spawnOrDie(options);
  pipe.write.reset();
  EXPECT_EQ(readAll(pipe.read.get()), "same\n");
  EXPECT_EQ(waitOrDie(child).code, 0);
}

TEST(ChildProcessTest, RejectsDuplicateOrBadDescriptors) {
  Pipe pipe = pipeOrDie();
  SpawnOptions duplicate = command({"/bin/true"});
  duplicate.fds = {{3, pipe.write.get()}, {3, pipe.read.get()}};
  EXPECT_EQ(ChildProcess::spawn(duplicate).status().code(), absl::StatusCode::kInvalidArgument);

  SpawnOptions closed = command({"/bin/true"});
  closed.fds = {{3, 1'000'000}};
  absl::StatusOr<ChildProcess> child = ChildProcess::spawn(closed);
  EXPECT_FALSE(child.ok());
  EXPECT_NE(child.status().message().find("parent descriptor 1000000"), absl::string_view::npos)
      << child.status();
}

TEST(ChildProcessTest, ConnectsUnlistedStandardDescriptorsToDevNull) {
  ChildProcess child = spawnOrDie(command({"/bin/sleep", "100"}));
  for (int fd = 0; fd <= 2; ++fd) {
    std::string link = fmt::format("/proc/{}/fd/{}", child.pid(), fd);
    char target[PATH_MAX] = {};
    ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
    EXPECT_EQ(std::string(target, static_cast<size_t>(std::max<ssize_t>(n, 0))), "/dev/null")
        << link;
  }
}

TEST(ChildProcessTest, InheritsOnlyListedDescriptors) {
  // Neither close-on-exec nor low: spawn() must close it anyway.
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(devnull.valid());
  UniqueFd leaky(::fcntl(devnull.get(), F_DUPFD, 20));
  ASSERT_TRUE(leaky.valid());
  Pipe pipe = pipeOrDie();
  SpawnOptions options = command({"/bin/ls", "-1", "/proc/self/fd"});
  options.fds = {{1, pipe.write.get()}};
  ChildProcess child = spawnOrDie(options);
  pipe.write.reset();
  // 3 is the directory ls is listing.
  EXPECT_EQ(lines(readAll(pipe.read.get())), (std::set<std::string>{"0", "1", "2", "3"}));
  EXPECT_EQ(waitOrDie(child).code, 0);
}

TEST(ChildProcessTest, AddsAndReplacesEnvironment) {
  Pipe pipe = pipeOrDie();
  SpawnOptions options = command({"/bin/sh", "-c", "echo \"$FLOTILLA_TEST_VALUE|$HOME|$PATH\""});
  options.env = {"FLOTILLA_TEST_VALUE=a b=c", "HOME=/flotilla-home"};
  options.fds = {{1, pipe.write.get()}};
  ChildProcess child = spawnOrDie(options);
  pipe.write.reset();
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): no setenv here
  EXPECT_EQ(readAll(pipe.read.get()),
            fmt::format("a b=c|/flotilla-home|{}\n", path != nullptr ? path : ""));
  EXPECT_EQ(waitOrDie(child).code, 0);
}

TEST(ChildProcessTest, RejectsMalformedEnvironment) {
  SpawnOptions options = command({"/bin/true"});
  options.env = {"NO_EQUALS_SIGN"};
  absl::StatusOr<ChildProcess> child = ChildProcess::spawn(options);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(child.status().message().find("NO_EQUALS_SIGN"), absl::string_view::npos);
}

TEST(ChildProcessTest, RunsInWorkingDirectory) {
  char dir_template[] = "/tmp/flotilla-process-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  char resolved[PATH_MAX];
  ASSERT_NE(::realpath(dir.c_str(), resolved), nullptr);

  Pipe pipe = pipeOrDie();
  SpawnOptions options = command({"/bin/pwd", "-P"});
  options.cwd = dir;
  options.fds = {{1, pipe.write.get()}};
  ChildProcess child = spawnOrDie(options);
  pipe.write.reset();
  EXPECT_EQ(readAll(pipe.read.get()), fmt::format("{}\n", resolved));
  EXPECT_EQ(waitOrDie(child).code, 0);
  ::rmdir(dir.c_str());
}

TEST(ChildProcessTest, MissingWorkingDirectoryIsNamed) {
  SpawnOptions options = command({"/bin/true"});
  options.cwd = "/nonexistent-flotilla-directory";
  absl::StatusOr<ChildProcess> child = ChildProcess::spawn(options);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(child.status().message().find("/nonexistent-flotilla-directory"),
            absl::string_view::npos)
      << child.status();
  EXPECT_EQ(child.status().message().find("is it installed"), absl::string_view::npos)
      << child.status();
}

TEST(ChildProcessTest, MissingProgramIsNotFound) {
  for (const char* program : {"flotilla-no-such-program", "/nonexistent/flotilla-program"}) {
    absl::StatusOr<ChildProcess> child = ChildProcess::spawn(command({program, "--flag"}));
    ASSERT_FALSE(child.ok());
    EXPECT_EQ(child.status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(child.status().message(),
              fmt::format("cannot run '{}': No such file or directory (is it installed? see "
                          "deploy/install-deps.sh)",
                          program));
  }
}

TEST(ChildProcessTest, NonExecutableProgramIsAnError) {
  char path[] = "/tmp/flotilla-process-test-XXXXXX";
  UniqueFd file(::mkstemp(path));
  ASSERT_TRUE(file.valid());
  ASSERT_EQ(::fchmod(file.get(), 0644), 0);
  absl::StatusOr<ChildProcess> child = ChildProcess::spawn(command({path}));
  ::unlink(path);
  ASSERT_FALSE(child.ok());
  EXPECT_EQ(child.status().code(), absl::StatusCode::kPermissionDenied) << child.status();
  EXPECT_NE(child.status().message().find(fmt::format("cannot run '{}'", path)),
            absl::string_view::npos)
      << child.status();
}

TEST(ChildProcessTest, EmptyArgvIsInvalid) {
  EXPECT_EQ(ChildProcess::spawn(SpawnOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChildProcessTest, StartsWithDefaultSignalsAndEmptyMask) {
  // Block SIGTERM in this thread and ignore SIGUSR2 process-wide for the spawn only.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigset_t old_mask;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old_mask), 0);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_action {};
  ASSERT_EQ(::sigaction(SIGUSR2, &ignore, &old_action), 0);

  Pipe pipe = pipeOrDie();
  SpawnOptions options = command({"/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"});
  options.fds = {{1, pipe.write.get()}};
  absl::StatusOr<ChildProcess> child = ChildProcess::spawn(options);

  ::sigaction(SIGUSR2, &old_action, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ASSERT_TRUE(child.ok()) << child.status();
  pipe.write.reset();
  std::string status = readAll(pipe.read.get());
  EXPECT_EQ(waitOrDie(*child).code, 0);
  unsigned long long blocked = 0;
  unsigned long long ignored = 0;
  ASSERT_EQ(std::sscanf(status.c_str(), "SigBlk:\t%llx\nSigIgn:\t%llx", &blocked, &ignored), 2)
      << status;
  EXPECT_EQ(blocked, 0u) << status;
  // glibc's posix_spawn leaves its two internal signals (32 and 33, below SIGRTMIN) ignored
  // in the child; the program's own libc takes them back at startup.
  const unsigned long long glibc_internal = (1ull << (32 - 1)) | (1ull << (33 - 1));
  EXPECT_EQ(ignored & ~glibc_internal, 0u) << status;
}

TEST(ChildProcessTest, PutsChildInItsOwnProcessGroupWhenAsked) {
  ChildProcess grouped = spawnOrDie(command({"/bin/sleep", "100"}));
  EXPECT_EQ(::getpgid(grouped.pid()), grouped.pid());

  SpawnOptions options = command({"/bin/sleep", "100"});
  options.new_process_group = false;
  ChildProcess shared = spawnOrDie(options);
  EXPECT_EQ(::getpgid(shared.pid()), ::getpgrp());
}

TEST(ChildProcessTest, WaitTimesOutThenSucceeds) {
  Pipe input = pipeOrDie();
  SpawnOptions options = command({"/bin/cat"});
  options.fds = {{0, input.read.get()}};
  ChildProcess child = spawnOrDie(options);
  input.read.reset();

  absl::StatusOr<ExitStatus> early = child.wait(absl::Milliseconds(10));
  EXPECT_EQ(early.status().code(), absl::StatusCode::kDeadlineExceeded) << early.status();
  EXPECT_NE(early.status().message().find("/bin/cat"), absl::string_view::npos);
  EXPECT_EQ(child.wait(absl::ZeroDuration()).status().code(), absl::StatusCode::kDeadlineExceeded);

  input.write.reset();  // EOF: cat exits
  EXPECT_EQ(waitOrDie(child).code, 0);
  // Reaped: later calls return the same status.
  absl::StatusOr<ExitStatus> again = child.wait(absl::ZeroDuration());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->code, 0);
}

TEST(ChildProcessTest, SignalReachesProcessWithOrWithoutGroup) {
  for (bool group : {true, false}) {
    SpawnOptions options = command({"/bin/sleep", "100"});
    options.new_process_group = group;
    ChildProcess child = spawnOrDie(options);
    ASSERT_TRUE(child.signal(SIGTERM).ok());
    EXPECT_EQ(waitOrDie(child).signal, SIGTERM) << "group " << group;
    absl::Status after = child.signal(SIGTERM);
    EXPECT_EQ(after.code(), absl::StatusCode::kFailedPrecondition) << after;
  }
}

TEST(ChildProcessTest, TerminateUsesSigtermFirst) {
  ChildProcess child = spawnOrDie(command({"/bin/sleep", "100"}));
  absl::StatusOr<ExitStatus> status = child.terminate(absl::Seconds(60));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->signal, SIGTERM);
  // Already reaped: the same status again.
  EXPECT_EQ(child.terminate(absl::Seconds(1))->signal, SIGTERM);
}

TEST(ChildProcessTest, TerminateFallsBackToSigkill) {
  Pipe ready = pipeOrDie();
  SpawnOptions options =
      command({"/bin/sh", "-c", "trap '' TERM; echo ready; exec /bin/sleep 100"});
  options.fds = {{1, ready.write.get()}};
  ChildProcess child = spawnOrDie(options);
  ready.write.reset();
  ASSERT_EQ(readLine(ready.read.get()), "ready\n");  // SIGTERM is ignored from here on

  absl::StatusOr<ExitStatus> status = child.terminate(absl::Milliseconds(100));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->signal, SIGKILL);
}

TEST(ChildProcessTest, DestructorKillsAndReaps) {
  pid_t pid = -1;
  {
    ChildProcess child = spawnOrDie(command({"/bin/sleep", "100"}));
    pid = child.pid();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(::kill(pid, 0), 0);
  }
  // Reaped, not just killed: a zombie would still answer kill(pid, 0).
  EXPECT_TRUE(pidIsGone(pid));
}

TEST(ChildProcessTest, DestructorKillsTheProcessGroup) {
  Pipe out = pipeOrDie();
  SpawnOptions options = command({"/bin/sh", "-c", "/bin/sleep 100 & echo $!; wait"});
  options.fds = {{1, out.write.get()}};
  pid_t grandchild = -1;
  {
    ChildProcess child = spawnOrDie(options);
    out.write.reset();
    grandchild = std::atoi(readLine(out.read.get()).c_str());
    ASSERT_GT(grandchild, 0);
    ASSERT_TRUE(isRunning(grandchild));
  }
  EXPECT_TRUE(stopsRunning(grandchild));
}

TEST(ChildProcessTest, ReleaseLeavesItRunning) {
  ChildProcess child = spawnOrDie(command({"/bin/sleep", "100"}));
  ASSERT_TRUE(child.valid());
  const pid_t expected = child.pid();
  pid_t pid = child.release();
  EXPECT_EQ(pid, expected);
  EXPECT_FALSE(child.valid());
  EXPECT_EQ(child.pid(), -1);
  EXPECT_EQ(child.wait().status().code(), absl::StatusCode::kFailedPrecondition);
  { ChildProcess destroyed = std::move(child); }
  EXPECT_EQ(::kill(pid, 0), 0);
  EXPECT_TRUE(isRunning(pid));
  killAndReapPid(pid);
}

TEST(ChildProcessTest, MoveTransfersOwnership) {
  ChildProcess first = spawnOrDie(command({"/bin/sleep", "100"}));
  const pid_t first_pid = first.pid();
  ChildProcess moved(std::move(first));
  EXPECT_FALSE(first.valid());   // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(first.pid(), -1);    // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(first.pidfd(), -1);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(moved.pid(), first_pid);

  ChildProcess second = spawnOrDie(command({"/bin/sleep", "100"}));
  const pid_t second_pid = second.pid();
  second = std::move(moved);  // kills and reaps what `second` owned
  EXPECT_TRUE(pidIsGone(second_pid));
  EXPECT_EQ(second.pid(), first_pid);
  EXPECT_TRUE(isRunning(first_pid));

  absl::StatusOr<ExitStatus> status = second.terminate(absl::Seconds(60));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->signal, SIGTERM);
}

TEST(ChildProcessTest, DefaultConstructedOwnsNothing) {
  ChildProcess none;
  EXPECT_FALSE(none.valid());
  EXPECT_EQ(none.wait().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(none.signal(SIGTERM).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(none.terminate(absl::Seconds(1)).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flotilla
