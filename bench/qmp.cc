// QmpClient (see qmp.h).
#include "bench/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {
namespace {

// A connected socket, or the errno of the attempt (ENOENT / ECONNREFUSED while QEMU starts).
absl::StatusOr<UniqueFd> connectUnix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        fmt::format("QMP socket path {} is longer than a unix socket path may be ({} bytes)", path,
                    sizeof(address.sun_path) - 1));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errnoStatus(errno, "creating a unix socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return errnoStatus(errno, fmt::format("connecting to QMP socket {}", path));
  }
  return fd;
}

bool readableNow(int fd) {
  pollfd watched{fd, POLLIN, 0};
  return ::poll(&watched, 1, 0) == 1;
}

}  // namespace

absl::StatusOr<QmpClient> QmpClient::connect(const std::string& path, absl::Duration timeout,
                                             int watched_pidfd) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  absl::StatusOr<UniqueFd> fd = connectUnix(path);
  while (!fd.ok()) {
    if (watched_pidfd >= 0 && readableNow(watched_pidfd)) {
      return absl::FailedPreconditionError(
          fmt::format("QEMU exited before its QMP socket {} accepted connections", path));
    }
    if (clock.monotonicNow() >= deadline) {
      return absl::DeadlineExceededError(
          fmt::format("QMP socket {} did not accept connections within {}: {}", path,
                      absl::FormatDuration(timeout), fd.status().message()));
    }
    clock.sleepFor(absl::Milliseconds(1));
    fd = connectUnix(path);
  }
  QmpClient client(std::move(*fd), path);
  ASSIGN_OR_RETURN(nlohmann::json greeting, client.readMessage(deadline));
  if (!greeting.contains("QMP")) {
    return absl::InternalError(fmt::format("{} did not greet with QMP: {}", path, greeting.dump()));
  }
  RETURN_IF_ERROR(client.execute("qmp_capabilities").status());
  return client;
}

absl::StatusOr<nlohmann::json> QmpClient::execute(std::string_view command,
                                                  const nlohmann::json& arguments,
                                                  absl::Duration timeout) {
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  nlohmann::json message = {{"execute", command}};
  if (arguments.is_object()) message["arguments"] = arguments;
  RETURN_IF_ERROR(writeAll(message.dump() + "\r\n"));
  while (true) {
    ASSIGN_OR_RETURN(nlohmann::json reply, readMessage(deadline));
    if (reply.contains("event")) continue;  // asynchronous, not our reply
    if (reply.contains("return")) return reply["return"];
    if (reply.contains("error")) {
      const nlohmann::json& error = reply["error"];
      std::string desc = error.is_object() && error.contains("desc") && error["desc"].is_string()
                             ? error["desc"].get<std::string>()
                             : reply.dump();
      return absl::InternalError(fmt::format("QMP {} failed: {}", command, desc));
    }
    return absl::InternalError(
        fmt::format("unexpected QMP reply to {}: {}", command, reply.dump()));
  }
}

absl::StatusOr<nlohmann::json> QmpClient::readMessage(absl::Duration deadline) {
  Clock& clock = systemClock();
  while (true) {
    size_t end = buffer_.find('\n');
    if (end != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_discarded()) {
        return absl::InternalError(fmt::format("QMP at {} sent invalid JSON: {}", path_, line));
      }
      return parsed;
    }
    pollfd watched{fd_.get(), POLLIN, 0};
    int ready = ::poll(&watched, 1, pollTimeoutMs(deadline - clock.monotonicNow()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errnoStatus(errno, "polling the QMP socket");
    if (ready == 0) {
      return absl::DeadlineExceededError(fmt::format("QMP at {} did not answer in time", path_));
    }
    char chunk[4096];
    ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, fmt::format("reading QMP socket {}", path_));
    if (n == 0) {
      return absl::UnavailableError(fmt::format("QEMU closed its QMP socket {}", path_));
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

absl::Status QmpClient::writeAll(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::send(fd_.get(), text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, fmt::format("writing QMP socket {}", path_));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace flotilla::bench
