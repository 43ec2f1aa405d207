// The migration test hook (see test_hook.h).
#include "migration/test_hook.h"

#include <signal.h>

#include <cstdlib>
#include <string>

#include "common/log.h"

namespace flotilla::migration {

void stopIfAsked(std::string_view point) {
  static const std::string wanted = [] {
    const char* value = std::getenv(kTestStopVariable);
    return std::string(value != nullptr ? value : "");
  }();
  if (wanted.empty() || wanted != point) return;
  Logger("migration").warn("test hook ({}): stopping at {}", kTestStopVariable, point);
  ::raise(SIGSTOP);
}

}  // namespace flotilla::migration
