// Console sinks (see console.h).
#include "vmm/devices/console.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm {

absl::StatusOr<ConsoleConfig> parseConsoleConfig(std::string_view text) {
  if (text == "stdout") return ConsoleConfig{ConsoleConfig::Mode::kStdout, ""};
  if (text == "none") return ConsoleConfig{ConsoleConfig::Mode::kNone, ""};
  if (text.starts_with("file:") && text.size() > 5) {
    return ConsoleConfig{ConsoleConfig::Mode::kFile, std::string(text.substr(5))};
  }
  if (text.starts_with("socket:") && text.size() > 7) {
    return ConsoleConfig{ConsoleConfig::Mode::kSocket, std::string(text.substr(7))};
  }
  return absl::InvalidArgumentError(
      fmt::format("serial console '{}' is not stdout, none, file:PATH or socket:PATH", text));
}

absl::StatusOr<std::shared_ptr<FileSink>> FileSink::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("opening serial log {}", path));
  return std::make_shared<FileSink>(std::move(fd));
}

void FileSink::write(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk loses console output, never stops the guest
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
}

absl::StatusOr<std::shared_ptr<ConsoleSocket>> ConsoleSocket::listen(const std::string& path,
                                                                     EventLoop& loop) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(fmt::format("console socket path {} is longer than {} bytes",
                                                  path, sizeof(address.sun_path) - 1));
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) {
      return absl::AlreadyExistsError(fmt::format(
          "console socket path {} exists and is not a socket: choose another path", path));
    }
    ::unlink(path.c_str());  // a socket left by an earlier run
  }
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener.valid()) return errnoStatus(errno, "creating the console socket");
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return errnoStatus(errno, fmt::format("binding the console socket {}", path));
  }
  if (::listen(listener.get(), 4) != 0) return errnoStatus(errno, "listening on the console");
  std::shared_ptr<ConsoleSocket> console(new ConsoleSocket(path, std::move(listener), loop));
  RETURN_IF_ERROR(loop.add(console->listener_.get(), EPOLLIN,
                           [raw = console.get()](uint32_t) { raw->accept(); }));
  return console;
}

ConsoleSocket::~ConsoleSocket() {
  ::unlink(path_.c_str());
}

void ConsoleSocket::accept() {
  UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
  if (!client.valid()) return;
  int fd = client.get();
  {
    absl::MutexLock lock(&mu_);
    std::vector<uint8_t> history(history_.begin(), history_.end());
    (void)!::send(fd, history.data(), history.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    clients_.push_back(std::move(client));
  }
  (void)loop_.add(fd, EPOLLIN | EPOLLRDHUP, [this, fd](uint32_t events) {
    // A client that typed and hung up at once reports both in one event: read first (the
    // loop comes back while there is more), readFrom() drops the client at end of file.
    if (events & EPOLLIN) {
      readFrom(fd);
    } else if (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) {
      drop(fd);
    }
  });
}

void ConsoleSocket::readFrom(int client) {
  uint8_t buffer[256];
  ssize_t n = ::recv(client, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (n <= 0) {
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) drop(client);
    return;
  }
  if (std::shared_ptr<Serial> input = input_.lock()) {
    input->receive({buffer, static_cast<size_t>(n)});
  }
}

void ConsoleSocket::drop(int client) {
  loop_.remove(client);
  absl::MutexLock lock(&mu_);
  std::erase_if(clients_, [client](const UniqueFd& fd) { return fd.get() == client; });
}

void ConsoleSocket::write(std::span<const uint8_t> bytes) {
  absl::MutexLock lock(&mu_);
  for (const UniqueFd& client : clients_) {
    (void)!::send(client.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  history_.insert(history_.end(), bytes.begin(), bytes.end());
  if (history_.size() > kHistoryBytes) {
    history_.erase(history_.begin(),
                   history_.begin() + static_cast<ptrdiff_t>(history_.size() - kHistoryBytes));
  }
}

absl::StatusOr<std::shared_ptr<SerialSink>> openConsole(const ConsoleConfig& config,
                                                        EventLoop& loop) {
  switch (config.mode) {
    case ConsoleConfig::Mode::kStdout: {
      UniqueFd out(::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0));
      if (!out.valid()) return errnoStatus(errno, "duplicating standard output");
      return std::make_shared<FileSink>(std::move(out));
    }
    case ConsoleConfig::Mode::kFile: {
      ASSIGN_OR_RETURN(std::shared_ptr<FileSink> file, FileSink::open(config.path));
      return file;
    }
    case ConsoleConfig::Mode::kSocket: {
      ASSIGN_OR_RETURN(std::shared_ptr<ConsoleSocket> socket,
                       ConsoleSocket::listen(config.path, loop));
      return socket;
    }
    case ConsoleConfig::Mode::kNone:
      return std::make_shared<NullSink>();
  }
  return absl::InternalError("unknown console mode");
}

}  // namespace flotilla::vmm
