// Vcpu: one KVM vCPU and the thread that runs it. The thread follows an explicit state
// machine (created → running ⇄ paused → stopped). Other threads change it by setting a
// request, then kicking the vCPU out of KVM_RUN with kvm_run.immediate_exit and a signal, and
// waiting until the vCPU thread acknowledges. While a vCPU is paused its thread waits outside
// KVM_RUN, so any thread may then read or write its state through fd().
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "vmm/devices/bus.h"
#include "vmm/kvm/kvm.h"

namespace flotilla::vmm {

// Why a VM ended, and the VMM's exit status for it.
struct VmEnd {
  enum class Reason {
    kGuestExit,    // the guest wrote to the debug-exit port
    kReset,        // the guest asked for a reset (8042 reset line): a reboot
    kHalted,       // every vCPU halted with interrupts disabled: a power-off
    kTripleFault,  // the guest crashed
    kError,        // KVM or the VMM failed (internal error, failed entry, unexpected exit)
    kShutdown,     // asked through the API or by a signal
    kMigrated,     // the guest runs on the migration target now
  };
  Reason reason = Reason::kShutdown;
  int exit_status = 0;
  std::string detail;
};

const char* vmEndReasonName(VmEnd::Reason reason);

// What a vCPU needs from its VM.
class VcpuHost {
 public:
  virtual ~VcpuHost() = default;
  virtual const Bus& ioBus() const = 0;
  virtual const Bus& mmioBus() const = 0;
  // The vCPU hit an exit that ends the VM. The VM stops every vCPU soon after.
  virtual void endVm(VmEnd end) = 0;
};

struct VcpuCounters {
  uint64_t exits = 0;
  uint64_t io_exits = 0;
  uint64_t mmio_exits = 0;
  uint64_t unclaimed_accesses = 0;
  uint64_t kicks = 0;
};

class Vcpu {
 public:
  enum class State { kCreated, kRunning, kPaused, kStopped };

  Vcpu(uint32_t index, VcpuFd fd, VcpuHost& host, const Logger& log);
  ~Vcpu();  // stops and joins the thread
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  // Installs the process-wide handler of the kick signal; call once before any vCPU starts.
  static void installKickHandler();

  uint32_t index() const { return index_; }
  const VcpuFd& fd() const { return fd_; }

  // Starts the thread, running (or paused when `paused`).
  void start(bool paused);
  // These block until the vCPU thread acknowledges; no-ops in a state where they mean nothing.
  void pause();
  void resume();
  void stop();

  // Whether the vCPU is halted with interrupts disabled (or was never started by an INIT/SIPI):
  // it cannot run again without an interrupt that nothing will send. The vCPU is kicked and
  // checks itself; returns false when it is busy (it exited recently or is paused).
  bool idleForever();

  State state() const;
  VcpuCounters counters() const;

 private:
  enum class Request { kRun, kPause, kStop, kProbe };

  void threadMain();
  void kick();
  void handleExit();
  void handleIo(kvm_run& run);
  void handleMmio(kvm_run& run);
  void fail(VmEnd::Reason reason, int exit_status, std::string what);
  // On the vCPU thread, outside KVM_RUN: true when the vCPU is halted for good.
  bool probeHalted() const;

  const uint32_t index_;
  const VcpuFd fd_;
  VcpuHost& host_;
  const Logger log_;
  LogRateLimiter unclaimed_limiter_;

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kCreated;
  Request request_ ABSL_GUARDED_BY(mu_) = Request::kRun;
  bool probe_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool probe_done_ ABSL_GUARDED_BY(mu_) = false;
  bool probe_halted_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;  // hit an exit that ends the VM: never runs again
  uint64_t exits_at_last_probe_ ABSL_GUARDED_BY(mu_) = 0;

  // Counted on the vCPU thread without a lock (relaxed: they are statistics).
  std::atomic<uint64_t> exits_{0};
  std::atomic<uint64_t> io_exits_{0};
  std::atomic<uint64_t> mmio_exits_{0};
  std::atomic<uint64_t> unclaimed_accesses_{0};
  std::atomic<uint64_t> kicks_{0};

  std::thread thread_;
};

// The vCPU's registers as one line, for reports of crashes and unexpected exits.
std::string describeRegisters(const VcpuFd& fd);

}  // namespace flotilla::vmm
