// DrbdPool: a volume pool replicated between two hosts with DRBD 9, one resource per volume
// (two nodes: this host and its peer, protocol C, internal metadata). Each host's agent runs
// its own DrbdPool for the same pool; the controller creates every volume on both, with one
// placement (device minor and TCP port) it allocated. A volume is a backing block device on
// each host (DrbdBacking: sparse files attached as loop devices, LoopFileBacking), a resource
// file RESOURCE_DIR/POOL-VOLUME.res, and the DRBD device /dev/drbdMINOR that the VMM opens.
// The VM's lifecycle promotes and demotes it (primary before the VMM opens the device,
// secondary after it exited) and a live migration lets both nodes be primary until it ends.
// See docs/storage.md, "DRBD pools".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/command.h"
#include "common/log.h"
#include "storage/drbd.h"
#include "storage/local_dir_pool.h"
#include "storage/pool.h"

namespace flotilla::storage {

// ---- backing block devices ----

// The block devices under a DRBD pool's volumes on one host. Small on purpose: a volume group
// (lvcreate/lvremove) would implement the same four operations.
class DrbdBacking {
 public:
  virtual ~DrbdBacking() = default;
  // A new device of `size_bytes` for `volume`; returns its path. AlreadyExists when the
  // volume has one; nothing is left behind on error.
  virtual absl::StatusOr<std::string> create(std::string_view volume, uint64_t size_bytes) = 0;
  // The device of an existing volume, made available first when needed (a loop device after
  // a reboot). NotFound when the volume has no backing.
  virtual absl::StatusOr<std::string> attach(std::string_view volume) = 0;
  // Releases and deletes the volume's backing. Idempotent.
  virtual absl::Status remove(std::string_view volume) = 0;
  // The backing's size and the space it takes. NotFound when the volume has none.
  virtual absl::StatusOr<VolumeInfo> info(std::string_view volume) = 0;
  // Every volume that has a backing, sorted.
  virtual absl::StatusOr<std::vector<std::string>> volumes() = 0;
};

// Sparse files DIR/VOLUME.img (a LocalDirPool) attached as loop devices with losetup: no
// volume group to set up, thin by nature, and testable on any host with loop devices. The
// loop device's number is not stable across reboots; DrbdPool::reconcile() rewrites the
// resource file when it changed.
class LoopFileBacking final : public DrbdBacking {
 public:
  struct Options {
    std::string pool;       // for messages
    std::string directory;  // created when missing
    std::string losetup = "losetup";
    absl::Duration timeout = absl::Seconds(30);
  };
  static absl::StatusOr<std::unique_ptr<LoopFileBacking>> open(CommandRunner& runner,
                                                               Options options);

  absl::StatusOr<std::string> create(std::string_view volume, uint64_t size_bytes) override;
  absl::StatusOr<std::string> attach(std::string_view volume) override;
  absl::Status remove(std::string_view volume) override;
  absl::StatusOr<VolumeInfo> info(std::string_view volume) override;
  absl::StatusOr<std::vector<std::string>> volumes() override;

  // The loop devices attached to the volume's file (`losetup -j FILE`), in losetup's order.
  absl::StatusOr<std::vector<std::string>> loopDevices(std::string_view volume);
  std::string filePath(std::string_view volume) const { return files_->volumePath(volume); }

 private:
  LoopFileBacking(CommandRunner& runner, Options options, std::unique_ptr<LocalDirPool> files)
      : runner_(runner), options_(std::move(options)), files_(std::move(files)) {}
  absl::StatusOr<std::string> losetup(std::vector<std::string> args);

  CommandRunner& runner_;
  const Options options_;
  std::unique_ptr<LocalDirPool> files_;
};

// ---- the pool ----

struct DrbdPoolNode {
  std::string host;     // the host's name in the resource files (`on HOST`)
  std::string address;  // its replication address (IPv4 or IPv6)
  int node_id = -1;
};

struct DrbdPoolOptions {
  std::string name;
  DrbdPoolNode local;        // this host: drbdadm runs with __DRBD_NODE__=local.host
  DrbdPoolNode peer;         // the other host of the pool
  std::string resource_dir;  // POOL-VOLUME.res files; created when missing
  std::string drbdadm = "drbdadm";
  // drbdadm -d: every drbdadm step prints what it would do and changes nothing (hosts
  // without the drbd kernel module; tests). Backing devices and resource files are real.
  bool dry_run = false;
  absl::Duration timeout = absl::Seconds(120);
};

// Where a volume's resource lives; the controller allocates it (VolumeRecord.drbd).
struct DrbdVolumePlacement {
  uint32_t minor = 0;
  uint32_t port = 0;
};

// The backing size that gives a DRBD device of at least `usable_bytes` with internal
// metadata for one peer, and the device size a backing of `backing_bytes` gives: what lies
// before the metadata (4 KiB superblock, 32 KiB activity log, a bitmap of one bit per 4 KiB
// of the device in whole 4 KiB), as drbdmeta lays it out (its bm_offset).
uint64_t drbdBackingBytes(uint64_t usable_bytes);
uint64_t drbdUsableBytes(uint64_t backing_bytes);

// What DrbdPool::reconcile() did (volume names) and what failed.
struct DrbdReconcileReport {
  std::vector<std::string> rewritten;  // resource files whose backing device changed
  std::vector<std::string> adjusted;   // `drbdadm adjust` ran
  std::vector<std::string> failed;     // messages of the steps that failed
};

class DrbdPool final : public VolumePool {
 public:
  static absl::StatusOr<std::unique_ptr<DrbdPool>> open(CommandRunner& runner,
                                                        DrbdPoolOptions options,
                                                        std::unique_ptr<DrbdBacking> backing);

