// Vm (see vm.h).
#include "vmm/vm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread.h"
#include "common/units.h"
#include "fmt/format.h"
#include "network/mac_address.h"
#include "vmm/boot/boot.h"
#include "vmm/exit_codes.h"
#include "vmm/state/vcpu_state.h"
#include "vmm/vcpu/cpuid.h"
#include "vmm/vcpu/msrs.h"
#include "vmm/vcpu/setup.h"

namespace flotilla::vmm {
namespace {

// KVM needs three pages for a real-mode TSS and one for an identity-mapped page table on
// Intel hosts; both go at the top of the MMIO hole, where no RAM or device is.
constexpr uint64_t kTssAddress = 0xfffbd000;
constexpr uint64_t kIdentityMapAddress = 0xfffbc000;

constexpr uint32_t kMaxVcpus = 254;  // xAPIC ids, with the IOAPIC's id after the last vCPU
constexpr uint64_t kMinMemory = uint64_t{32} << 20;
constexpr uint64_t kMaxImageBytes = uint64_t{1} << 30;

class KvmInterruptLine final : public InterruptLine {
 public:
  KvmInterruptLine(const VmFd& vm, uint32_t irq) : vm_(vm), irq_(irq) {}
  void setLevel(bool high) override { (void)vm_.irqLine(irq_, high); }

 private:
  const VmFd& vm_;
  const uint32_t irq_;
};

absl::StatusOr<std::vector<uint8_t>> readImage(const std::string& path, std::string_view what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return withExitCode(errnoStatus(errno, fmt::format("cannot read the {} {}", what, path)),
                        kExitBadKernel);
  }
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size < 0 || ::lseek(fd.get(), 0, SEEK_SET) < 0) {
    return withExitCode(errnoStatus(errno, fmt::format("cannot read the {} {}", what, path)),
                        kExitBadKernel);
  }
  if (static_cast<uint64_t>(size) > kMaxImageBytes) {
    return withExitCode(
        absl::InvalidArgumentError(fmt::format("the {} {} is {}: more than the {} limit", what,
                                               path, formatByteSize(static_cast<uint64_t>(size)),
                                               formatByteSize(kMaxImageBytes))),
        kExitBadKernel);
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return withExitCode(
          errnoStatus(n < 0 ? errno : EIO, fmt::format("cannot read the {} {}", what, path)),
          kExitBadKernel);
    }
    done += static_cast<size_t>(n);
  }
  return bytes;
}

