// Thread naming (see thread.h).
#include "common/thread.h"

#include <pthread.h>

namespace flotilla {

void setCurrentThreadName(std::string_view name) {
  // The kernel keeps 16 bytes including the terminating NUL.
  std::string truncated(name.substr(0, 15));
  pthread_setname_np(pthread_self(), truncated.c_str());
}

}  // namespace flotilla
