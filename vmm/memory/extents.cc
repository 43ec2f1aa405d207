// Data extents (see extents.h).
#include "vmm/memory/extents.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm {

absl::StatusOr<std::vector<Extent>> dataExtents(int fd, uint64_t size, std::string_view what) {
  std::vector<Extent> extents;
  const off_t end = static_cast<off_t>(size);
  off_t offset = 0;
  while (offset < end) {
    off_t data = ::lseek(fd, offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after offset
      return errnoStatus(errno, fmt::format("finding the data in {}", what));
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return errnoStatus(errno, fmt::format("finding the holes in {}", what));
    hole = std::min(hole, end);
    if (data >= hole) break;
    extents.push_back({static_cast<uint64_t>(data), static_cast<uint64_t>(hole - data)});
    offset = hole;
  }
  return extents;
}

}  // namespace flotilla::vmm
