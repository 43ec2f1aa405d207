// VmmProcess (see vmm_process.h).
#include "tests/support/vmm_process.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/clock.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "fmt/format.h"
#include "grpcpp/create_channel.h"

namespace flotilla::testing {
namespace {

std::string readWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

size_t occurrences(const std::string& haystack, std::string_view needle) {
  size_t count = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

}  // namespace

absl::Status requireKvm() {
  if (::access("/dev/kvm", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError(fmt::format(
        "this test runs VMs and needs read-write access to /dev/kvm: {} (run it on a host with "
        "KVM, as a user allowed to use it)",
        std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VmmProcess>> VmmProcess::start(const std::string& vmm_binary,
                                                              std::vector<std::string> args,
                                                              const TempDir& dir,
                                                              const std::string& name) {
  RETURN_IF_ERROR(requireKvm());
  std::string serial = dir.file(name + ".serial");
  std::string log = dir.file(name + ".log");
  std::string socket = dir.file(name + ".sock");
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log_fd.valid()) return errnoStatus(errno, fmt::format("creating {}", log));
  SpawnOptions options;
  options.argv = {vmm_binary};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.argv.push_back("--serial");
  options.argv.push_back("file:" + serial);
  options.argv.push_back("--api-socket");
  options.argv.push_back(socket);
  options.fds = {{1, log_fd.get()}, {2, log_fd.get()}};
  ASSIGN_OR_RETURN(ChildProcess process, ChildProcess::spawn(options));
  return std::unique_ptr<VmmProcess>(
      new VmmProcess(std::move(process), std::move(serial), std::move(log), std::move(socket)));
}

std::string VmmProcess::serial() const {
  return readWhole(serial_path_);
}
std::string VmmProcess::log() const {
  return readWhole(log_path_);
}

absl::StatusOr<std::string> VmmProcess::waitForSerial(std::string_view text,
                                                      absl::Duration timeout) {
  return waitForSerialCount(text, 1, timeout);
}

absl::StatusOr<std::string> VmmProcess::waitForSerialCount(std::string_view text, size_t count,
                                                           absl::Duration timeout) {
  return waitFor([this] { return serial(); }, "serial", text, count, timeout);
}

absl::StatusOr<std::string> VmmProcess::waitForLog(std::string_view text, absl::Duration timeout) {
  return waitFor([this] { return log(); }, "log", text, 1, timeout);
}

absl::StatusOr<std::string> VmmProcess::waitFor(const std::function<std::string()>& read,
                                                std::string_view what, std::string_view text,
                                                size_t count, absl::Duration timeout) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  while (true) {
    std::string output = read();
    if (occurrences(output, text) >= count) return output;
    auto exited = process_.wait(absl::ZeroDuration());
    if (exited.ok()) {
      return absl::FailedPreconditionError(
          fmt::format("the VMM {} before its {} showed '{}' {} times; serial:\n{}\nlog:\n{}",
                      exited->describe(), what, text, count, serial(), log()));
    }
    if (clock.monotonicNow() >= deadline) {
      return absl::DeadlineExceededError(
          fmt::format("'{}' did not appear {} times in the {} within {}; serial:\n{}\nlog:\n{}",
                      text, count, what, absl::FormatDuration(timeout), serial(), log()));
    }
    clock.sleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<std::unique_ptr<flotilla::v1::VmmService::Stub>> VmmProcess::api(
    absl::Duration timeout) {
  auto channel = grpc::CreateChannel("unix:" + api_socket_, grpc::InsecureChannelCredentials());
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  // The socket appears once the VMM has built its VM: until then connections fail.
  while (!waitConnected(*channel, absl::Seconds(1))) {
    if (clock.monotonicNow() >= deadline || process_.wait(absl::ZeroDuration()).ok()) {
      return absl::UnavailableError(
          fmt::format("the VMM's API at {} did not answer within {}; log:\n{}", api_socket_,
                      absl::FormatDuration(timeout), log()));
    }
    clock.sleepFor(absl::Milliseconds(50));
  }
  return flotilla::v1::VmmService::NewStub(channel);
}

}  // namespace flotilla::testing
