// The migration engine's two VM interfaces (migration/vm_interface.h) over flotilla-vmm's Vm:
// VmMigrationSource for the running VM that leaves, VmMigrationTarget for the VMM started
// with --incoming, which builds its Vm from what arrives; and ListenerStreamAcceptor, the
// --incoming listener that takes the migration's data streams.
#pragma once

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"
#include "migration/receiver.h"
#include "migration/vm_interface.h"
#include "vmm/vm.h"

namespace flotilla::vmm {

class VmMigrationSource final : public migration::SourceVm {
 public:
  explicit VmMigrationSource(Vm& vm) : vm_(vm) {}

  flotilla::v1::MigrationMemoryLayout layout() const override;
  std::span<const uint8_t> memory() const override;
  absl::StatusOr<std::vector<migration::ByteRange>> populated() const override;
  absl::Status startDirtyLog() override;
  absl::StatusOr<uint64_t> fetchDirtyLog(DirtyBitmap& out) override;
  absl::Status stopDirtyLog() override;
  absl::Status pause() override;
  absl::Status resume() override;
  absl::StatusOr<std::string> saveDeviceState() override;
  void setThrottle(int percent) override;
  absl::StatusOr<std::vector<migration::LocalDisk>> localDisks() const override;

 private:
  Vm& vm_;
};

class VmMigrationTarget final : public migration::TargetVm {
 public:
  // `config`: the VM as this VMM was started for it (memory, vCPUs, CPU model, devices).
  explicit VmMigrationTarget(VmConfig config) : config_(std::move(config)) {}

  absl::Status prepare(const flotilla::v1::MigrationMemoryLayout& layout) override;
  std::span<uint8_t> memory() override;
  absl::Status load(const std::string& state) override;
  absl::Status resume() override;
  void discard() override;
  absl::StatusOr<std::string> diskPath(uint32_t index) override;

  // The VM once it runs (after resume()); null before.
  std::unique_ptr<Vm> takeVm();

 private:
  const VmConfig config_;
  std::unique_ptr<Vm> vm_;  // built by prepare(), its state loaded by load()
  bool running_ = false;
};

// The data streams of an incoming migration come to the listener the main connection came to;
// close() (the receiver has them all, or gave up) closes it: one source, once.
class ListenerStreamAcceptor final : public migration::StreamAcceptor {
 public:
  ListenerStreamAcceptor(UniqueFd listener, absl::Duration io_timeout)
      : listener_(std::move(listener)), io_timeout_(io_timeout) {}

  absl::StatusOr<std::unique_ptr<migration::Connection>> accept(absl::Duration timeout) override;
  void close() override { listener_.reset(); }

 private:
  UniqueFd listener_;
  const absl::Duration io_timeout_;
};

}  // namespace flotilla::vmm