// Registers region i of `memory` as KVM memory slot i with `flags` (0, or
// KVM_MEM_LOG_DIRTY_PAGES). Registering a slot again with other flags only changes them.
absl::Status registerMemorySlots(const VmFd& vm, const GuestMemory& memory, uint32_t flags) {
  for (size_t i = 0; i < memory.regions().size(); ++i) {
    const GuestRegion& region = memory.regions()[i];
    RETURN_IF_ERROR(vm.setUserMemoryRegion(static_cast<uint32_t>(i), region.base.raw(), region.size,
                                           memory.hostAddress(i), flags));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status validateVmConfig(const VmConfig& config) {
  auto usage = [](std::string message) {
    return withExitCode(absl::InvalidArgumentError(std::move(message)), kExitUsage);
  };
  if (config.vcpus == 0 || config.vcpus > kMaxVcpus) {
    return usage(
        fmt::format("{} vCPUs is not possible: give between 1 and {}", config.vcpus, kMaxVcpus));
  }
  if (config.memory_bytes < kMinMemory || config.memory_bytes % kPageSize != 0) {
    return usage(fmt::format("memory of {} bytes is not possible: give at least {} in whole pages",
                             config.memory_bytes, formatByteSize(kMinMemory)));
  }
  return absl::OkStatus();
}

Vm::Vm(VmConfig config, Kvm kvm, VmFd vm_fd, GuestMemory memory, std::unique_ptr<EventLoop> loop)
    : config_(std::move(config)),
      log_(Logger("vmm").with("vm", config_.name)),
      kvm_(std::move(kvm)),
      vm_fd_(std::move(vm_fd)),
      memory_(std::move(memory)),
      loop_(std::move(loop)) {}

Vm::~Vm() {
  announcer_ = std::jthread();  // request stop and join
  setThrottle(0);
  monitor_ = std::jthread();  // request stop and join
  stopVcpus();
  if (virtio_ != nullptr) virtio_->shutdown();
  loop_->stop();
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::build(const VmConfig& given, GuestMemory memory) {
  VmConfig config = given;
  std::vector<size_t> random_macs;  // NICs configured without one
  for (size_t i = 0; i < config.nics.size(); ++i) {
    if (!config.nics[i].mac.empty()) continue;
    config.nics[i].mac = network::MacAddress::randomLocal().toString();
    random_macs.push_back(i);
  }
  auto kvm = Kvm::open();
  if (!kvm.ok()) return withExitCode(kvm.status(), kExitNoResources);
  auto vm_fd = kvm->createVm();
  if (!vm_fd.ok()) return withExitCode(vm_fd.status(), kExitNoResources);
  auto internal = [](absl::Status status) { return withExitCode(status, kExitInternalError); };
  // Memory slots before the irqchip: on some hosts (this PVM one) registering a slot after
  // KVM_CREATE_IRQCHIP costs 4-10 ms instead of 0.2 ms, the largest part of a VMM's start.
  RETURN_IF_ERROR(internal(registerMemorySlots(*vm_fd, memory, 0)));
  RETURN_IF_ERROR(internal(vm_fd->setTssAddress(kTssAddress)));
  RETURN_IF_ERROR(internal(vm_fd->setIdentityMapAddress(kIdentityMapAddress)));
  RETURN_IF_ERROR(internal(vm_fd->createIrqchip()));
  RETURN_IF_ERROR(internal(vm_fd->createPit2()));
  auto loop = EventLoop::create("vmm-events");
  if (!loop.ok()) return internal(loop.status());
  std::unique_ptr<Vm> vm(
      new Vm(config, std::move(*kvm), std::move(*vm_fd), std::move(memory), std::move(*loop)));
  auto msrs = vm->kvm_.msrIndexList();
  if (!msrs.ok()) return internal(msrs.status());
  vm->kvm_msrs_ = std::move(*msrs);
  RETURN_IF_ERROR(vm->addDevices());
  ASSIGN_OR_RETURN(vm->virtio_,
                   VirtioDevices::create(vm->config_, vm->memory_, vm->vm_fd_, vm->mmio_bus_));
  for (size_t i : random_macs) {
    vm->log_.info("NIC net{} has the random MAC {}", i, vm->config_.nics[i].mac);
  }
  RETURN_IF_ERROR(vm->createVcpus());
  return vm;
}

absl::Status Vm::addDevices() {
  auto console = openConsole(config_.console, *loop_);
  if (!console.ok()) return withExitCode(console.status(), kExitUsage);
  console_ = std::move(*console);
  serial_ = std::make_shared<Serial>(console_,
                                     std::make_shared<KvmInterruptLine>(vm_fd_, Serial::kCom1Irq));
  if (auto* socket = dynamic_cast<ConsoleSocket*>(console_.get())) socket->setInput(serial_);
  i8042_ = std::make_shared<I8042>(std::make_shared<KvmInterruptLine>(vm_fd_, I8042::kIrq), [this] {
    endVm({VmEnd::Reason::kReset, kExitOk, "the guest reset the machine (keyboard controller)"});
  });
  cmos_ = std::make_shared<Cmos>(systemClock());
  debug_exit_ = std::make_shared<DebugExit>([this](uint32_t value) {
    endVm({VmEnd::Reason::kGuestExit, DebugExit::exitStatus(value),
           fmt::format("the guest wrote {:#x} to the debug-exit port", value)});
  });
  auto internal = [](absl::Status status) { return withExitCode(status, kExitInternalError); };
  RETURN_IF_ERROR(
      internal(io_bus_.add(Serial::kCom1Base, Serial::kRegisterCount, "com1", serial_)));
  RETURN_IF_ERROR(internal(io_bus_.add(I8042::kBase, I8042::kSize, "i8042", i8042_)));
  RETURN_IF_ERROR(internal(io_bus_.add(Cmos::kBase, Cmos::kSize, "cmos", cmos_)));
  RETURN_IF_ERROR(
      internal(io_bus_.add(DebugExit::kPort, DebugExit::kSize, "debug-exit", debug_exit_)));
  return absl::OkStatus();
}

absl::Status Vm::createVcpus() {
  auto supported = kvm_.supportedCpuid();
  if (!supported.ok()) return withExitCode(supported.status(), kExitInternalError);
  absl::Status model = checkCpuModel(supported->entries, config_.cpu_model);
  if (!model.ok()) {
    return withExitCode(model, absl::IsInvalidArgument(model) ? kExitUsage : kExitNoResources);
  }
  auto mmap_size = kvm_.vcpuMmapSize();
  if (!mmap_size.ok()) return withExitCode(mmap_size.status(), kExitInternalError);
  Vcpu::installKickHandler();
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    auto fd = vm_fd_.createVcpu(i, *mmap_size);
    if (!fd.ok()) return withExitCode(fd.status(), kExitNoResources);
    auto cpuid = buildCpuid(supported->entries, config_.cpu_model, i, config_.vcpus);
    if (!cpuid.ok()) return withExitCode(cpuid.status(), kExitInternalError);
    absl::Status configured = configureVcpu(*fd, *cpuid, kvm_msrs_);
    if (!configured.ok()) {
      return withExitCode(annotate(configured, fmt::format("configuring vCPU {}", i)),
                          kExitInternalError);
    }
    vcpus_.push_back(std::make_unique<Vcpu>(i, std::move(*fd), *this, log_));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::create(const VmConfig& config) {
  RETURN_IF_ERROR(validateVmConfig(config));
  if (config.kernel.empty()) {
    return withExitCode(absl::InvalidArgumentError("no kernel given: use --kernel FILE"),
                        kExitUsage);
  }
  ASSIGN_OR_RETURN(std::vector<uint8_t> kernel, readImage(config.kernel, "kernel"));
  std::vector<uint8_t> initrd;
  if (!config.initrd.empty()) {
    ASSIGN_OR_RETURN(initrd, readImage(config.initrd, "initrd"));
  }
  auto memory = GuestMemory::create(config.memory_bytes, {.hugepages = config.hugepages});
  if (!memory.ok()) return withExitCode(memory.status(), kExitNoResources);
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, build(config, std::move(*memory)));

  BootConfig boot_config;
  boot_config.kernel = kernel;
  boot_config.initrd = initrd;
  boot_config.cmdline = config.cmdline;
  const std::string virtio_cmdline = vm->virtio_->kernelCmdline();
  if (!virtio_cmdline.empty()) {
    boot_config.cmdline += boot_config.cmdline.empty() ? virtio_cmdline : " " + virtio_cmdline;
  }
  boot_config.vcpus = config.vcpus;
  auto boot = prepareBoot(vm->memory_, boot_config);
  if (!boot.ok()) {
    return withExitCode(annotate(boot.status(), fmt::format("booting {}", config.kernel)),
                        kExitBadKernel);
  }
  absl::Status registers = setBootRegisters(vm->vcpus_[0]->fd(), boot->entry);
  if (!registers.ok()) return withExitCode(registers, kExitInternalError);
  vm->log_.info("{} kernel {} loaded at {}-{}, entry {:#x}, {} vCPUs, {} of memory",
                kernelFormatName(boot->format), config.kernel, boot->kernel_start, boot->kernel_end,
                boot->entry.rip, config.vcpus, formatByteSize(config.memory_bytes));
  return vm;
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::restore(const VmConfig& config, GuestMemory memory,
                                                const flotilla::v1::VmSnapshot& snapshot) {
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm,
                   prepareRestore(config, std::move(memory), snapshot.config()));
  RETURN_IF_ERROR(vm->loadState(snapshot));
  return vm;
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::prepareRestore(const VmConfig& config, GuestMemory memory,
                                                       const flotilla::v1::VmConfigState& saved) {
  VmConfig restored = config;
  restored.vcpus = saved.vcpus();
  restored.memory_bytes = saved.memory_bytes();
  restored.cpu_model = saved.cpu_model();
  restored.hugepages = saved.hugepages();
  if (restored.name == "vm" && !saved.name().empty()) restored.name = saved.name();
  auto bad = [](std::string message) {
    return withExitCode(absl::DataLossError(std::move(message)), kExitBadSnapshot);
  };
  // Devices: as given to this VMM (another host may name its disks and taps differently),
  // else as the snapshot recorded them.
  if (config.disks.empty() && config.nics.empty() && !config.rng && !config.balloon) {
    for (const std::string& option : saved.disks()) {
      auto disk = parseDiskOption(option);
      if (!disk.ok()) return bad(fmt::format("the snapshot's disk: {}", disk.status().message()));
      restored.disks.push_back(*disk);
    }
    for (const std::string& option : saved.nics()) {
      auto nic = parseNetOption(option);
      if (!nic.ok()) return bad(fmt::format("the snapshot's NIC: {}", nic.status().message()));
      if (nic->tap.empty()) {
        return withExitCode(
            absl::InvalidArgumentError(fmt::format(
                "the snapshot's NIC {} was a descriptor its VMM was given: give this one a tap "
                "with --net tap=NAME,mac={} (and the snapshot's other devices)",
                option, nic->mac)),
            kExitUsage);
      }
      restored.nics.push_back(*nic);
    }
    restored.rng = saved.rng();
    restored.balloon = saved.balloon();
  }
  absl::Status valid = validateVmConfig(restored);
  if (!valid.ok())
    return bad(fmt::format("the snapshot's configuration is invalid: {}", valid.message()));
  if (memory.ramBytes() != restored.memory_bytes) {
    return bad(fmt::format("the snapshot's memory is {} bytes, its VM has {}", memory.ramBytes(),
                           restored.memory_bytes));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Vm> vm, build(restored, std::move(memory)));
  vm->memory_.onLoadFailure([raw = vm.get()](const absl::Status& failure) {
    raw->endVm({VmEnd::Reason::kError, kExitBadSnapshot,
                fmt::format("guest memory could not be loaded: {}", failure.message())});
  });
  return vm;
}

absl::Status Vm::loadState(const flotilla::v1::VmSnapshot& snapshot) {
  if (static_cast<uint32_t>(snapshot.vcpus_size()) != config_.vcpus) {
    return withExitCode(
        absl::DataLossError(fmt::format("the snapshot has {} vCPU states for {} vCPUs",
                                        snapshot.vcpus_size(), config_.vcpus)),
        kExitBadSnapshot);
  }
  absl::Status status = restoreState(snapshot);
  if (!status.ok()) {
    return withExitCode(annotate(status, "restoring the snapshot"), kExitBadSnapshot);
  }
  log_.info("restored {} vCPUs, {} of memory", config_.vcpus, formatByteSize(config_.memory_bytes));
  return absl::OkStatus();
}

absl::Status Vm::start(bool paused) {
  absl::MutexLock lock(&mu_);
  if (run_state_ != RunState::kCreated) {
    return absl::FailedPreconditionError("the VM was already started");
  }
  loop_->start();
  virtio_->start();
  if (paused) virtio_->pause();
  for (auto& vcpu : vcpus_) vcpu->start(paused);
  run_state_ = paused ? RunState::kPaused : RunState::kRunning;
  started_at_ = systemClock().now();
  monitor_ = std::jthread([this](std::stop_token stop) { monitor(stop); });
  return absl::OkStatus();
}

absl::Status Vm::pause() {
  absl::MutexLock lock(&mu_);
  if (run_state_ == RunState::kPaused) return absl::OkStatus();
  if (run_state_ != RunState::kRunning) {
    return absl::FailedPreconditionError("the VM is not running");
  }
  for (auto& vcpu : vcpus_) vcpu->pause();
  // Tell the guest's kvmclock it was stopped, so that it does not take the pause for a
  // soft lockup (fails harmlessly when the guest does not use kvmclock).
  for (auto& vcpu : vcpus_) (void)vcpu->fd().kvmclockCtrl();
  // Then the devices: requests in flight complete (their buffers written to guest memory)
  // and disks are flushed, so that guest memory and device state hold still.
  virtio_->pause();
  run_state_ = RunState::kPaused;
  return absl::OkStatus();
}

absl::Status Vm::resume() {
  absl::MutexLock lock(&mu_);
  if (run_state_ == RunState::kRunning) return absl::OkStatus();
  if (run_state_ != RunState::kPaused) {
    return absl::FailedPreconditionError("the VM is not paused");
  }
  virtio_->resume();
  for (auto& vcpu : vcpus_) vcpu->resume();
  run_state_ = RunState::kRunning;
  return absl::OkStatus();
}

void Vm::setThrottle(int percent) {
  percent = std::clamp(percent, 0, 99);
  absl::MutexLock lock(&throttle_mu_);
  const int before = throttle_percent_.exchange(percent);
  if (percent != before) log_.info("vCPU throttle {}% (was {}%)", percent, before);
  if (percent == 0) {
    throttler_ = std::jthread();  // request stop and join: it resumes what it paused first
  } else if (!throttler_.joinable()) {
    throttler_ = std::jthread([this](std::stop_token stop) { throttle(stop); });
  }
}

void Vm::throttle(std::stop_token stop) {
  setCurrentThreadName("throttle");
  constexpr absl::Duration kPeriod = absl::Milliseconds(20);
  std::mutex sleep_mu;
  std::condition_variable_any wakeup;
  auto sleepFor = [&](absl::Duration duration) {
    std::unique_lock lock(sleep_mu);
    wakeup.wait_for(lock, stop, absl::ToChronoMicroseconds(duration), [] { return false; });
  };
  while (!stop.stop_requested()) {
    const absl::Duration off = kPeriod * throttle_percent_.load() / 100;
    bool paused = false;
    {
      absl::MutexLock lock(&mu_);
      if (run_state_ == RunState::kRunning && !end_.has_value()) {
        for (auto& vcpu : vcpus_) vcpu->pause();
        paused = true;
      }
    }
    if (paused) {
      sleepFor(off);
      // Only a VM that still runs gets its vCPUs back: pause() may have come meanwhile.
      absl::MutexLock lock(&mu_);
      if (run_state_ == RunState::kRunning && !end_.has_value()) {
        for (auto& vcpu : vcpus_) vcpu->resume();
      }
    }
    sleepFor(kPeriod - off);
  }
}

void Vm::shutdown(absl::Duration graceful) {
  if (graceful > absl::ZeroDuration() && runState() == RunState::kRunning) {
    log_.info("asking the guest to shut down (Ctrl-Alt-Del), waiting up to {}",
              absl::FormatDuration(graceful));
    i8042_->sendCtrlAltDel();
    if (waitForEnd(graceful).has_value()) return;
    log_.warn("the guest did not shut down within {}; stopping it", absl::FormatDuration(graceful));
  }
  endVm({VmEnd::Reason::kShutdown, kExitOk, "shut down by request"});
}

void Vm::endVm(VmEnd end) {
  absl::MutexLock lock(&mu_);
  if (end_.has_value()) return;  // the first reason wins
  log_.info("ending: {}{}{}", vmEndReasonName(end.reason), end.detail.empty() ? "" : ": ",
            end.detail);
  end_ = std::move(end);
}

VmEnd Vm::waitForEnd() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Vm* vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vm->mu_) { return vm->end_.has_value(); }, this));
  }
  stopVcpus();
  virtio_->shutdown();
  absl::MutexLock lock(&mu_);
  run_state_ = RunState::kEnded;
  return *end_;
}

