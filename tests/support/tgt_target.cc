// A real tgtd for integration tests (see tgt_target.h).
#include "tests/support/tgt_target.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/command.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"

namespace flotilla::testing {
namespace {

constexpr char kRunDir[] = "/var/run/tgtd";  // tgtd's control sockets: socket.N, socket.N.lock
constexpr int kStartAttempts = 8;

// tgtd and tgtadm live in /usr/sbin, which a non-login PATH may lack.
absl::StatusOr<std::string> findSbinProgram(const std::string& name) {
  absl::StatusOr<std::string> found = findProgram(name, "tgt");
  if (found.ok()) return found;
  const std::string candidate = "/usr/sbin/" + name;
  if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  return found.status();
}

// Whether a running tgtd holds the lock of control instance `n` (tgtd takes it with lockf).
bool controlInstanceInUse(int n) {
  UniqueFd fd(::open(fmt::format("{}/socket.{}.lock", kRunDir, n).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;  // never used, or cleaned up
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 0;
  if (::fcntl(fd.get(), F_GETLK, &probe) != 0) return true;  // cannot tell: avoid it
  return probe.l_type != F_UNLCK;
}

}  // namespace

TgtTarget::TgtTarget(std::unique_ptr<TgtDaemon> daemon, std::string backing_file,
                     TgtTargetOptions options)
    : daemon_(std::move(daemon)),
      backing_file_(std::move(backing_file)),
      options_(std::move(options)) {}

TgtTarget::~TgtTarget() = default;  // the daemon stops itself

absl::StatusOr<std::unique_ptr<TgtTarget>> TgtTarget::start(const std::string& backing_file,
                                                            TgtTargetOptions options) {
  if (::access(backing_file.c_str(), R_OK | W_OK) != 0) {
    return errnoStatus(errno, fmt::format("the LUN's backing file {}", backing_file));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<TgtDaemon> daemon, TgtDaemon::start());
  std::unique_ptr<TgtTarget> target(
      new TgtTarget(std::move(daemon), backing_file, std::move(options)));
  RETURN_IF_ERROR(target->configure());
  return target;
}

std::string TgtTarget::portal() const {
  return daemon_->portal();
}

std::string TgtTarget::url(int lun) const {
  return fmt::format("iscsi://{}/{}/{}", portal(), options_.iqn, lun);
}

std::string TgtTarget::logTail() const {
  return daemon_->logTail();
}

absl::Status TgtTarget::configure() {
  RETURN_IF_ERROR(daemon_
                      ->tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1",
                                "-T", options_.iqn})
                      .status());
  RETURN_IF_ERROR(daemon_
                      ->tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid",
                                "1", "--lun", "1", "-b", backing_file_})
                      .status());
  if (options_.thin_provisioning) {
    RETURN_IF_ERROR(daemon_
                        ->tgtadm({"--lld", "iscsi", "--op", "update", "--mode", "logicalunit",
                                  "--tid", "1", "--lun", "1", "--params", "thin_provisioning=1"})
                        .status());
  }
  return daemon_
      ->tgtadm({"--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"})
      .status();
}

bool TgtTarget::running() {
  return daemon_->running();
}

absl::Status TgtTarget::stop() {
  return daemon_->stop();
}

absl::Status TgtTarget::kill() {
  return daemon_->kill();
}

absl::Status TgtTarget::startAgain() {
  RETURN_IF_ERROR(daemon_->startAgain());
  return configure();
}

absl::Status TgtTarget::restart() {
  RETURN_IF_ERROR(stop());
  return startAgain();
}

// ---- TgtDaemon ----

TgtDaemon::TgtDaemon(std::string tgtd, std::string tgtadm)
    : tgtd_(std::move(tgtd)), tgtadm_(std::move(tgtadm)) {}

TgtDaemon::~TgtDaemon() {
  (void)stop();
}

absl::StatusOr<std::unique_ptr<TgtDaemon>> TgtDaemon::start(std::string address,
                                                            const PortPicker& pick_port) {
  ASSIGN_OR_RETURN(std::string tgtd, findSbinProgram("tgtd"));
  ASSIGN_OR_RETURN(std::string tgtadm, findSbinProgram("tgtadm"));
  std::error_code error;
  std::filesystem::create_directories(kRunDir, error);
  if (error) {
    return absl::FailedPreconditionError(fmt::format(
        "tgtd needs the directory {}, which cannot be created ({}): run the integration tests "
        "as root",
        kRunDir, error.message()));
  }
  std::unique_ptr<TgtDaemon> daemon(new TgtDaemon(std::move(tgtd), std::move(tgtadm)));
  daemon->address_ = std::move(address);
  std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  absl::Status last;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    const int control = 1000 + static_cast<int>(random() % 31000);
    if (controlInstanceInUse(control)) continue;
    daemon->control_ = control;
    ASSIGN_OR_RETURN(daemon->port_, pick_port());
    last = daemon->launch();
    if (last.ok()) return daemon;
  }
  return annotate(last, fmt::format("starting tgtd ({} attempts)", kStartAttempts));
}

