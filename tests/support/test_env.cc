// Integration test helpers (see test_env.h).
#include "tests/support/test_env.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"

namespace flotilla::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/flotilla-test-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = buffer.data();
}

absl::StatusOr<std::string> TempDir::sparseFile(std::string_view name, uint64_t bytes) const {
  std::string path = file(name);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("creating {}", path));
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return errnoStatus(errno, fmt::format("sizing {} to {} bytes", path, bytes));
  }
  return path;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

namespace {

// A socket bound to a free port of 127.0.0.1 (not listening).
absl::StatusOr<TakenPort> takePort() {
  TakenPort taken;
  taken.fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!taken.fd.valid()) return errnoStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(taken.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return errnoStatus(errno, "bind 127.0.0.1:0");
  }
  socklen_t length = sizeof(addr);
  if (::getsockname(taken.fd.get(), reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    return errnoStatus(errno, "getsockname");
  }
  taken.port = ntohs(addr.sin_port);
  return taken;
}

}  // namespace

absl::StatusOr<uint16_t> pickFreePort() {
  ASSIGN_OR_RETURN(TakenPort taken, takePort());
  return taken.port;
}

absl::StatusOr<TakenPort> listenOnFreePort() {
  ASSIGN_OR_RETURN(TakenPort taken, takePort());
  if (::listen(taken.fd.get(), 1) != 0) return errnoStatus(errno, "listen");
  return taken;
}

absl::StatusOr<std::string> findProgram(std::string_view program, std::string_view package) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = fmt::format("{}/{}", dir, program);
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::FailedPreconditionError(fmt::format(
      "this test needs '{}', which is not installed: run deploy/install-deps.sh (Debian package "
      "{})",
      program, package));
}

std::string fileTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fmt::format("({} cannot be read)", path);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() <= max_bytes ? all : all.substr(all.size() - max_bytes);
}

}  // namespace flotilla::testing