std::optional<VmEnd> Vm::waitForEnd(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    bool ended = mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Vm* vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vm->mu_) { return vm->end_.has_value(); },
            this),
        timeout);
    if (!ended) return std::nullopt;
  }
  return waitForEnd();
}

void Vm::stopVcpus() {
  for (auto& vcpu : vcpus_) vcpu->stop();
}

void Vm::monitor(std::stop_token stop) {
  setCurrentThreadName("vm-monitor");
  while (!stop.stop_requested()) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](Vm* vm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vm->mu_) { return vm->end_.has_value(); },
              this),
          absl::Seconds(1));
      if (end_.has_value() || run_state_ != RunState::kRunning) continue;
    }
    // A guest that halted every vCPU with interrupts disabled can never run again: that is
    // how a kernel without ACPI powers off.
    bool all_halted = true;
    for (auto& vcpu : vcpus_) {
      if (!vcpu->idleForever()) {
        all_halted = false;
        break;
      }
    }
    if (all_halted) {
      endVm({VmEnd::Reason::kHalted, kExitOk, "every vCPU halted with interrupts disabled"});
    }
  }
}

absl::StatusOr<uint32_t> Vm::announceNics() {
  ASSIGN_OR_RETURN(uint32_t asked, virtio_->announceNics());
  announcer_ = std::jthread([this](std::stop_token stop) {
    setCurrentThreadName("vm-announce");
    std::mutex mu;
    std::condition_variable_any wake;
    for (int pause_ms : {50, 100, 150, 200}) {
      std::unique_lock lock(mu);
      wake.wait_for(lock, stop, std::chrono::milliseconds(pause_ms), [] { return false; });
      if (stop.stop_requested()) return;
      if (auto again = virtio_->announceNics(); !again.ok()) {
        log_.warn("announcing the NICs again: {}", again.status().message());
      }
    }
  });
  return asked;
}

