// SigpipeGuard: while one lives, a write on this thread to a pipe or socket whose reader has
// gone fails with EPIPE instead of raising a SIGPIPE that kills the whole process (its default
// action). Ignoring SIGPIPE process-wide would change every other thread's behaviour, and is
// the program's choice, not a library's; send(MSG_NOSIGNAL) does not help with pipes or with
// a library that calls writev() itself (libiscsi). So the guard blocks SIGPIPE in this thread;
// the SIGPIPE an EPIPE raises is directed at the writing thread, stays pending, and is consumed
// before the old mask comes back (unless one was already pending, which is not ours to take).
#pragma once

#include <signal.h>

namespace flotilla {

class SigpipeGuard {
 public:
  SigpipeGuard();
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_mask_{};
  bool already_pending_ = false;
};

}  // namespace flotilla
