// ChildProcess (see process.h). Children are started with posix_spawnp, never fork(): after
// fork() a multi-threaded process may only call async-signal-safe functions, and glibc's
// posix_spawn (clone with CLONE_VM | CLONE_VFORK) needs neither. The child is then held
// through a pidfd, which cannot be confused with a later process that reuses the pid.
#include "common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS, so C++ would mangle these C functions.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/clock.h"
#include "common/status.h"
#include "fmt/format.h"

extern char** environ;

namespace flotilla {
namespace {

// posix_spawn_file_actions_t and posix_spawnattr_t as scoped objects. Their init functions
// only zero memory (they cannot fail on glibc).
class FileActions {
 public:
  FileActions() { posix_spawn_file_actions_init(&actions_); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_;
};

class SpawnAttributes {
 public:
  SpawnAttributes() { posix_spawnattr_init(&attr_); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attr_); }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

// The posix_spawn_* setters return an error number instead of setting errno.
absl::Status checkSpawnCall(int rc, std::string_view program, std::string_view what) {
  if (rc == 0) return absl::OkStatus();
  return errnoStatus(rc, fmt::format("preparing to run '{}': {}", program, what));
}

// The parent's environment with `extra` ("NAME=value") added, or replacing the parent's
// entries of the same name.
absl::StatusOr<std::vector<std::string>> buildEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> entries;
  absl::flat_hash_map<std::string, size_t> index_by_name;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    index_by_name.emplace(std::string(text.substr(0, text.find('='))), entries.size());
    entries.emplace_back(text);
  }
  for (const std::string& entry : extra) {
    size_t equals = entry.find('=');
    if (equals == 0 || equals == std::string::npos) {
      return absl::InvalidArgumentError(
          fmt::format("environment entry '{}' is not of the form NAME=value", entry));
    }
    auto [it, inserted] = index_by_name.emplace(entry.substr(0, equals), entries.size());
    if (inserted) {
      entries.push_back(entry);
    } else {
      entries[it->second] = entry;
    }
  }
  return entries;
}

std::vector<char*> nullTerminated(const std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  // posix_spawn's prototype predates const; it does not modify the strings.
  for (const std::string& s : strings) pointers.push_back(const_cast<char*>(s.c_str()));
  pointers.push_back(nullptr);
  return pointers;
}

// Adds the file actions that give the child exactly the descriptors in `fds` (plus /dev/null
// on unlisted 0, 1 and 2). `staged` receives close-on-exec copies of the parent descriptors,
// which must stay open until the spawn.
absl::Status addDescriptorActions(const SpawnOptions& options, FileActions& actions,
                                  std::vector<UniqueFd>& staged) {
  const std::string& program = options.argv[0];
  absl::flat_hash_set<int> targets;
  int highest_target = 2;
  for (const auto& [target, source] : options.fds) {
    // (INT_MAX: the copies below go above the highest target.)
    if (target < 0 || target == INT_MAX || !targets.insert(target).second) {
      return absl::InvalidArgumentError(fmt::format(
          "running '{}': child descriptor {} is out of range or listed twice", program, target));
    }
    highest_target = std::max(highest_target, target);
  }
  // The actions run in order in the child, so a mapping such as {0, 5}, {5, 0} would
  // clobber parent descriptor 5 (or 0) before it is read. Copying every source above the
  // highest target first makes each dup2 read a descriptor that no earlier dup2 wrote, and
  // makes source != target, so that dup2 clears close-on-exec on every target (dup2 onto
  // the same number leaves the flag alone).
  for (const auto& [target, source] : options.fds) {
    int copy = ::fcntl(source, F_DUPFD_CLOEXEC, highest_target + 1);
    if (copy < 0) {
      const int error = errno;
      return errnoStatus(error, fmt::format("running '{}': parent descriptor {} for child "
                                            "descriptor {}",
                                            program, source, target));
    }
    staged.emplace_back(copy);
    RETURN_IF_ERROR(checkSpawnCall(posix_spawn_file_actions_adddup2(actions.get(), copy, target),
                                   program, fmt::format("mapping descriptor {}", target)));
  }
  for (int fd = 0; fd <= 2; ++fd) {
    if (targets.contains(fd)) continue;
    RETURN_IF_ERROR(checkSpawnCall(
        posix_spawn_file_actions_addopen(actions.get(), fd, "/dev/null",
                                         fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0),
        program, "opening /dev/null"));
  }
  // Closing a descriptor that is not open is not an error for posix_spawn (glibc only
  // fails for numbers beyond RLIMIT_NOFILE).
  for (int fd = 3; fd < highest_target; ++fd) {
    if (targets.contains(fd)) continue;
    RETURN_IF_ERROR(checkSpawnCall(posix_spawn_file_actions_addclose(actions.get(), fd), program,
                                   "closing descriptors"));
  }
  return checkSpawnCall(posix_spawn_file_actions_addclosefrom_np(actions.get(), highest_target + 1),
                        program, "closing descriptors");
}

absl::Status spawnError(int error, const std::string& program, const std::string& cwd) {
  // A failed chdir action fails posix_spawnp with the same error numbers as a failed exec
  // (ENOENT, EACCES, ...): tell the two apart before blaming the program.
  if (!cwd.empty()) {
    int cwd_error = 0;
    struct stat info {};
    if (::stat(cwd.c_str(), &info) != 0) {
      cwd_error = errno;
    } else if (!S_ISDIR(info.st_mode)) {
      cwd_error = ENOTDIR;
    } else if (::access(cwd.c_str(), X_OK) != 0) {
      cwd_error = EACCES;  // not searchable (the only way access(X_OK) fails on a directory)
    }
    if (cwd_error != 0) {
      return errnoStatus(cwd_error, fmt::format("cannot run '{}' in directory '{}'", program, cwd));
    }
  }
  absl::Status status = errnoStatus(error, fmt::format("cannot run '{}'", program));
  if (error == ENOENT) {
    return absl::NotFoundError(
        fmt::format("{} (is it installed? see deploy/install-deps.sh)", status.message()));
  }
  return status;
}

// True when `fd` becomes readable within `timeout`, false at the deadline.
absl::StatusOr<bool> waitReadable(int fd, absl::Duration timeout) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  while (true) {
    absl::Duration remaining = deadline - clock.monotonicNow();
    pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
    int rc = ::poll(&entry, 1, pollTimeoutMs(remaining));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return errnoStatus(errno, "polling a pidfd");
    if (rc == 0 && remaining <= absl::ZeroDuration()) return false;
  }
}

