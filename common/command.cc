// SystemCommandRunner, runChecked and formatCommandLine (see command.h). One thread drives a
// command through a single poll() loop over its standard input, output and error pipes and
// its pidfd, so that neither side can block the other however much either writes.
#include "common/command.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "common/clock.h"
#include "common/sigpipe.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"

namespace flotilla {
namespace {

constexpr size_t kChunkBytes = size_t{64} * 1024;
// How much of a command's output an error message quotes.
constexpr size_t kExcerptBytes = 2000;

// The end of `text` without trailing whitespace, shortened to its last kExcerptBytes (the
// end of an error output usually says what went wrong); "(none)" when there is nothing.
std::string excerpt(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\t' ||
                           text.back() == '\r')) {
    text.remove_suffix(1);
  }
  if (text.empty()) return "(none)";
  if (text.size() <= kExcerptBytes) return std::string(text);
  return fmt::format("...{}", text.substr(text.size() - kExcerptBytes));
}

bool isShellSafe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("_-+=:,./@%").find(c) != std::string_view::npos;
}

absl::Status setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return errnoStatus(errno, "making a pipe non-blocking");
  }
  return absl::OkStatus();
}

// write() to a pipe whose reader may have gone, without SIGPIPE killing this process
// (common/sigpipe.h says why a guard, not SIG_IGN or MSG_NOSIGNAL).
ssize_t writeWithoutSigpipe(int fd, const char* data, size_t size) {
  SigpipeGuard guard;
  return ::write(fd, data, size);
}

// One running command: its pipes, what it has written so far, and the deadline.
class CommandSession {
 public:
  CommandSession(const std::vector<std::string>& argv, const CommandOptions& options)
      : command_line_(formatCommandLine(argv)), options_(options) {}

  absl::StatusOr<CommandResult> run(const std::vector<std::string>& argv);

 private:
  struct Stream {
    UniqueFd fd;
    std::string data;
    const char* name;
  };

  absl::Status start(const std::vector<std::string>& argv);
  absl::Status pumpInput();
  absl::Status pumpOutput(Stream& stream);
  absl::Status killed(absl::Status status);
  absl::Status timedOut();

  const std::string command_line_;
  const CommandOptions& options_;
  ChildProcess child_;
  UniqueFd input_;  // our end of the command's standard input, while there is more to write
  size_t input_written_ = 0;
  Stream out_{UniqueFd(), std::string(), "standard output"};
  Stream err_{UniqueFd(), std::string(), "standard error"};
  bool exited_ = false;  // its pidfd became readable; it is reaped only at the end
};

absl::Status CommandSession::start(const std::vector<std::string>& argv) {
  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.env = options_.env;
  spawn.new_process_group = true;  // so that a timeout kills what the command started
  ASSIGN_OR_RETURN(Pipe out, makePipe());
  ASSIGN_OR_RETURN(Pipe err, makePipe());
  spawn.fds = {{STDOUT_FILENO, out.write.get()}, {STDERR_FILENO, err.write.get()}};
  std::optional<Pipe> in;
  if (!options_.input.empty()) {  // otherwise standard input is /dev/null
    ASSIGN_OR_RETURN(in, makePipe());
    spawn.fds.emplace_back(STDIN_FILENO, in->read.get());
  }
  ASSIGN_OR_RETURN(child_, ChildProcess::spawn(spawn));
  // Our pipe ends are close-on-exec and spawn() closes everything unlisted in the child, so
  // the command holds only its own ends. Once our copies of those close, EOF on output
  // means every process holding them has exited or closed them.
  out_.fd = std::move(out.read);
  err_.fd = std::move(err.read);
  RETURN_IF_ERROR(setNonBlocking(out_.fd.get()));
  RETURN_IF_ERROR(setNonBlocking(err_.fd.get()));
  if (in.has_value()) {
    input_ = std::move(in->write);
    RETURN_IF_ERROR(setNonBlocking(input_.get()));
  }
  return absl::OkStatus();
}

absl::Status CommandSession::pumpInput() {
  const std::string& input = options_.input;
  size_t size = std::min(input.size() - input_written_, kChunkBytes);
  ssize_t n = writeWithoutSigpipe(input_.get(), input.data() + input_written_, size);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return absl::OkStatus();
    // The command closed its standard input without reading it all: its business.
    if (errno == EPIPE) {
      input_.reset();
      return absl::OkStatus();
    }
    return errnoStatus(errno, "writing to the command's standard input");
  }
  input_written_ += static_cast<size_t>(n);
  if (input_written_ == input.size()) input_.reset();  // EOF for the command
  return absl::OkStatus();
}

absl::Status CommandSession::pumpOutput(Stream& stream) {
  // Never read more than one byte past the limit: that byte is enough to know it is exceeded.
  // (The stream is closed as soon as its data exceeds the limit, so room cannot wrap.)
  const size_t room = options_.max_output_bytes - stream.data.size();
  const size_t want = room >= kChunkBytes ? kChunkBytes : room + 1;
  const size_t old_size = stream.data.size();
  stream.data.resize(old_size + want);
  ssize_t n = ::read(stream.fd.get(), stream.data.data() + old_size, want);
  const int read_error = errno;
  stream.data.resize(old_size + static_cast<size_t>(std::max<ssize_t>(n, 0)));
  if (n < 0) {
    if (read_error == EAGAIN || read_error == EINTR) return absl::OkStatus();
    return errnoStatus(read_error, fmt::format("reading the command's {}", stream.name));
  }
  if (n == 0) {
    stream.fd.reset();
    return absl::OkStatus();
  }
  if (stream.data.size() > options_.max_output_bytes) {
    return absl::ResourceExhaustedError(
        fmt::format("wrote more than {} bytes to {} and was killed (raise "
                    "CommandOptions::max_output_bytes if that much output is expected)",
                    options_.max_output_bytes, stream.name));
  }
  return absl::OkStatus();
}

