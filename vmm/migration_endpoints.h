// The migration engine's two VM interfaces (migration/vm_interface.h) over flotilla-vmm's Vm:
// VmMigrationSource for the running VM that leaves, VmMigrationTarget for the VMM started
// with --incoming, which builds its Vm from what arrives.
#pragma once

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
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

  // The VM once it runs (after resume()); null before.
  std::unique_ptr<Vm> takeVm();

 private:
  const VmConfig config_;
  std::unique_ptr<Vm> vm_;  // built by prepare(), its state loaded by load()
  bool running_ = false;
};

}  // namespace flotilla::vmm
