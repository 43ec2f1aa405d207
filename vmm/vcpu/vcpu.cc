// The vCPU thread and its exits (see vcpu.h).
#include "vmm/vcpu/vcpu.h"

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "vmm/exit_codes.h"

namespace flotilla::vmm {
namespace {

// The signal that kicks a vCPU thread out of KVM_RUN. Its handler does nothing: what matters
// is that KVM_RUN returns EINTR (a signal pending for the thread ends KVM_RUN).
int kickSignal() {
  return SIGRTMIN;
}

void ignoreKick(int) {}

constexpr uint64_t kRflagsInterruptEnable = 1 << 9;

}  // namespace

const char* vmEndReasonName(VmEnd::Reason reason) {
  switch (reason) {
    case VmEnd::Reason::kGuestExit:
      return "guest exit";
    case VmEnd::Reason::kReset:
      return "guest reset";
    case VmEnd::Reason::kHalted:
      return "guest halted";
    case VmEnd::Reason::kTripleFault:
      return "triple fault";
    case VmEnd::Reason::kError:
      return "error";
    case VmEnd::Reason::kShutdown:
      return "shutdown";
    case VmEnd::Reason::kMigrated:
      return "migrated";
  }
  return "unknown";
}

void Vcpu::installKickHandler() {
  struct sigaction action {};
  action.sa_handler = ignoreKick;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return
  sigaction(kickSignal(), &action, nullptr);
}

Vcpu::Vcpu(uint32_t index, VcpuFd fd, VcpuHost& host, const Logger& log)
    : index_(index),
      fd_(std::move(fd)),
      host_(host),
      log_(log.with("vcpu", std::to_string(index))),
      unclaimed_limiter_(systemClock(), 10, absl::Seconds(10)) {}

Vcpu::~Vcpu() {
  stop();
}

void Vcpu::start(bool paused) {
  {
    absl::MutexLock lock(&mu_);
    request_ = paused ? Request::kPause : Request::kRun;
  }
  thread_ = std::thread([this] { threadMain(); });
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Vcpu* v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(v->mu_) { return v->state_ != State::kCreated; },
      this));
}

void Vcpu::kick() {
  kicks_.fetch_add(1, std::memory_order_relaxed);
  // Order matters: immediate_exit first, so that a kick landing just before KVM_RUN is not
  // lost (KVM_RUN then returns at once); the signal ends a KVM_RUN already in progress.
  std::atomic_ref<uint8_t>(fd_.run()->immediate_exit).store(1);
  pthread_kill(thread_.native_handle(), kickSignal());
}

void Vcpu::pause() {
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kRunning) return;
    request_ = Request::kPause;
  }
  kick();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Vcpu* v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(v->mu_) { return v->state_ != State::kRunning; },
      this));
}

void Vcpu::resume() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kPaused || request_ != Request::kPause) return;
  request_ = Request::kRun;
  mu_.Await(absl::Condition(
      +[](Vcpu* v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(v->mu_) {
        return v->state_ != State::kPaused || v->failed_;
      },
      this));
}

void Vcpu::stop() {
  {
    absl::MutexLock lock(&mu_);
    if (state_ == State::kCreated || state_ == State::kStopped) {
      state_ = State::kStopped;
      if (!thread_.joinable()) return;
    }
    request_ = Request::kStop;
  }
  if (thread_.joinable()) {
    kick();
    thread_.join();
  }
}

Vcpu::State Vcpu::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

VcpuCounters Vcpu::counters() const {
  return VcpuCounters{
      exits_.load(std::memory_order_relaxed), io_exits_.load(std::memory_order_relaxed),
      mmio_exits_.load(std::memory_order_relaxed),
      unclaimed_accesses_.load(std::memory_order_relaxed), kicks_.load(std::memory_order_relaxed)};
}

bool Vcpu::idleForever() {
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kRunning || failed_) return false;
    uint64_t exits = exits_.load(std::memory_order_relaxed);
    if (exits != exits_at_last_probe_) {  // it exited since the last look: not idle
      exits_at_last_probe_ = exits;
      return false;
    }
    probe_requested_ = true;
    probe_done_ = false;
  }
  kick();
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](Vcpu* v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(v->mu_) {
                             return v->probe_done_ || v->state_ != State::kRunning;
                           },
                           this),
                       absl::Seconds(1));
  return probe_done_ && probe_halted_;
}

bool Vcpu::probeHalted() const {
  kvm_mp_state mp{};
  if (!fd_.getMpState(mp).ok()) return false;
  // Application processors that no INIT/SIPI ever started.
  if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED || mp.mp_state == KVM_MP_STATE_INIT_RECEIVED) {
    return true;
  }
  if (mp.mp_state != KVM_MP_STATE_HALTED) return false;
  kvm_regs regs{};
  if (!fd_.getRegs(regs).ok()) return false;
  return (regs.rflags & kRflagsInterruptEnable) == 0;
}

void Vcpu::threadMain() {
  setCurrentThreadName(fmt::format("vcpu{}", index_));
  std::atomic_ref<uint8_t> immediate_exit(fd_.run()->immediate_exit);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (probe_requested_) {
        probe_halted_ = probeHalted();
        probe_requested_ = false;
        probe_done_ = true;
      }
      while ((request_ == Request::kPause || failed_) && request_ != Request::kStop) {
        state_ = State::kPaused;
        mu_.Await(absl::Condition(
            +[](Vcpu* v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(v->mu_) {
              return v->request_ == Request::kStop ||
                     (v->request_ != Request::kPause && !v->failed_);
            },
            this));
      }
      if (request_ == Request::kStop) {
        state_ = State::kStopped;
        return;
      }
      state_ = State::kRunning;
    }
    int rc = fd_.runOnce();
    if (rc < 0) {
      int error = errno;
      immediate_exit.store(0);
      if (error == EINTR || error == EAGAIN) continue;
      fail(VmEnd::Reason::kError, kExitInternalError,
           fmt::format("KVM_RUN failed: {}", std::strerror(error)));
      continue;
    }
    exits_.fetch_add(1, std::memory_order_relaxed);
    handleExit();
  }
}

