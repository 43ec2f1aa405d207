// Status helpers (see status.h).
#include "common/status.h"

#include <string>

#include "fmt/format.h"

namespace flotilla {

absl::Status errnoStatus(int error_number, std::string_view what) {
  return absl::ErrnoToStatus(error_number, std::string(what));
}

absl::Status annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), fmt::format("{}: {}", context, status.message()));
}

}  // namespace flotilla
