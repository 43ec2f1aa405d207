// Vm: one virtual machine: its KVM VM, guest memory, in-kernel interrupt controllers and PIT,
// legacy devices, and vCPUs. create() boots a kernel; restore() (vmm/state/) resumes a
// snapshot. The VM ends when the guest exits, resets, halts for good or crashes, or when it
// is shut down; waitForEnd() says how.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/console.h"
#include "vmm/devices/debug_exit.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu/vcpu.h"
#include "vmm/virtio_setup.h"
#include "vmm/vm_config.h"

namespace flotilla::vmm {

class Vm final : public VcpuHost {
 public:
  enum class RunState { kCreated, kRunning, kPaused, kEnded };

  // Builds the VM and loads `config.kernel` (and initrd, command line) for boot. Nothing runs
  // until start(). Errors carry their exit code (exit_codes.h).
  static absl::StatusOr<std::unique_ptr<Vm>> create(const VmConfig& config);

  // Builds the VM with `memory` and the saved state of a snapshot (config.vcpus,
  // memory size and CPU model come from the snapshot). Nothing runs until start().
  static absl::StatusOr<std::unique_ptr<Vm>> restore(const VmConfig& config, GuestMemory memory,
                                                     const flotilla::v1::VmSnapshot& snapshot);

  ~Vm() override;

  absl::Status start(bool paused = false);
  absl::Status pause();
  absl::Status resume();
  // Asks the guest to shut down (Ctrl-Alt-Del), waits up to `graceful` for it to end, then
  // ends the VM. With a zero timeout, or when paused, ends it at once.
  void shutdown(absl::Duration graceful);

  // Blocks until the VM ended, then stops every vCPU; returns why it ended.
  VmEnd waitForEnd();
  // As waitForEnd(), with a timeout: nullopt when still running.
  std::optional<VmEnd> waitForEnd(absl::Duration timeout);

  // The whole VM state but memory (the VM must be paused).
  absl::StatusOr<flotilla::v1::VmSnapshot> saveState() const;

  RunState runState() const;
  const VmConfig& config() const { return config_; }
  const GuestMemory& memory() const { return memory_; }
  std::vector<VcpuCounters> vcpuCounters() const;
  absl::Time startedAt() const { return started_at_; }

  // VcpuHost.
  const Bus& ioBus() const override { return io_bus_; }
  const Bus& mmioBus() const override { return mmio_bus_; }
  VirtioDevices& virtio() { return *virtio_; }
  void endVm(VmEnd end) override;

 private:
  Vm(VmConfig config, Kvm kvm, VmFd vm_fd, GuestMemory memory, std::unique_ptr<EventLoop> loop);
  // Everything but the guest's own state: memory slots, irqchip, PIT, devices, vCPUs with
  // their CPUID and power-on state.
  static absl::StatusOr<std::unique_ptr<Vm>> build(const VmConfig& config, GuestMemory memory);
  absl::Status addDevices();
  absl::Status createVcpus();
  absl::Status restoreState(const flotilla::v1::VmSnapshot& snapshot);
  void monitor(std::stop_token stop);
  void stopVcpus();

  const VmConfig config_;
  const Logger log_;
  Kvm kvm_;
  VmFd vm_fd_;
  GuestMemory memory_;
  std::unique_ptr<EventLoop> loop_;  // console socket
  std::vector<uint32_t> kvm_msrs_;   // KVM_GET_MSR_INDEX_LIST
  Bus io_bus_;
  Bus mmio_bus_;
  std::shared_ptr<SerialSink> console_;
  std::shared_ptr<Serial> serial_;
  std::shared_ptr<I8042> i8042_;
  std::shared_ptr<Cmos> cmos_;
  std::shared_ptr<DebugExit> debug_exit_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::unique_ptr<VirtioDevices> virtio_;  // after the memory and VM it uses
  absl::Time started_at_;

  mutable absl::Mutex mu_;
  RunState run_state_ ABSL_GUARDED_BY(mu_) = RunState::kCreated;
  std::optional<VmEnd> end_ ABSL_GUARDED_BY(mu_);
  std::jthread monitor_;
};

}  // namespace flotilla::vmm
