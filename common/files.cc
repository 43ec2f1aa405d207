// Whole-file reads and crash-safe writes (see files.h).
#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common/status.h"
#include "common/unique_fd.h"
#include "common/units.h"
#include "fmt/format.h"

namespace flotilla {

absl::StatusOr<std::string> readFileToString(const std::string& path, size_t max_bytes,
                                             std::string_view what) {
  const std::string name = what.empty() ? path : fmt::format("{} {}", what, path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("cannot read {}", name));
  std::string text;
  char buffer[65536];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, fmt::format("cannot read {}", name));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > max_bytes) {
      return absl::InvalidArgumentError(fmt::format("{} is larger than {}; is it the right file?",
                                                    name, formatByteSize(max_bytes)));
    }
  }
  return text;
}

absl::Status writeFileAtomically(const std::string& path, std::string_view contents,
                                 unsigned mode) {
  const std::string temporary = path + ".tmp";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("cannot create {}", temporary));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status error = errnoStatus(errno, fmt::format("cannot write {}", temporary));
      ::unlink(temporary.c_str());
      return error;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    absl::Status error = errnoStatus(errno, fmt::format("cannot flush {}", temporary));
    ::unlink(temporary.c_str());
    return error;
  }
  fd.reset();
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status error = errnoStatus(errno, fmt::format("cannot rename {} to {}", temporary, path));
    ::unlink(temporary.c_str());
    return error;
  }
  const size_t slash = path.rfind('/');
  const std::string directory = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  UniqueFd dir(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid() || ::fsync(dir.get()) != 0) {
    return errnoStatus(errno, fmt::format("cannot flush directory {}", directory));
  }
  return absl::OkStatus();
}

}  // namespace flotilla
