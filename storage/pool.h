// VolumePool: the volumes of one storage pool as a host's agent manages them (create, grow,
// clone, remove, list) and the `--disk` option that gives one to a VMM on this host (see
// docs/storage.md, "Volume pools"). Implementations: LocalDirPool (raw sparse files in a
// directory, local_dir_pool.h), IscsiPool (those files exported as iSCSI targets by tgtd, on
// the storage host) and IscsiPoolClient (the same pool seen from a compute host), in
// iscsi_pool.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::storage {

// Volume sizes are whole 512-byte sectors (the block size of raw files and of tgt's LUNs).
inline constexpr uint64_t kVolumeSectorBytes = 512;

struct VolumeInfo {
  std::string name;
  uint64_t size_bytes = 0;       // the disk's size as the VM sees it
  uint64_t allocated_bytes = 0;  // the space it takes in the pool (less for sparse files)
};

// Volume and pool names are DNS labels (RFC 1123): 1 to 63 lowercase letters, digits and '-',
// starting and ending with a letter or digit ("web1", "db-data-2"). They become file names,
// IQN suffixes and DRBD resource names, so nothing else is accepted. The errors name the
// volume (pool) and the rule.
absl::Status validateVolumeName(std::string_view volume);
absl::Status validatePoolName(std::string_view pool);

// A volume size is positive and a multiple of 512 (kVolumeSectorBytes); the error names the
// volume and the next valid size.
absl::Status validateVolumeSize(std::string_view volume, uint64_t size_bytes);

// The methods may be called from several threads at once. Errors name the pool and the
// volume and say what to do. None leaves a half-made volume behind.
class VolumePool {
 public:
  virtual ~VolumePool() = default;

  // The pool's name from the configuration.
  virtual std::string_view name() const = 0;

  // A new volume of `size_bytes` that reads as zeroes (sparse where the storage allows).
  // AlreadyExists when the volume exists (it is never overwritten); InvalidArgument for a bad
  // name or size.
  virtual absl::StatusOr<VolumeInfo> create(std::string_view volume, uint64_t size_bytes) = 0;

  // Grows the volume to `new_size`. The same size is OK and changes nothing; a smaller one is
  // FailedPrecondition naming both sizes (shrinking would cut off the guest's data); NotFound
  // when the volume does not exist. The VM sees the new size once its disk is resized too
  // (BlockBackend::resize).
  virtual absl::Status resize(std::string_view volume, uint64_t new_size) = 0;

  // Deletes the volume and its data. Idempotent: OK when it does not exist, so that a delete
  // retried after a lost reply succeeds.
  virtual absl::Status remove(std::string_view volume) = 0;

  // A new volume `target` with `source`'s size and content. Not a snapshot: the source must
  // not be written meanwhile (stop or pause its VM). AlreadyExists when `target` exists,
  // NotFound when `source` does not; on any error nothing of `target` remains.
  virtual absl::StatusOr<VolumeInfo> clone(std::string_view source, std::string_view target) = 0;

  // Every volume of the pool, sorted by name.
  virtual absl::StatusOr<std::vector<VolumeInfo>> list() = 0;

  // NotFound when the volume does not exist.
  virtual absl::StatusOr<VolumeInfo> get(std::string_view volume) = 0;

  // What the VMM's --disk option needs for this volume on this host (vmm/device_config.h),
  // without readonly/serial: "path=/var/lib/flotilla/pools/local/web1.img" or
  // "iscsi=iscsi://10.0.0.5:3260/iqn.2026-01.org.example:pool1:web1/1". NotFound when the
  // volume does not exist (where the pool can tell).
  virtual absl::StatusOr<std::string> diskOption(std::string_view volume) = 0;
};

}  // namespace flotilla::storage