void Vcpu::fail(VmEnd::Reason reason, int exit_status, std::string what) {
  std::string detail = fmt::format("vCPU {}: {}; {}", index_, what, describeRegisters(fd_));
  log_.error("{}", detail);
  {
    absl::MutexLock lock(&mu_);
    failed_ = true;
  }
  host_.endVm(VmEnd{reason, exit_status, std::move(detail)});
}

void Vcpu::handleExit() {
  kvm_run& run = *fd_.run();
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      io_exits_.fetch_add(1, std::memory_order_relaxed);
      handleIo(run);
      return;
    case KVM_EXIT_MMIO:
      mmio_exits_.fetch_add(1, std::memory_order_relaxed);
      handleMmio(run);
      return;
    case KVM_EXIT_INTR:
      return;
    case KVM_EXIT_SHUTDOWN:
      fail(VmEnd::Reason::kTripleFault, kExitGuestCrashed, "the guest triple-faulted");
      return;
    case KVM_EXIT_HLT:  // only without an in-kernel LAPIC, but harmless to handle
      fail(VmEnd::Reason::kHalted, kExitOk, "halted");
      return;
    case KVM_EXIT_SYSTEM_EVENT:
      if (run.system_event.type == KVM_SYSTEM_EVENT_RESET) {
        host_.endVm({VmEnd::Reason::kReset, kExitOk, "the guest asked for a reset"});
        absl::MutexLock lock(&mu_);
        failed_ = true;
        return;
      }
      fail(VmEnd::Reason::kHalted, kExitOk, fmt::format("system event {}", run.system_event.type));
      return;
    case KVM_EXIT_INTERNAL_ERROR: {
      std::string data;
      for (uint32_t i = 0; i < run.internal.ndata && i < 16; ++i) {
        data += fmt::format(" {:#x}", run.internal.data[i]);
      }
      fail(VmEnd::Reason::kError, kExitInternalError,
           fmt::format("KVM internal error, suberror {}{} (data:{})", run.internal.suberror,
                       run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                           ? " (an instruction KVM cannot emulate)"
                           : "",
                       data));
      return;
    }
    case KVM_EXIT_FAIL_ENTRY:
      fail(VmEnd::Reason::kError, kExitInternalError,
           fmt::format("KVM could not enter the guest (hardware reason {:#x})",
                       run.fail_entry.hardware_entry_failure_reason));
      return;
    default:
      fail(VmEnd::Reason::kError, kExitInternalError,
           fmt::format("unexpected KVM exit reason {}", run.exit_reason));
      return;
  }
}

void Vcpu::handleIo(kvm_run& run) {
  // KVM leaves the data (count items of `size` bytes, for string instructions) inside the
  // kvm_run mapping at data_offset.
  auto* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
  const Bus& bus = host_.ioBus();
  for (uint32_t i = 0; i < run.io.count; ++i) {
    std::span<uint8_t> item(data + size_t{i} * run.io.size, run.io.size);
    bool claimed = run.io.direction == KVM_EXIT_IO_OUT ? bus.write(run.io.port, item)
                                                       : bus.read(run.io.port, item);
    if (claimed) continue;
    // Nothing there: reads float high, writes vanish, as on an ISA bus.
    if (run.io.direction == KVM_EXIT_IO_IN) std::memset(item.data(), 0xff, item.size());
    unclaimed_accesses_.fetch_add(1, std::memory_order_relaxed);
    log_.limited(unclaimed_limiter_, LogLevel::kDebug, "unclaimed port {} of {:#x} ({} bytes)",
                 run.io.direction == KVM_EXIT_IO_OUT ? "write" : "read", run.io.port, run.io.size);
  }
}

void Vcpu::handleMmio(kvm_run& run) {
  std::span<uint8_t> data(run.mmio.data, std::min<uint32_t>(run.mmio.len, sizeof(run.mmio.data)));
  const Bus& bus = host_.mmioBus();
  bool claimed =
      run.mmio.is_write ? bus.write(run.mmio.phys_addr, data) : bus.read(run.mmio.phys_addr, data);
  if (claimed) return;
  if (!run.mmio.is_write) std::memset(data.data(), 0xff, data.size());
  unclaimed_accesses_.fetch_add(1, std::memory_order_relaxed);
  log_.limited(unclaimed_limiter_, LogLevel::kDebug, "unclaimed MMIO {} of {:#x} ({} bytes)",
               run.mmio.is_write ? "write" : "read", run.mmio.phys_addr, run.mmio.len);
}

std::string describeRegisters(const VcpuFd& fd) {
  kvm_regs r{};
  kvm_sregs s{};
  if (!fd.getRegs(r).ok() || !fd.getSregs(s).ok()) return "registers unavailable";
  return fmt::format(
      "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} "
      "rdi={:#x} rbp={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} "
      "cs={:#x}(base={:#x} l={} db={} dpl={}) ss={:#x}",
      r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, s.cr0, s.cr2, s.cr3,
      s.cr4, s.efer, s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.cs.dpl, s.ss.selector);
}

}  // namespace flotilla::vmm
