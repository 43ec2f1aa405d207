// Snapshot files. A snapshot is a directory with two files:
//   state   a header (magic "FLOTSNAP", format version major.minor, payload size, CRC-32 of the
//           payload) followed by a VmSnapshot protobuf (flotilla/v1/vm_state.proto);
//   memory  the guest's RAM as a sparse file the size of RAM: zero pages are holes, so an idle
//           1 GiB guest takes only the pages it touched.
// `state` appears last (renamed from state.tmp once both files are on disk), so a directory
// with a readable state file holds a complete snapshot. The format version changes independently of
// Flotilla's releases: a newer minor version may add protobuf fields (older readers ignore them); a
// different major version is refused. See docs/snapshot-format.md.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {

inline constexpr uint32_t kSnapshotFormatMajor = 1;
inline constexpr uint32_t kSnapshotFormatMinor = 0;
inline constexpr uint64_t kMaxStateBytes = uint64_t{64} << 20;

struct SnapshotStats {
  uint64_t memory_bytes_written = 0;  // non-zero pages
};

// Writes `state` and `memory` into `directory` (created if missing, its files replaced), into
// the page cache: this is the part that needs the VM paused. The snapshot exists only once
// commitSnapshot() made it durable, which can run after the VM resumed.
absl::StatusOr<SnapshotStats> writeSnapshot(const std::string& directory,
                                            const flotilla::v1::VmSnapshot& state,
                                            const GuestMemory& memory);

// Flushes what writeSnapshot() wrote to disk, then publishes the state file.
absl::Status commitSnapshot(const std::string& directory);

// Reads and checks the state file. Errors (DataLoss, FailedPrecondition, NotFound) name the
// file and the problem: not a snapshot, an unknown format version, a bad checksum, ...
absl::StatusOr<flotilla::v1::VmSnapshot> readSnapshotState(const std::string& directory);

// Allocates guest memory for `state` and fills it from the memory file.
absl::StatusOr<GuestMemory> readSnapshotMemory(const std::string& directory,
                                               const flotilla::v1::VmSnapshot& state);

}  // namespace flotilla::vmm