Vm::RunState Vm::runState() const {
  absl::MutexLock lock(&mu_);
  return run_state_;
}

std::vector<VcpuCounters> Vm::vcpuCounters() const {
  std::vector<VcpuCounters> counters;
  for (const auto& vcpu : vcpus_) counters.push_back(vcpu->counters());
  return counters;
}

flotilla::v1::VmConfigState Vm::configState() const {
  flotilla::v1::VmConfigState config;
  config.set_name(config_.name);
  config.set_vcpus(config_.vcpus);
  config.set_memory_bytes(config_.memory_bytes);
  config.set_cpu_model(config_.cpu_model);
  config.set_hugepages(config_.hugepages);
  for (const DiskConfig& disk : config_.disks) config.add_disks(disk.toOption());
  for (const NicConfig& nic : config_.nics) config.add_nics(nic.toOption());
  config.set_rng(config_.rng);
  config.set_balloon(config_.balloon);
  return config;
}

absl::StatusOr<flotilla::v1::VmSnapshot> Vm::saveState() const {
  {
    absl::MutexLock lock(&mu_);
    if (run_state_ != RunState::kPaused) {
      return absl::FailedPreconditionError("the VM must be paused to save its state");
    }
  }
  flotilla::v1::VmSnapshot snapshot;
  *snapshot.mutable_config() = configState();
  const std::vector<uint32_t> msrs = msrsToSave(kvm_msrs_);
  for (const auto& vcpu : vcpus_) {
    ASSIGN_OR_RETURN(*snapshot.add_vcpus(),
                     saveVcpuState(vcpu->fd(), vcpu->index(), msrs, kvm_.xsaveSize()));
  }
  ASSIGN_OR_RETURN(*snapshot.mutable_irqchip(), saveIrqchipState(vm_fd_));
  *snapshot.mutable_devices()->mutable_serial() = serial_->save();
  *snapshot.mutable_devices()->mutable_i8042() = i8042_->save();
  *snapshot.mutable_devices()->mutable_cmos() = cmos_->save();
  ASSIGN_OR_RETURN(uint32_t tsc_khz, vcpus_[0]->fd().getTscKhz());
  snapshot.set_tsc_khz(tsc_khz);
  RETURN_IF_ERROR(virtio_->saveState(snapshot));
  return snapshot;
}

