// The data extents of a sparse file or memfd: the ranges that are not holes, found with
// lseek(SEEK_DATA / SEEK_HOLE). Snapshots use them to skip memory the guest never touched.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::vmm {

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// The extents of `fd` within [0, size); `what` names the file in errors.
absl::StatusOr<std::vector<Extent>> dataExtents(int fd, uint64_t size, std::string_view what);

}  // namespace flotilla::vmm
