// Helpers for integration tests: private temporary directories, free loopback ports, and
// checks for the tools a test needs (failing, never skipping, when one is missing).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace flotilla::testing {

// A directory under $TMPDIR (or /tmp) removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  // Creates (or truncates) the file `name` as a sparse file of `bytes` (a raw disk image);
  // returns its path.
  absl::StatusOr<std::string> sparseFile(std::string_view name, uint64_t bytes) const;

 private:
  std::string path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
absl::StatusOr<uint16_t> pickFreePort();
// A socket listening on a TCP port of 127.0.0.1, which holds the port until it is closed.
struct TakenPort {
  UniqueFd fd;
  uint16_t port = 0;
};
absl::StatusOr<TakenPort> listenOnFreePort();
// What picks the ports of a daemon a test starts (pickFreePort; tests of a daemon's start give
// it a taken port).
using PortPicker = std::function<absl::StatusOr<uint16_t>()>;

// The absolute path of `program` in PATH, or an error naming the Debian package to install
// (via deploy/install-deps.sh).
absl::StatusOr<std::string> findProgram(std::string_view program, std::string_view package);

// The last `max_bytes` of a file (for printing a daemon's log when a test fails).
std::string fileTail(const std::string& path, size_t max_bytes = 4096);

}  // namespace flotilla::testing