absl::Status Vm::startDirtyLog() {
  absl::MutexLock lock(&dirty_mu_);
  const uint64_t pages = memory_.backing().size() / kPageSize;
  if (dirty_logging_) {
    DirtyBitmap dropped(pages);
    return collectDirtyLog(dropped);
  }
  // Manual protect: KVM_GET_DIRTY_LOG no longer write-protects every dirty page at once while
  // holding the MMU lock; KVM_CLEAR_DIRTY_LOG re-protects what was fetched. Without
  // KVM_DIRTY_LOG_INITIALLY_SET the log starts empty, as without manual protect.
  if (!manual_dirty_protect_ && (kvm_.checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) &
                                 KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) != 0) {
    absl::Status enabled = vm_fd_.enableManualDirtyLogProtect();
    if (enabled.ok()) {
      manual_dirty_protect_ = true;
    } else {
      log_.warn("dirty logging without manual protect: {}", enabled.message());
    }
  }
  slot_dirty_words_.resize(memory_.regions().size());
  for (size_t i = 0; i < memory_.regions().size(); ++i) {
    const uint64_t slot_pages = memory_.regions()[i].size / kPageSize;
    slot_dirty_words_[i].assign(static_cast<size_t>((slot_pages + 63) / 64), 0);
  }
  // One tracker for the VM's life (GuestMemory keeps every tracker it was given alive); marks
  // left from an earlier tracking period are dropped.
  if (device_dirty_ == nullptr) device_dirty_ = std::make_shared<ConcurrentDirtyBitmap>(pages);
  DirtyBitmap stale(pages);
  device_dirty_->drainInto(stale);
  memory_.setDeviceDirtyTracker(device_dirty_);
  absl::Status logging = registerMemorySlots(vm_fd_, memory_, KVM_MEM_LOG_DIRTY_PAGES);
  if (!logging.ok()) {
    (void)registerMemorySlots(vm_fd_, memory_, 0);
    memory_.setDeviceDirtyTracker(nullptr);
    return annotate(logging, "starting dirty-page logging");
  }
  dirty_logging_ = true;
  log_.info("dirty-page tracking on: {} pages in {} memory slots{}", pages,
            memory_.regions().size(), manual_dirty_protect_ ? ", manual protect" : "");
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Vm::fetchDirtyLog(DirtyBitmap& out) {
  absl::MutexLock lock(&dirty_mu_);
  if (!dirty_logging_) {
    return absl::FailedPreconditionError(
        "dirty-page tracking is off: call startDirtyLog() before fetchDirtyLog()");
  }
  const uint64_t pages = memory_.backing().size() / kPageSize;
  if (out.pages() != pages) {
    return absl::InvalidArgumentError(fmt::format(
        "a dirty bitmap of {} pages for guest memory of {} pages: size it to the memory",
        out.pages(), pages));
  }
  const uint64_t before = out.count();
  RETURN_IF_ERROR(collectDirtyLog(out));
  return out.count() - before;
}