std::string TgtDaemon::portal() const {
  return fmt::format("{}:{}", address_, port_);
}

std::string TgtDaemon::logTail() const {
  return fileTail(dir_.file("tgtd.log"));
}

absl::StatusOr<std::string> TgtDaemon::tgtadm(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {tgtadm_, "-C", std::to_string(control_)};
  argv.insert(argv.end(), args.begin(), args.end());
  SystemCommandRunner runner;
  CommandOptions options;
  options.timeout = absl::Seconds(15);
  return runChecked(runner, argv, options);
}

absl::Status TgtDaemon::launch() {
  const std::string log_path = dir_.file("tgtd.log");
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) return errnoStatus(errno, fmt::format("opening {}", log_path));
  SpawnOptions spawn;
  spawn.argv = {
      tgtd_, "-f", "-C", std::to_string(control_), "--iscsi", fmt::format("portal={}", portal())};
  spawn.fds = {{1, log.get()}, {2, log.get()}};
  ASSIGN_OR_RETURN(process_, ChildProcess::spawn(spawn));
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + absl::Seconds(20);
  absl::Status last;
  while (clock.monotonicNow() < deadline) {
    absl::StatusOr<ExitStatus> exited = process_.wait(absl::ZeroDuration());
    if (exited.ok()) {
      process_ = ChildProcess();
      return absl::UnavailableError(fmt::format("tgtd -C {} on {} {} at start; its output:\n{}",
                                                control_, portal(), exited->describe(), logTail()));
    }
    last = tgtadm({"--op", "show", "--mode", "sys"}).status();
    if (last.ok()) return checkPortal();
    clock.sleepFor(absl::Milliseconds(20));
  }
  (void)process_.signal(SIGKILL);
  (void)process_.wait(absl::Seconds(10));
  process_ = ChildProcess();
  return absl::DeadlineExceededError(
      fmt::format("tgtd -C {} did not answer on its control socket: {}; its output:\n{}", control_,
                  last.message(), logTail()));
}

absl::Status TgtDaemon::checkPortal() {
  // tgtd that cannot bind its portal runs on without it (it listens on 0.0.0.0:3260 instead),
  // and whatever holds the port would answer the test's logins.
  absl::StatusOr<std::string> portals =
      tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "portal"});
  if (portals.ok() && absl::StrContains(*portals, fmt::format("Portal: {},", portal()))) {
    return absl::OkStatus();
  }
  const std::string output = logTail();
  (void)kill();
  return absl::UnavailableError(fmt::format(
      "tgtd -C {} does not listen on its portal {} (its portals: {}); its output:\n{}", control_,
      portal(), portals.ok() ? *portals : portals.status().ToString(), output));
}

bool TgtDaemon::running() {
  return process_.valid() && !process_.wait(absl::ZeroDuration()).ok();
}

absl::Status TgtDaemon::stop() {
  if (!process_.valid()) return absl::OkStatus();
  if (running()) {
    // SIGTERM does not stop tgtd; deleting its targets and then the "system" does.
    absl::StatusOr<std::string> shown =
        tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "target"});
    if (shown.ok()) {
      std::istringstream lines(*shown);
      std::string line;
      while (std::getline(lines, line)) {
        int tid = 0;
        if (std::sscanf(line.c_str(), "Target %d:", &tid) == 1) {
          (void)tgtadm({"--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid",
                        std::to_string(tid), "--force"});
        }
      }
    }
    (void)tgtadm({"--op", "delete", "--mode", "system"});
  }
  absl::StatusOr<ExitStatus> exited = process_.wait(absl::Seconds(15));
  if (!exited.ok()) {
    (void)process_.signal(SIGKILL);
    exited = process_.wait(absl::Seconds(15));
  }
  if (!exited.ok()) {
    return annotate(exited.status(), fmt::format("stopping tgtd (pid {})", process_.pid()));
  }
  process_ = ChildProcess();
  removeControlSocket();
  return absl::OkStatus();
}

absl::Status TgtDaemon::kill() {
  if (!process_.valid()) return absl::OkStatus();
  (void)process_.signal(SIGKILL);
  absl::StatusOr<ExitStatus> exited = process_.wait(absl::Seconds(15));
  if (!exited.ok()) {
    return annotate(exited.status(), fmt::format("killing tgtd (pid {})", process_.pid()));
  }
  process_ = ChildProcess();
  removeControlSocket();
  return absl::OkStatus();
}

absl::Status TgtDaemon::startAgain() {
  if (process_.valid()) {
    return absl::FailedPreconditionError("tgtd is still running: stop() it first");
  }
  return launch();
}

absl::Status TgtDaemon::restart() {
  RETURN_IF_ERROR(stop());
  return startAgain();
}

void TgtDaemon::removeControlSocket() {
  if (control_ == 0) return;
  (void)::unlink(fmt::format("{}/socket.{}", kRunDir, control_).c_str());
  (void)::unlink(fmt::format("{}/socket.{}.lock", kRunDir, control_).c_str());
}

}  // namespace flotilla::testing
