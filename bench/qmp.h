// QmpClient: a minimal client of QEMU's machine protocol (QMP) on a unix socket, for the
// benchmarks that drive QEMU as the reference VMM. QMP is JSON objects separated by CRLF: a
// greeting, then `qmp_capabilities`, then one reply per command; asynchronous events may
// arrive between them and are skipped.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "nlohmann/json.hpp"

namespace flotilla::bench {

class QmpClient {
 public:
  QmpClient() = default;
  QmpClient(QmpClient&&) = default;
  QmpClient& operator=(QmpClient&&) = default;

  // Connects to the QMP socket at `path`, retrying every millisecond until `timeout` (QEMU
  // creates the socket while it starts), reads the greeting and leaves negotiation mode.
  // Gives up early, FailedPrecondition, when `watched_pidfd` (a pidfd of the QEMU process,
  // -1 for none) reports that the process exited.
  static absl::StatusOr<QmpClient> connect(const std::string& path, absl::Duration timeout,
                                           int watched_pidfd = -1);

  // Runs `command` (with `arguments` when it is an object) and returns the reply's "return"
  // value. A reply with "error" is an error naming the command and QEMU's description.
  absl::StatusOr<nlohmann::json> execute(std::string_view command,
                                         const nlohmann::json& arguments = nullptr,
                                         absl::Duration timeout = absl::Seconds(30));

 private:
  explicit QmpClient(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  // The next JSON message (greeting, reply or event).
  absl::StatusOr<nlohmann::json> readMessage(absl::Duration deadline);
  absl::Status writeAll(const std::string& text);

  UniqueFd fd_;
  std::string path_;    // for messages
  std::string buffer_;  // bytes received after the last complete message
};

}  // namespace flotilla::bench