ExitStatus exitStatusFrom(const siginfo_t& info) {
  ExitStatus status;
  if (info.si_code == CLD_EXITED) {
    status.code = info.si_status;
  } else {  // CLD_KILLED or CLD_DUMPED: WEXITED reports nothing else
    status.signal = info.si_status;
  }
  return status;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (signal > 0) {
    // sigdescr_np, unlike strsignal, is thread-safe; null for an unknown number.
    const char* text = sigdescr_np(signal);
    return fmt::format("killed by signal {} ({})", signal,
                       text != nullptr ? text : "unknown signal");
  }
  if (code >= 0) return fmt::format("exited with status {}", code);
  return "has not exited (or its status is unknown)";
}

absl::StatusOr<ChildProcess> ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("cannot run a process: argv is empty");
  }
  const std::string& program = options.argv[0];
  absl::StatusOr<std::vector<std::string>> environment = buildEnvironment(options.env);
  if (!environment.ok()) {
    return annotate(environment.status(), fmt::format("cannot run '{}'", program));
  }

  FileActions actions;
  std::vector<UniqueFd> staged;
  RETURN_IF_ERROR(addDescriptorActions(options, actions, staged));
  if (!options.cwd.empty()) {
    RETURN_IF_ERROR(
        checkSpawnCall(posix_spawn_file_actions_addchdir_np(actions.get(), options.cwd.c_str()),
                       program, "changing directory"));
  }

  // The child starts with no blocked signals and every signal at its default action: it
  // must not inherit, say, an ignored SIGPIPE or a blocked SIGTERM from our threads.
  SpawnAttributes attr;
  int flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    RETURN_IF_ERROR(
        checkSpawnCall(posix_spawnattr_setpgroup(attr.get(), 0), program, "process group"));
  }
  sigset_t no_signals;
  sigemptyset(&no_signals);
  sigset_t all_signals;
  sigfillset(&all_signals);
  RETURN_IF_ERROR(
      checkSpawnCall(posix_spawnattr_setsigmask(attr.get(), &no_signals), program, "signal mask"));
  RETURN_IF_ERROR(checkSpawnCall(posix_spawnattr_setsigdefault(attr.get(), &all_signals), program,
                                 "signal dispositions"));
  RETURN_IF_ERROR(checkSpawnCall(posix_spawnattr_setflags(attr.get(), static_cast<short>(flags)),
                                 program, "spawn flags"));

  std::vector<char*> argv = nullTerminated(options.argv);
  std::vector<char*> envp = nullTerminated(*environment);
  // PATH lookup uses our PATH, not one set through options.env.
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), actions.get(), attr.get(), argv.data(), envp.data());
  if (rc != 0) return spawnError(rc, program, options.cwd);
  // Never let a bogus pid reach kill() below: kill(-1) would signal every process we may.
  if (pid <= 1) {
    return absl::InternalError(
        fmt::format("running '{}': posix_spawnp succeeded without a valid pid ({})", program, pid));
  }

  // The child is ours and unreaped, so its pid cannot have been reused yet (unless SIGCHLD
  // is ignored, which Flotilla's binaries never do).
  int pidfd = pidfd_open(pid, 0);
  if (pidfd < 0) {
    int error = errno;
    ::kill(options.new_process_group ? -pid : pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return errnoStatus(error, fmt::format("running '{}': pidfd_open for pid {} (the process "
                                          "was killed)",
                                          program, pid));
  }
  return ChildProcess(pid, UniqueFd(pidfd), options.new_process_group, program);
}

