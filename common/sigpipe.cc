// SigpipeGuard (see sigpipe.h).
#include "common/sigpipe.h"

#include <pthread.h>

#include <cerrno>
#include <ctime>

namespace flotilla {
namespace {

sigset_t sigpipeSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  return set;
}

}  // namespace

SigpipeGuard::SigpipeGuard() {
  const sigset_t sigpipe = sigpipeSet();
  pthread_sigmask(SIG_BLOCK, &sigpipe, &old_mask_);
  sigset_t pending;
  sigpending(&pending);
  already_pending_ = sigismember(&pending, SIGPIPE) == 1;
}

SigpipeGuard::~SigpipeGuard() {
  const int saved_errno = errno;
  if (!already_pending_) {
    const sigset_t sigpipe = sigpipeSet();
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
      const timespec no_wait{};
      while (sigtimedwait(&sigpipe, nullptr, &no_wait) < 0 && errno == EINTR) {
      }
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  errno = saved_errno;
}

}  // namespace flotilla