// Kills the command's whole process group and reaps the command, then returns `status`
// (every error once the command runs ends this way: nothing is left running).
// The command is never reaped before this point, so its group id is still its own.
absl::Status CommandSession::killed(absl::Status status) {
  (void)child_.signal(SIGKILL);
  (void)child_.wait();
  return status;
}

absl::Status CommandSession::timedOut() {
  const std::string timeout = absl::FormatDuration(options_.timeout);
  std::string what;
  if (exited_) {
    what = fmt::format(
        "exited, but what it started kept its output open for {}; those processes were killed",
        timeout);
  } else {
    what = fmt::format("timed out after {} and was killed", timeout);
  }
  return killed(absl::DeadlineExceededError(
      fmt::format("`{}` {}; standard error so far: {}", command_line_, what, excerpt(err_.data))));
}

absl::StatusOr<CommandResult> CommandSession::run(const std::vector<std::string>& argv) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + options_.timeout;
  absl::Status started = start(argv);
  if (!started.ok()) return annotate(started, fmt::format("`{}`", command_line_));

  // Until the command has exited and both of its output pipes are at EOF.
  while (!exited_ || out_.fd.valid() || err_.fd.valid()) {
    absl::Duration remaining = deadline - clock.monotonicNow();
    if (remaining <= absl::ZeroDuration()) return timedOut();

    std::array<pollfd, 4> entries{};
    nfds_t count = 0;
    auto watch = [&](const UniqueFd& fd, int16_t events) -> pollfd* {
      if (!fd.valid()) return nullptr;
      entries[count] = pollfd{.fd = fd.get(), .events = events, .revents = 0};
      return &entries[count++];
    };
    pollfd* in_entry = watch(input_, POLLOUT);
    pollfd* out_entry = watch(out_.fd, POLLIN);
    pollfd* err_entry = watch(err_.fd, POLLIN);
    // Once readable, a pidfd stays readable: stop watching it.
    pollfd* exit_entry = exited_ ? nullptr : &entries[count++];
    if (exit_entry != nullptr)
      *exit_entry = pollfd{.fd = child_.pidfd(), .events = POLLIN, .revents = 0};

    int ready = ::poll(entries.data(), count, pollTimeoutMs(remaining));
    if (ready < 0) {
      const int error = errno;
      if (error == EINTR) continue;
      return killed(errnoStatus(error, fmt::format("`{}`: polling its pipes", command_line_)));
    }
    // POLLERR on our end of standard input means the command closed its end: the next
    // write reports EPIPE and closes ours.
    if (in_entry != nullptr && in_entry->revents != 0) {
      absl::Status status = pumpInput();
      if (!status.ok()) return killed(annotate(status, fmt::format("`{}`", command_line_)));
    }
    for (auto [entry, stream] : {std::pair{out_entry, &out_}, std::pair{err_entry, &err_}}) {
      if (entry == nullptr || entry->revents == 0) continue;
      absl::Status status = pumpOutput(*stream);
      if (!status.ok()) return killed(annotate(status, fmt::format("`{}`", command_line_)));
    }
    if (exit_entry != nullptr && exit_entry->revents != 0) exited_ = true;
  }

  CommandResult result;
  absl::StatusOr<ExitStatus> status = child_.wait();
  if (!status.ok()) return annotate(status.status(), fmt::format("`{}`", command_line_));
  result.status = *status;
  result.out = std::move(out_.data);
  result.err = std::move(err_.data);
  return result;
}

}  // namespace

absl::StatusOr<CommandResult> SystemCommandRunner::run(const std::vector<std::string>& argv,
                                                       const CommandOptions& options) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("cannot run a command: argv is empty");
  }
  CommandSession session(argv, options);
  return session.run(argv);
}

absl::StatusOr<std::string> runChecked(CommandRunner& runner, const std::vector<std::string>& argv,
                                       const CommandOptions& options) {
  ASSIGN_OR_RETURN(CommandResult result, runner.run(argv, options));
  if (result.status.success()) return std::move(result.out);
  std::string detail;
  if (result.err.find_first_not_of(" \t\r\n") != std::string::npos) {
    detail = fmt::format(": {}", excerpt(result.err));
  } else if (result.out.find_first_not_of(" \t\r\n") != std::string::npos) {
    // Some tools report errors on standard output; better that than nothing.
    detail = fmt::format(" (no standard error; standard output: {})", excerpt(result.out));
  }
  return absl::InternalError(
      fmt::format("`{}`: {}{}", formatCommandLine(argv), result.status.describe(), detail));
}

std::string formatCommandLine(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    if (!line.empty()) line += ' ';
    if (!arg.empty() && std::all_of(arg.begin(), arg.end(), isShellSafe)) {
      line += arg;
      continue;
    }
    // Inside single quotes nothing is special but the quote itself, which is written as
    // quote, escaped quote, quote: 'it'\''s'.
    line += '\'';
    for (char c : arg) {
      if (c == '\'') {
        line += "'\\''";
      } else {
        line += c;
      }
    }
    line += '\'';
  }
  return line;
}

}  // namespace flotilla