ChildProcess::~ChildProcess() {
  killAndReap();
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      own_group_(std::exchange(other.own_group_, false)),
      reaped_(std::exchange(other.reaped_, false)),
      exit_status_(std::exchange(other.exit_status_, ExitStatus{})),
      program_(std::exchange(other.program_, std::string())) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    killAndReap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    own_group_ = std::exchange(other.own_group_, false);
    reaped_ = std::exchange(other.reaped_, false);
    exit_status_ = std::exchange(other.exit_status_, ExitStatus{});
    program_ = std::exchange(other.program_, std::string());
  }
  return *this;
}

absl::StatusOr<ExitStatus> ChildProcess::wait(absl::Duration timeout) {
  if (!valid()) return absl::FailedPreconditionError("waiting for a process: none is owned");
  if (reaped_) return exit_status_;
  absl::StatusOr<bool> exited = waitReadable(pidfd_.get(), timeout);
  if (!exited.ok()) {
    return annotate(exited.status(), fmt::format("waiting for '{}' (pid {})", program_, pid_));
  }
  if (!*exited) {
    return absl::DeadlineExceededError(fmt::format("'{}' (pid {}) is still running after {}",
                                                   program_, pid_, absl::FormatDuration(timeout)));
  }
  return reap();
}

absl::StatusOr<ExitStatus> ChildProcess::reap() {
  siginfo_t info{};
  while (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED) != 0) {
    if (errno == EINTR) continue;
    int error = errno;
    // ECHILD: something else reaped it (waitpid(-1) elsewhere, or SIGCHLD ignored). It is
    // gone either way; never wait for or signal it again.
    if (error == ECHILD) reaped_ = true;
    return errnoStatus(error, fmt::format("reaping '{}' (pid {})", program_, pid_));
  }
  reaped_ = true;
  exit_status_ = exitStatusFrom(info);
  return exit_status_;
}

absl::Status ChildProcess::signal(int sig) {
  if (!valid()) return absl::FailedPreconditionError("signalling a process: none is owned");
  if (reaped_) {
    return absl::FailedPreconditionError(
        fmt::format("cannot send signal {} to '{}' (pid {}): it has ended ({}) and been reaped",
                    sig, program_, pid_, exit_status_.describe()));
  }
  // While the leader is unreaped (even as a zombie) its group id cannot be reused, so
  // kill(-pid) reaches only its group. The leader may have moved to another group (setpgid,
  // setsid), so that signal can miss it (ESRCH when no one is left in the group): then it is
  // signalled on its own. SIGKILL, which has no effect the second time, always goes to the
  // leader too, so that a wait after it cannot hang.
  if (own_group_) {
    const bool group_signalled = ::kill(-pid_, sig) == 0;
    const int error = errno;
    if (sig != SIGKILL) {
      if (group_signalled) return absl::OkStatus();
      if (error != ESRCH) {
        return errnoStatus(error, fmt::format("sending signal {} to the process group of '{}' "
                                              "(pid {})",
                                              sig, program_, pid_));
      }
    }
  }
  // ESRCH: it has exited (not yet reaped), as kill() on a zombie would have said nothing.
  if (pidfd_send_signal(pidfd_.get(), sig, nullptr, 0) != 0 && errno != ESRCH) {
    const int error = errno;
    return errnoStatus(error,
                       fmt::format("sending signal {} to '{}' (pid {})", sig, program_, pid_));
  }
  return absl::OkStatus();
}

absl::StatusOr<ExitStatus> ChildProcess::terminate(absl::Duration grace) {
  if (!valid()) return absl::FailedPreconditionError("terminating a process: none is owned");
  if (reaped_) return exit_status_;
  RETURN_IF_ERROR(signal(SIGTERM));
  absl::StatusOr<bool> exited = waitReadable(pidfd_.get(), grace);
  if (!exited.ok()) {
    return annotate(exited.status(), fmt::format("terminating '{}' (pid {})", program_, pid_));
  }
  if (!*exited) RETURN_IF_ERROR(signal(SIGKILL));
  return wait();
}

pid_t ChildProcess::release() {
  pidfd_.reset();
  own_group_ = false;
  reaped_ = false;
  exit_status_ = ExitStatus{};
  program_.clear();
  return std::exchange(pid_, -1);
}

std::pair<pid_t, UniqueFd> ChildProcess::releaseWithPidfd() {
  UniqueFd pidfd = std::move(pidfd_);
  pid_t pid = release();
  return {pid, std::move(pidfd)};
}

void ChildProcess::killAndReap() {
  if (!valid() || reaped_) return;
  // As in signal(): the group, and the leader itself in case it left the group.
  if (own_group_) ::kill(-pid_, SIGKILL);
  pidfd_send_signal(pidfd_.get(), SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED) != 0 &&
         errno == EINTR) {
  }
  reaped_ = true;
}

}  // namespace flotilla
