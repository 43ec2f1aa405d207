// Vm: one virtual machine: its KVM VM, guest memory, in-kernel interrupt controllers and PIT,
// legacy devices, and vCPUs. create() boots a kernel; restore() (vmm/state/) resumes a
// snapshot. The VM ends when the guest exits, resets, halts for good or crashes, or when it
// is shut down; waitForEnd() says how.
#pragma once

#include <atomic>
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
#include "vmm/memory/dirty_bitmap.h"
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
  // restore() in two steps, for a migration target that builds its VM while memory is still
  // arriving: first the VM `saved` describes, with `memory` and its devices opened, nothing
  // loaded; then loadState() with the rest of the saved state.
  static absl::StatusOr<std::unique_ptr<Vm>> prepareRestore(
      const VmConfig& config, GuestMemory memory, const flotilla::v1::VmConfigState& saved);
  absl::Status loadState(const flotilla::v1::VmSnapshot& snapshot);

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

  // The configuration as snapshots and migrations record it (devices as their options).
  flotilla::v1::VmConfigState configState() const;
  // The whole VM state but memory (the VM must be paused).
  absl::StatusOr<flotilla::v1::VmSnapshot> saveState() const;

  // Dirty-page tracking for live migration, in memfd pages (memory().backing() / 4096). One
  // caller at a time (the migration worker); any run state. Lazily restored memory must be
  // loaded (memory().waitLoaded()) before its pages are copied: the loader's writes are not
  // tracked.
  //
  // Starts dirty-page tracking: every memory slot re-registered with KVM_MEM_LOG_DIRTY_PAGES
  // (manual protect enabled when the kernel has it), and device writes marked. Pages dirtied
  // before this call are not reported. Called again while tracking, it starts over (what was
  // logged so far is dropped).
  absl::Status startDirtyLog();
  // ORs into `out` (sized GuestMemory pages = memory().backing().size() / 4096) every page
  // written since the previous call (or startDirtyLog): by vCPUs (KVM_GET_DIRTY_LOG, then
  // KVM_CLEAR_DIRTY_LOG for what was reported when manual protect is on) and by devices;
  // returns how many pages it added (set in `out` that were not set before). On an error `out`
  // may hold some of the pages (and they are no longer logged): keep them.
  absl::StatusOr<uint64_t> fetchDirtyLog(DirtyBitmap& out);
  // Stops tracking (slots re-registered without the flag). Idempotent.
  absl::Status stopDirtyLog();

  // Tells switches and peers where the guest's MACs are (after a migration): every NIC sends
  // announcement frames and asks its guest to announce itself, now and again 50, 150, 300 and
  // 500 ms later (as QEMU does by default), from a thread of its own, so that a switch port
  // that came up after the first round (a migration target's tap) still learns them. Returns
  // the first round's count of guests asked (their driver takes announcements).
  absl::StatusOr<uint32_t> announceNics();

  // Takes `percent` (0-99) of the vCPUs' time away (migration's auto-converge): a thread
  // stops them for that share of every 20 ms while the VM runs. 0 ends throttling.
  void setThrottle(int percent);

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
  void throttle(std::stop_token stop);
  void stopVcpus();
  // ORs the pages logged since the last call into `out` (of the memory's size).
  absl::Status collectDirtyLog(DirtyBitmap& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(dirty_mu_);

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
  std::jthread announcer_;  // the repeated announcements after a migration

  absl::Mutex throttle_mu_;  // starting and stopping the throttle thread
  std::atomic<int> throttle_percent_{0};
  std::jthread throttler_ ABSL_GUARDED_BY(throttle_mu_);

  // Dirty-page tracking; a mutex of its own, as fetching must not hold up pause() or endVm().
  absl::Mutex dirty_mu_;
  bool dirty_logging_ ABSL_GUARDED_BY(dirty_mu_) = false;
  bool manual_dirty_protect_ ABSL_GUARDED_BY(dirty_mu_) = false;  // KVM_CLEAR_DIRTY_LOG in use
  std::vector<std::vector<uint64_t>> slot_dirty_words_ ABSL_GUARDED_BY(dirty_mu_);  // per slot
  std::shared_ptr<ConcurrentDirtyBitmap> device_dirty_ ABSL_GUARDED_BY(dirty_mu_);
};

}  // namespace flotilla::vmm
