// VmMigrationSource and VmMigrationTarget (see migration_endpoints.h).
#include "vmm/migration_endpoints.h"

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/memory/extents.h"

namespace flotilla::vmm {

flotilla::v1::MigrationMemoryLayout VmMigrationSource::layout() const {
  flotilla::v1::MigrationMemoryLayout layout;
  layout.set_ram_bytes(vm_.memory().ramBytes());
  layout.set_memory_bytes(vm_.memory().backing().size());
  layout.set_page_size(static_cast<uint32_t>(kPageSize));
  layout.set_vcpus(vm_.config().vcpus);
  layout.set_cpu_model(vm_.config().cpu_model);
  layout.set_vm_config(vm_.configState().SerializeAsString());
  return layout;
}

std::span<const uint8_t> VmMigrationSource::memory() const {
  return vm_.memory().backing();
}

absl::StatusOr<std::vector<migration::ByteRange>> VmMigrationSource::populated() const {
  // Memory restored lazily is complete only once loaded; its loader's writes are not logged.
  RETURN_IF_ERROR(vm_.memory().waitLoaded());
  ASSIGN_OR_RETURN(std::vector<Extent> extents,
                   dataExtents(vm_.memory().fd(), vm_.memory().backing().size(), "guest memory"));
  std::vector<migration::ByteRange> ranges;
  ranges.reserve(extents.size());
  for (const Extent& extent : extents) ranges.push_back({extent.offset, extent.length});
  return ranges;
}

absl::Status VmMigrationSource::startDirtyLog() {
  RETURN_IF_ERROR(vm_.memory().waitLoaded());
  return vm_.startDirtyLog();
}

absl::StatusOr<uint64_t> VmMigrationSource::fetchDirtyLog(DirtyBitmap& out) {
  return vm_.fetchDirtyLog(out);
}

absl::Status VmMigrationSource::stopDirtyLog() {
  return vm_.stopDirtyLog();
}

absl::Status VmMigrationSource::pause() {
  return vm_.pause();
}

absl::Status VmMigrationSource::resume() {
  return vm_.resume();
}

absl::StatusOr<std::string> VmMigrationSource::saveDeviceState() {
  ASSIGN_OR_RETURN(flotilla::v1::VmSnapshot state, vm_.saveState());
  std::string bytes;
  if (!state.SerializeToString(&bytes)) return absl::InternalError("serializing the VM state");
  return bytes;
}

void VmMigrationSource::setThrottle(int percent) {
  vm_.setThrottle(percent);
}

absl::StatusOr<std::vector<migration::LocalDisk>> VmMigrationSource::localDisks() const {
  std::vector<migration::LocalDisk> disks;
  const std::vector<DiskConfig>& configured = vm_.config().disks;
  for (size_t i = 0; i < configured.size(); ++i) {
    if (configured[i].path.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "disk {} is an iSCSI LUN ({}): shared storage stays where it is; migrate without "
          "--with-disks",
          i, configured[i].iscsi));
    }
    disks.push_back({.index = static_cast<uint32_t>(i), .path = configured[i].path});
  }
  return disks;
}

absl::StatusOr<std::string> VmMigrationTarget::diskPath(uint32_t index) {
  if (index >= config_.disks.size()) {
    return absl::FailedPreconditionError(fmt::format(
        "this target was started with {} --disk options: give it one for each of the VM's "
        "disks, in the same order",
        config_.disks.size()));
  }
  const DiskConfig& disk = config_.disks[index];
  if (disk.path.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "this target's disk {} is an iSCSI LUN ({}): a migrated disk goes into an image file",
        index, disk.iscsi));
  }
  return disk.path;
}

absl::Status VmMigrationTarget::prepare(const flotilla::v1::MigrationMemoryLayout& layout) {
  if (layout.ram_bytes() != config_.memory_bytes) {
    return absl::FailedPreconditionError(fmt::format(
        "the VM has {} bytes of memory, this target was started with --memory {}: start the "
        "target with the VM's size",
        layout.ram_bytes(), config_.memory_bytes));
  }
  if (layout.vcpus() != config_.vcpus) {
    return absl::FailedPreconditionError(
        fmt::format("the VM has {} vCPUs, this target was started with --vcpus {}", layout.vcpus(),
                    config_.vcpus));
  }
  if (layout.cpu_model() != config_.cpu_model) {
    return absl::FailedPreconditionError(fmt::format(
        "the VM runs CPU model {}, this target was started with --cpu-model {}: a guest "
        "cannot change CPU features under its feet",
        layout.cpu_model(), config_.cpu_model));
  }
  flotilla::v1::VmConfigState saved;
  if (!saved.ParseFromString(layout.vm_config()) || saved.vcpus() != layout.vcpus() ||
      saved.memory_bytes() != layout.ram_bytes()) {
    return absl::DataLossError("the VM configuration in the memory layout does not add up");
  }
  ASSIGN_OR_RETURN(GuestMemory memory,
                   GuestMemory::create(layout.ram_bytes(), {.hugepages = config_.hugepages}));
  if (memory.backing().size() != layout.memory_bytes()) {
    return absl::FailedPreconditionError(
        fmt::format("the VM's memory file has {} bytes, this VMM lays out {} for the same RAM",
                    layout.memory_bytes(), memory.backing().size()));
  }
  // The VM is built now, while memory arrives, not in the switchover's pause: only its state
  // is loaded then. Its devices open now too, so that a disk or tap this host cannot open
  // fails the migration before any memory moved.
  ASSIGN_OR_RETURN(vm_, Vm::prepareRestore(config_, std::move(memory), saved));
  return absl::OkStatus();
}

std::span<uint8_t> VmMigrationTarget::memory() {
  if (vm_ == nullptr) return {};
  return vm_->memory().backing();
}

absl::Status VmMigrationTarget::load(const std::string& state) {
  if (vm_ == nullptr) return absl::FailedPreconditionError("no VM was prepared");
  flotilla::v1::VmSnapshot snapshot;
  if (!snapshot.ParseFromString(state)) {
    return absl::DataLossError("the VM state from the source does not parse");
  }
  return vm_->loadState(snapshot);
}

absl::Status VmMigrationTarget::resume() {
  if (vm_ == nullptr) return absl::FailedPreconditionError("no VM was loaded");
  RETURN_IF_ERROR(vm_->start());
  running_ = true;
  // Switches and peers learn where the guest's MACs are now.
  const Logger log("migration");
  auto asked = vm_->announceNics();
  if (!asked.ok()) {
    log.warn("announcing the NICs after the migration: {}", asked.status().message());
  } else if (!vm_->virtio().nics().empty()) {
    log.info(
        "announced {} NICs ({} guests asked to announce themselves; again 4 times within "
        "500 ms)",
        vm_->virtio().nics().size(), *asked);
  }
  return absl::OkStatus();
}

void VmMigrationTarget::discard() {
  if (vm_ != nullptr && running_) return;  // never throw away a running guest
  vm_.reset();
}

std::unique_ptr<Vm> VmMigrationTarget::takeVm() {
  if (!running_) return nullptr;
  return std::move(vm_);
}

absl::StatusOr<std::unique_ptr<migration::Connection>> ListenerStreamAcceptor::accept(
    absl::Duration timeout) {
  if (!listener_.valid()) {
    return absl::FailedPreconditionError("the migration listener is closed");
  }
  std::string peer;
  ASSIGN_OR_RETURN(UniqueFd fd, migration::acceptOne(listener_.get(), timeout, &peer));
  return std::make_unique<migration::Connection>(std::move(fd), "migration source " + peer,
                                                 io_timeout_);
}

}  // namespace flotilla::vmm