absl::Status Vm::collectDirtyLog(DirtyBitmap& out) {
  // KVM_CLEAR_DIRTY_LOG takes a 32-bit page count and a start that is a multiple of 64.
  constexpr uint64_t kClearChunkPages = uint64_t{1} << 31;
  for (size_t i = 0; i < memory_.regions().size(); ++i) {
    const GuestRegion& region = memory_.regions()[i];
    const auto slot = static_cast<uint32_t>(i);
    const uint64_t slot_pages = region.size / kPageSize;
    std::vector<uint64_t>& words = slot_dirty_words_[i];
    RETURN_IF_ERROR(vm_fd_.getDirtyLog(slot, words));
    // Into `out` first: should a clear fail, the caller still has every page it cleared.
    out.mergeWords(region.fd_offset / kPageSize, words, slot_pages);
    // With manual protect the bits stay set (and the pages writable) until cleared: clear
    // exactly what was fetched, before the caller copies those pages, so that a write after
    // the copy faults and is logged again. Ranges with nothing dirty cost no ioctl.
    for (uint64_t first = 0; manual_dirty_protect_ && first < slot_pages;
         first += kClearChunkPages) {
      const uint64_t count = std::min(kClearChunkPages, slot_pages - first);
      const std::span<uint64_t> chunk = std::span<uint64_t>(words).subspan(
          static_cast<size_t>(first / 64), static_cast<size_t>((count + 63) / 64));
      if (std::all_of(chunk.begin(), chunk.end(), [](uint64_t word) { return word == 0; })) {
        continue;
      }
      RETURN_IF_ERROR(vm_fd_.clearDirtyLog(slot, first, static_cast<uint32_t>(count), chunk));
    }
  }
  device_dirty_->drainInto(out);
  return absl::OkStatus();
}

