// VmmProcess: a flotilla-vmm started by a test, as a child process (killed by PID when the
// object goes), with its serial console and its log in files of the test's temporary
// directory, and a client of its API socket.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "tests/support/test_env.h"

namespace flotilla::testing {

// Fails (with what to do) when this machine cannot run VMs: no /dev/kvm, or no access to it.
absl::Status requireKvm();

class VmmProcess {
 public:
  // Runs `vmm_binary` with `args` plus --serial file:... and --api-socket ... in `dir`
  // (`name` tells several VMMs of one test apart).
  static absl::StatusOr<std::unique_ptr<VmmProcess>> start(const std::string& vmm_binary,
                                                           std::vector<std::string> args,
                                                           const TempDir& dir,
                                                           const std::string& name);

  // Waits until the serial output contains `text`; returns the output so far. DeadlineExceeded
  // (with the output and the VMM's log) when it did not come in time, FailedPrecondition when
  // the VMM exited first.
  absl::StatusOr<std::string> waitForSerial(std::string_view text, absl::Duration timeout);
  // Waits until `text` occurs `count` times in the serial output.
  absl::StatusOr<std::string> waitForSerialCount(std::string_view text, size_t count,
                                                 absl::Duration timeout);
  // Waits until the VMM's log (standard error) contains `text`; returns the log so far.
  absl::StatusOr<std::string> waitForLog(std::string_view text, absl::Duration timeout);
  std::string serial() const;
  std::string log() const;  // the VMM's standard error

  absl::StatusOr<ExitStatus> wait(absl::Duration timeout) { return process_.wait(timeout); }
  ChildProcess& process() { return process_; }

  const std::string& apiSocket() const { return api_socket_; }
  // A client of the API; waits up to `timeout` for the socket to accept connections.
  absl::StatusOr<std::unique_ptr<flotilla::v1::VmmService::Stub>> api(
      absl::Duration timeout = absl::Seconds(30));

 private:
  VmmProcess(ChildProcess process, std::string serial_path, std::string log_path,
             std::string api_socket)
      : process_(std::move(process)),
        serial_path_(std::move(serial_path)),
        log_path_(std::move(log_path)),
        api_socket_(std::move(api_socket)) {}

  // Polls `read` until `text` occurs `count` times in it; `what` ("serial", "log") names it.
  absl::StatusOr<std::string> waitFor(const std::function<std::string()>& read,
                                      std::string_view what, std::string_view text, size_t count,
                                      absl::Duration timeout);

  ChildProcess process_;
  const std::string serial_path_;
  const std::string log_path_;
  const std::string api_socket_;
};

}  // namespace flotilla::testing
