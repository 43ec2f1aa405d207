// What the migration engine needs of a VM, on each side. The VMM implements these over its
// Vm; unit tests implement them over plain memory, so that the protocol, the pre-copy rounds
// and every failure path are tested without KVM.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/migration.pb.h"
#include "fmt/format.h"
#include "vmm/memory/dirty_bitmap.h"

namespace flotilla::migration {

// A run of pages by their offset in guest memory (the memory file), in bytes.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A disk of the VM that is a raw image file on this host (cold migration with disks).
struct LocalDisk {
  uint32_t index = 0;  // its place among the VM's disks (the order of --disk)
  std::string path;
};

class SourceVm {
 public:
  virtual ~SourceVm() = default;

  virtual flotilla::v1::MigrationMemoryLayout layout() const = 0;
  // All of guest memory by offset (memory_bytes of the layout). Read while the guest runs.
  virtual std::span<const uint8_t> memory() const = 0;
  // The parts of memory the guest (or a device) ever touched; the rest reads as zeroes and
  // need not be sent. May return everything.
  virtual absl::StatusOr<std::vector<ByteRange>> populated() const = 0;

  // Dirty-page tracking: pages are offset / 4096. fetchDirtyLog ORs into `out` the pages
  // written since the previous fetch (or since startDirtyLog), by vCPUs and by devices.
  virtual absl::Status startDirtyLog() = 0;
  virtual absl::StatusOr<uint64_t> fetchDirtyLog(vmm::DirtyBitmap& out) = 0;
  virtual absl::Status stopDirtyLog() = 0;

  // Stops the vCPUs, then the devices (block I/O drained and flushed), or starts them again.
  virtual absl::Status pause() = 0;
  virtual absl::Status resume() = 0;
  // Everything but memory, serialized (a VmSnapshot); the VM is paused.
  virtual absl::StatusOr<std::string> saveDeviceState() = 0;
  // Takes `percent` (0-99) of the vCPUs' time away (auto-converge); 0 ends throttling.
  virtual void setThrottle(int percent) = 0;
  // The disks a cold migration with disks moves: an error for a disk it cannot (an iSCSI
  // LUN is shared storage already). None by default.
  virtual absl::StatusOr<std::vector<LocalDisk>> localDisks() const {
    return std::vector<LocalDisk>{};
  }
};

class TargetVm {
 public:
  virtual ~TargetVm() = default;

  // Checks the layout against the VM this target was started for (memory size, vCPUs, CPU
  // model) and allocates its memory. An error names what differs.
  virtual absl::Status prepare(const flotilla::v1::MigrationMemoryLayout& layout) = 0;
  // The memory prepare() allocated, written by the receiver as pages arrive.
  virtual std::span<uint8_t> memory() = 0;
  // Builds the VM, paused, from `state` (a VmSnapshot) and the memory received.
  virtual absl::Status load(const std::string& state) = 0;
  // Runs the loaded VM (and announces its NICs).
  virtual absl::Status resume() = 0;
  // Throws away whatever was prepared or loaded; the VM never runs. Idempotent.
  virtual void discard() = 0;
  // Where this target keeps the source's disk `index` (a cold migration with disks writes it
  // there, before prepare()): the path of its own disk at that place, which must be a raw
  // image file. An error names what does not fit. No disks by default.
  virtual absl::StatusOr<std::string> diskPath(uint32_t index) {
    return absl::FailedPreconditionError(
        fmt::format("this target takes no disks (asked for disk {})", index));
  }
};

}  // namespace flotilla::migration
