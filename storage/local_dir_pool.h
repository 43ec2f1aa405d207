// LocalDirPool: a volume pool of raw sparse image files in one directory of this host, one
// file per volume (DIR/NAME.img). Volumes are created with ftruncate (no data written), grown
// with ftruncate, cloned with a reflink (FICLONE) where the file system has it, else by
// copying only the source's data extents (SEEK_DATA/SEEK_HOLE) with copy_file_range and, where
// that is refused, read/write that skips zero blocks. A new file is built unnamed (O_TMPFILE)
// or under a hidden temporary name, and linked into place only when complete, with a link
// that fails rather than replace an existing volume: a failed or interrupted create or clone
// leaves nothing under the volume's name. See docs/storage.md, "Volume pools".
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "storage/pool.h"

namespace flotilla::storage {

struct LocalDirPoolOptions {
  std::string name;       // the pool's name (a DNS label, see validatePoolName)
  std::string directory;  // an absolute path without ',' (--disk path= cannot carry one)
  // Create the directory (and its parents) when it is missing; otherwise a missing directory
  // is an error (a mistyped path should not silently become an empty pool).
  bool create_directory = false;
  // Build new files unnamed (O_TMPFILE) where the file system supports it. false: always
  // under a hidden temporary name (.NAME.img.partial-XXXXXX), as on file systems without
  // O_TMPFILE; for tests of that path.
  bool unnamed_temp_files = true;
};

// How clone() copied the data (the fastest the file systems allowed).
enum class CloneMethod {
  kReflink,        // FICLONE: the files share extents until written (btrfs, XFS)
  kCopyFileRange,  // copy_file_range over the source's data extents
  kReadWrite,      // read/write over the data extents, zero blocks left as holes
};
std::string_view cloneMethodName(CloneMethod method);

class LocalDirPool final : public VolumePool {
 public:
  // Checks the options and the directory (exists or is created, is a directory we can write)
  // and removes temporary files that an interrupted create or clone left behind.
  static absl::StatusOr<std::unique_ptr<LocalDirPool>> open(LocalDirPoolOptions options);

  std::string_view name() const override { return options_.name; }
  absl::StatusOr<VolumeInfo> create(std::string_view volume, uint64_t size_bytes) override;
  absl::Status resize(std::string_view volume, uint64_t new_size) override;
  absl::Status remove(std::string_view volume) override;
  absl::StatusOr<VolumeInfo> clone(std::string_view source, std::string_view target) override;
  absl::StatusOr<std::vector<VolumeInfo>> list() override;
  absl::StatusOr<VolumeInfo> get(std::string_view volume) override;
  // "path=DIR/NAME.img".
  absl::StatusOr<std::string> diskOption(std::string_view volume) override;

  // The file of a volume (which may not exist): DIR/NAME.img. The name is not checked.
  std::string volumePath(std::string_view volume) const;
  const std::string& directory() const { return options_.directory; }
  // How the most recent successful clone() copied (for logs and tests).
  CloneMethod lastCloneMethod() const { return last_clone_method_.load(); }

 private:
  LocalDirPool(LocalDirPoolOptions options, UniqueFd dir);
  absl::Status syncDirectory();
  absl::Status removeStaleTemporaries();
  absl::StatusOr<VolumeInfo> statVolume(std::string_view volume);

  const LocalDirPoolOptions options_;
  const Logger log_;
  UniqueFd dir_;  // the directory (O_RDONLY): every file operation goes through openat & co.
  std::atomic<CloneMethod> last_clone_method_{CloneMethod::kReadWrite};
};

}  // namespace flotilla::storage