absl::Status Vm::stopDirtyLog() {
  absl::MutexLock lock(&dirty_mu_);
  if (!dirty_logging_) return absl::OkStatus();
  RETURN_IF_ERROR(annotate(registerMemorySlots(vm_fd_, memory_, 0), "stopping dirty-page logging"));
  memory_.setDeviceDirtyTracker(nullptr);
  dirty_logging_ = false;
  log_.info("dirty-page tracking off");
  return absl::OkStatus();
}

absl::Status Vm::restoreState(const flotilla::v1::VmSnapshot& snapshot) {
  RETURN_IF_ERROR(restoreIrqchipState(vm_fd_, snapshot.irqchip()));
  for (size_t i = 0; i < vcpus_.size(); ++i) {
    RETURN_IF_ERROR(annotate(
        restoreVcpuState(vcpus_[i]->fd(), snapshot.vcpus(static_cast<int>(i)), kvm_.xsaveSize()),
        fmt::format("vCPU {}", i)));
  }
  serial_->restore(snapshot.devices().serial());
  i8042_->restore(snapshot.devices().i8042());
  cmos_->restore(snapshot.devices().cmos());
  RETURN_IF_ERROR(virtio_->restoreState(snapshot));
  auto tsc_khz = vcpus_[0]->fd().getTscKhz();
  if (tsc_khz.ok() && snapshot.tsc_khz() != 0 && *tsc_khz != snapshot.tsc_khz()) {
    log_.warn(
        "the snapshot was taken on a host whose TSC runs at {} kHz, this one at {} kHz: "
        "the guest's clock will drift until it recalibrates",
        snapshot.tsc_khz(), *tsc_khz);
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm
