// What a VMM process costs in host memory apart from guest RAM, read from /proc. Both VMMs
// benchmarked keep guest RAM in a memfd, so it shows up as RssShmem (status) and as mappings
// named "/memfd:..." (smaps): both are left out of the overhead figures.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace flotilla::bench {

struct ProcessMemory {
  // /proc/PID/status, in bytes.
  uint64_t rss_anon = 0;
  uint64_t rss_file = 0;
  uint64_t rss_shmem = 0;  // guest RAM that is resident, not overhead
  // /proc/PID/smaps summed over every mapping except the guest's memfd, in bytes. (Clean and
  // dirty are not told apart in the figures: a program's file pages count as dirty while the
  // page cache has not yet written them back, e.g. right after it was built.)
  uint64_t private_clean = 0;
  uint64_t private_dirty = 0;

  uint64_t rss() const { return rss_anon + rss_file; }
  uint64_t privateBytes() const { return private_clean + private_dirty; }
};

absl::StatusOr<ProcessMemory> readProcessMemory(pid_t pid);

}  // namespace flotilla::bench
