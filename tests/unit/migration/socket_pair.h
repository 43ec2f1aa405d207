// Two Connections joined by a socket pair, for migration unit tests.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <utility>

#include "migration/protocol.h"

namespace flotilla::migration::testing {

inline std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> connectionPair(
    absl::Duration io_timeout = absl::Seconds(10)) {
  int fds[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return {};
  return {std::make_unique<Connection>(UniqueFd(fds[0]), "target", io_timeout),
          std::make_unique<Connection>(UniqueFd(fds[1]), "source", io_timeout)};
}

}  // namespace flotilla::migration::testing
