// UniqueFd (see unique_fd.h).
#include "common/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "common/status.h"

namespace flotilla {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    // Linux releases the descriptor even when close() fails with EINTR, so never retry.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::StatusOr<UniqueFd> UniqueFd::duplicate() const {
  int copy = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return errnoStatus(errno, "duplicating a file descriptor");
  return UniqueFd(copy);
}

absl::StatusOr<Pipe> makePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errnoStatus(errno, "creating a pipe");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace flotilla