  std::string_view name() const override { return options_.name; }

  // Without a placement: FailedPrecondition (DRBD volumes are created by the controller,
  // on both hosts, with the placement it allocated).
  absl::StatusOr<VolumeInfo> create(std::string_view volume, uint64_t size_bytes) override;
  // The backing, the resource file, `drbdadm create-md --force`, `drbdadm up`; on the node
  // with the lower node-id also `primary --force` and `secondary`: that node's fresh data
  // becomes the resource's first UpToDate copy and the peer syncs from it (the one forced
  // promotion a volume ever gets). Undone on failure. AlreadyExists when the volume exists;
  // InvalidArgument for a bad placement or one that clashes with another volume's.
  absl::StatusOr<VolumeInfo> create(std::string_view volume, uint64_t size_bytes,
                                    DrbdVolumePlacement placement);
  // Unimplemented: growing needs both backings grown and `drbdadm resize` while connected.
  absl::Status resize(std::string_view volume, uint64_t new_size) override;
  // `drbdadm down`, the resource file, the backing. Idempotent.
  absl::Status remove(std::string_view volume) override;
  // Unimplemented (a copy would have to be a new resource on both hosts).
  absl::StatusOr<VolumeInfo> clone(std::string_view source, std::string_view target) override;
  absl::StatusOr<std::vector<VolumeInfo>> list() override;
  absl::StatusOr<VolumeInfo> get(std::string_view volume) override;
  // "path=/dev/drbdMINOR".
  absl::StatusOr<std::string> diskOption(std::string_view volume) override;

  // The VM's lifecycle on this host (each idempotent; NotFound for an unknown volume):
  // `drbdadm primary` before a VMM opens the device, `drbdadm secondary` after it exited.
  absl::Status promote(std::string_view volume);
  absl::Status demote(std::string_view volume);
  // `drbdadm net-options --allow-two-primaries=yes|no` (run time only): both nodes may be
  // primary while a live migration moves the VM.
  absl::Status allowTwoPrimaries(std::string_view volume, bool allow);

  // At agent start: attaches every volume's backing (rewriting the resource file when its
  // device changed) and runs `drbdadm adjust` (brings the resource up as its file says).
  // Per-volume failures are in the report.
  absl::StatusOr<DrbdReconcileReport> reconcile();

  // POOL-VOLUME: the DRBD resource's name (checked: at most 63 characters).
  absl::StatusOr<std::string> resourceName(std::string_view volume) const;
  std::string resourceFile(std::string_view resource) const;
  // The spec of a volume's resource with `placement` and this host's backing `disk`.
  DrbdResourceSpec spec(std::string_view resource, DrbdVolumePlacement placement,
                        std::string_view disk) const;
  const DrbdPoolOptions& options() const { return options_; }

 private:
  struct Existing {
    std::string resource;
    DrbdVolumePlacement placement;
    std::string disk;  // this host's backing device as the file says
  };

  DrbdPool(CommandRunner& runner, DrbdPoolOptions options, std::unique_ptr<DrbdBacking> backing);
  Drbd drbd(std::string_view resource) const;
  // The volume's resource file, read back; NotFound when it has none.
  absl::StatusOr<Existing> readExisting(std::string_view volume) const;
  // Every volume with a resource file of this pool.
  absl::StatusOr<std::vector<std::string>> resourceVolumes() const;
  absl::StatusOr<VolumeInfo> describe(std::string_view volume, const Existing& existing);

  CommandRunner& runner_;
  const DrbdPoolOptions options_;
  const Logger log_;
  std::unique_ptr<DrbdBacking> backing_;
  // Serialises creates and removes (placement clash checks, file writes).
  absl::Mutex mu_;
};

}  // namespace flotilla::storage
