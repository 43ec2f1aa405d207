// MemoryLoader: fills guest memory from a snapshot's memory file (a sparse image of the
// memfd, memfd offset = file offset) without making the VM wait for all of it. With
// userfaultfd the VM may run at once: the first touch of a page not yet loaded (by a vCPU,
// KVM or a device) stops that thread until the loader thread copies the page in; meanwhile
// the loader copies everything else in the background, then hands the range back to the
// kernel (pages that were holes in the file are then plain zero pages). Without userfaultfd
// (a kernel without it, or no permission) it loads everything before start() returns, with
// two threads. Restoring 256 MiB takes ~250 ms on this machine either way; lazily, the guest
// runs during those 250 ms instead of after them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/mmap_region.h"
#include "common/unique_fd.h"
#include "vmm/memory/extents.h"

namespace flotilla::vmm {

class GuestMemory;

struct MemoryLoadStats {
  bool lazy = false;
  uint64_t bytes_loaded = 0;   // data copied from the file
  uint64_t faults_served = 0;  // pages copied because something touched them first
  absl::Duration elapsed;      // from start() until everything was loaded
};

class MemoryLoader {
 public:
  // Starts loading `file` (exactly memory.ramBytes() long) into `memory`, which must outlive
  // the loader and must not be touched by anyone but the loader until start() returned.
  // With `allow_lazy` false (huge pages: userfaultfd would need 2 MiB copies) it always loads
  // eagerly.
  static absl::StatusOr<std::shared_ptr<MemoryLoader>> start(const GuestMemory& memory,
                                                             UniqueFd file, std::string path,
                                                             bool allow_lazy = true);
  ~MemoryLoader();

  // Blocks until every page of the file is in guest memory; the load's error if it failed.
  absl::Status waitLoaded();
  MemoryLoadStats stats() const;

  // Called (once, on the loader's thread) if a lazy load fails: whoever touches a page that
  // was not loaded would then wait forever, so the VM must end. Called at once if it already
  // failed.
  void onFailure(std::function<void(const absl::Status&)> handler);

 private:
  MemoryLoader(uint8_t* guest, uint64_t size, UniqueFd file, std::string path, MmapRegion source,
               std::vector<Extent> extents)
      : guest_(guest),
        size_(size),
        file_(std::move(file)),
        path_(std::move(path)),
        source_(std::move(source)),
        extents_(std::move(extents)) {}

  absl::Status loadEagerly();
  absl::Status startLazily();
  void serve();
  // Copies [offset, offset + length) of the file into guest memory through userfaultfd,
  // skipping pages already there.
  absl::Status copyIn(uint64_t offset, uint64_t length);
  absl::Status serveFault(uint64_t address);
  void finish(absl::Status status);

  uint8_t* const guest_;  // guest memory, at memfd offset 0
  const uint64_t size_;
  UniqueFd file_;
  const std::string path_;
  MmapRegion source_;  // the file, read-only
  const std::vector<Extent> extents_;
  UniqueFd uffd_;
  UniqueFd stop_;  // eventfd that ends the loader thread
  absl::Duration started_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  MemoryLoadStats stats_ ABSL_GUARDED_BY(mu_);
  std::function<void(const absl::Status&)> on_failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::vmm
