// ChildProcess: sole owner of a child process, held through a pidfd. Destroying an owned,
// still running child kills (SIGKILL) and reaps it, so that no error path leaves a process
// behind; release() hands it off instead (the agent's VMMs outlive the agent).
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace flotilla {

// How a process ended.
struct ExitStatus {
  int code = -1;   // exit status when it exited, else -1
  int signal = 0;  // terminating signal when it was killed, else 0

  bool success() const { return code == 0; }
  // "exited with status 3", "killed by signal 9 (Killed)".
  std::string describe() const;
};

struct SpawnOptions {
  // argv[0] is looked up in PATH when it has no '/' (our PATH, not one set through env).
  std::vector<std::string> argv;
  // Variables added to (or replacing in) the parent's environment, as "NAME=value".
  std::vector<std::string> env;
  // Working directory; empty: the parent's.
  std::string cwd;
  // Descriptors the child receives, as {child fd number, parent descriptor}; the parent
  // descriptor is duplicated onto the child number. Standard input, output and error that
  // are not listed are connected to /dev/null. Every other descriptor is closed in the child.
  std::vector<std::pair<int, int>> fds;
  // Put the child in a process group of its own (so that a timeout can kill its children).
  bool new_process_group = true;
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts a process. Fails (nothing left running) when the program cannot be found or
  // executed; the message names the program.
  static absl::StatusOr<ChildProcess> spawn(const SpawnOptions& options);

  pid_t pid() const { return pid_; }
  // Readable when the process has exited; for poll/epoll loops.
  int pidfd() const { return pidfd_.get(); }
  bool valid() const { return pid_ > 0; }

  // Waits up to `timeout` for the process to exit and reaps it. DeadlineExceeded when it is
  // still running at the deadline. Once reaped, later calls return the same status.
  absl::StatusOr<ExitStatus> wait(absl::Duration timeout = absl::InfiniteDuration());

  // Sends `sig` to the process (and to its process group when it has one of its own).
  // FailedPrecondition once the process has been reaped (its pid may belong to another).
  absl::Status signal(int sig);

  // SIGTERM, up to `grace` to exit, then SIGKILL; reaps it. Both signals go to the process
  // group when the process has one of its own. An already reaped process: its status.
  absl::StatusOr<ExitStatus> terminate(absl::Duration grace);

  // Gives up ownership: the process keeps running and is not killed on destruction.
  // Returns its pid, or -1 when none is owned (check before kill()ing it: kill(-1) signals
  // every process we may). It is still our child: whoever takes it over reaps it (waitpid),
  // or it stays a zombie once it exits, until this process exits.
  pid_t release();
  // release(), handing over the pidfd too (for a supervisor that watches the process).
  std::pair<pid_t, UniqueFd> releaseWithPidfd();

 private:
  ChildProcess(pid_t pid, UniqueFd pidfd, bool own_group, std::string program)
      : pid_(pid), pidfd_(std::move(pidfd)), own_group_(own_group), program_(std::move(program)) {}
  void killAndReap();
  absl::StatusOr<ExitStatus> reap();

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool own_group_ = false;
  bool reaped_ = false;
  ExitStatus exit_status_;
  std::string program_;  // argv[0], for messages
};

}  // namespace flotilla
