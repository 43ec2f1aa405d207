// Moving a VM's raw-file disks with a cold migration (docs/migration.md, "Disks"): the source
// reads each disk's data extents and sends the blocks that are not zeroes (kDiskData frames,
// before any page); the target writes them into a file of the disk's size that held no data
// before, so that holes and zero blocks stay holes, and removes it again (or empties it) when
// the migration fails.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "flotilla/v1/migration.pb.h"
#include "migration/protocol.h"
#include "migration/vm_interface.h"

namespace flotilla::migration {

// A kDiskData frame's payload: this header (little-endian), then the data.
struct DiskDataHeader {
  uint32_t disk = 0;  // MigrationDisk.index
  uint32_t reserved = 0;
  uint64_t offset = 0;  // in the disk, bytes
};
static_assert(sizeof(DiskDataHeader) == 16);
inline constexpr uint64_t kMaxDiskDataBytes = kMaxPagesPerBatch * kPageBytes;  // 1 MiB
// Zero blocks are found (and left out) at this size.
inline constexpr uint64_t kDiskBlockBytes = 4096;

// Source side: the disks, with their sizes. Each must be a regular file.
absl::StatusOr<flotilla::v1::MigrationDisks> describeDisks(const std::vector<LocalDisk>& disks);

// Source side: calls `send` for every run of blocks that are not zeroes in the data extents of
// `disk` (of `size_bytes`, as described), in order, at most kMaxDiskDataBytes each; the bytes
// sent in `sent`.
using DiskDataSink = std::function<absl::Status(uint64_t offset, std::span<const uint8_t> data)>;
absl::Status readDisk(const LocalDisk& disk, uint64_t size_bytes, const DiskDataSink& send,
                      uint64_t& sent);

// Target side: the files the disks' data goes into.
class DiskWriter {
 public:
  // Opens (or creates) the file `path_of` names for each disk, which must be missing or hold
  // no data (so that nothing is overwritten), at the disk's size.
  static absl::StatusOr<std::unique_ptr<DiskWriter>> open(
      const flotilla::v1::MigrationDisks& disks,
      const std::function<absl::StatusOr<std::string>(uint32_t index)>& path_of);
  ~DiskWriter();
  DiskWriter(const DiskWriter&) = delete;
  DiskWriter& operator=(const DiskWriter&) = delete;

  // Reads a kDiskData frame's payload from `connection` (its header read) and writes it.
  absl::Status receive(Connection& connection, const FrameHeader& header);
  // Every disk got what `done` says was sent: flushed to stable storage.
  absl::Status finish(const flotilla::v1::MigrationDisks& done);
  // The migration failed: files created here are removed, the others emptied again.
  void discard();
  uint64_t bytesWritten() const { return bytes_written_; }
  bool finished() const { return finished_; }

 private:
  struct Target {
    uint32_t index = 0;
    std::string path;
    uint64_t size = 0;
    UniqueFd fd;
    bool created = false;        // by this writer (else it existed, holding no data)
    uint64_t original_size = 0;  // when it existed
    uint64_t written = 0;
  };
  DiskWriter() = default;

  std::vector<Target> targets_;
  std::vector<uint8_t> buffer_;
  uint64_t bytes_written_ = 0;
  bool finished_ = false;
};

}  // namespace flotilla::migration
