// KVM file descriptor owners (see kvm.h).
#include "vmm/kvm/kvm.h"

#include "vmm/kvm/kvm_abi.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm {
namespace {

// ioctl(2) with EINTR retried; a status naming the ioctl on failure.
template <typename Arg>
absl::Status ioctlStatus(int fd, unsigned long request, Arg arg, const char* name) {
  int rc;
  do {
    rc = ::ioctl(fd, request, arg);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return errnoStatus(errno, name);
  return absl::OkStatus();
}

// A kernel structure that ends in a flexible array (kvm_abi.h has the C headers):
// the header followed by `count` entries, in suitably aligned storage.
template <typename Header, typename Entry>
class FlexibleStruct {
 public:
  explicit FlexibleStruct(size_t count)
      : storage_(new uint64_t[(sizeof(Header) + count * sizeof(Entry) + 7) / 8]()) {}
  Header* get() { return reinterpret_cast<Header*>(storage_.get()); }
  Entry* entries() {
    return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(get()) + sizeof(Header));
  }

 private:
  std::unique_ptr<uint64_t[]> storage_;
};

struct RequiredCapability {
  unsigned capability;
  const char* name;
};

constexpr RequiredCapability kRequired[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_XSAVE, "KVM_CAP_XSAVE"},
    {KVM_CAP_XCRS, "KVM_CAP_XCRS"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"},
    {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS"},
    {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK"},
    {KVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ"},
};

}  // namespace

absl::StatusOr<Kvm> Kvm::open() {
  UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!fd.valid()) {
    int error = errno;
    return absl::FailedPreconditionError(
        fmt::format("cannot open /dev/kvm: {} (is the kvm module loaded and may this user use it?)",
                    std::strerror(error)));
  }
  int version = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(fmt::format(
        "/dev/kvm speaks KVM API version {}, Flotilla needs {}", version, KVM_API_VERSION));
  }
  Kvm kvm(std::move(fd));
  for (const RequiredCapability& required : kRequired) {
    if (kvm.checkExtension(required.capability) <= 0) {
      return absl::FailedPreconditionError(fmt::format(
          "this host's KVM lacks {}, which Flotilla needs: use a newer kernel", required.name));
    }
  }
  return kvm;
}

int Kvm::checkExtension(unsigned capability) const {
  int value = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
  return value < 0 ? 0 : value;
}

absl::StatusOr<CpuidEntries> Kvm::supportedCpuid() const {
  // The kernel does not say how many entries it has: grow until they fit (E2BIG otherwise).
  for (size_t count = 128; count <= 4096; count *= 2) {
    FlexibleStruct<abi::Cpuid2Header, kvm_cpuid_entry2> cpuid(count);
    cpuid.get()->nent = static_cast<uint32_t>(count);
    if (::ioctl(fd_.get(), abi::kGetSupportedCpuid, cpuid.get()) == 0) {
      CpuidEntries result;
      result.entries.assign(cpuid.entries(), cpuid.entries() + cpuid.get()->nent);
      return result;
    }
    if (errno != E2BIG) return errnoStatus(errno, "KVM_GET_SUPPORTED_CPUID");
  }
  return absl::InternalError("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

absl::StatusOr<std::vector<uint32_t>> Kvm::msrIndexList() const {
  abi::MsrListHeader probe{};
  // With room for no entries the kernel fails with E2BIG and says how many there are.
  if (::ioctl(fd_.get(), abi::kGetMsrIndexList, &probe) != 0 && errno != E2BIG) {
    return errnoStatus(errno, "KVM_GET_MSR_INDEX_LIST");
  }
  FlexibleStruct<abi::MsrListHeader, uint32_t> list(probe.nmsrs);
  list.get()->nmsrs = probe.nmsrs;
  RETURN_IF_ERROR(
      ioctlStatus(fd_.get(), abi::kGetMsrIndexList, list.get(), "KVM_GET_MSR_INDEX_LIST"));
  return std::vector<uint32_t>(list.entries(), list.entries() + list.get()->nmsrs);
}

absl::StatusOr<size_t> Kvm::vcpuMmapSize() const {
  int size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < 0) return errnoStatus(errno, "KVM_GET_VCPU_MMAP_SIZE");
  return static_cast<size_t>(size);
}

size_t Kvm::xsaveSize() const {
  int size = checkExtension(KVM_CAP_XSAVE2);
  return size > static_cast<int>(sizeof(abi::Xsave)) ? static_cast<size_t>(size)
                                                     : sizeof(abi::Xsave);
}

absl::StatusOr<VmFd> Kvm::createVm() const {
  int vm;
  do {
    vm = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  } while (vm < 0 && errno == EINTR);
  if (vm < 0) return errnoStatus(errno, "KVM_CREATE_VM");
  return VmFd(UniqueFd(vm));
}

absl::Status VmFd::setUserMemoryRegion(uint32_t slot, uint64_t guest_address, uint64_t size,
                                       void* host_address, uint32_t flags) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = guest_address;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host_address);
  return ioctlStatus(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
}

absl::Status VmFd::setTssAddress(uint64_t address) const {
  return ioctlStatus(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(address),
                     "KVM_SET_TSS_ADDR");
}

absl::Status VmFd::setIdentityMapAddress(uint64_t address) const {
  return ioctlStatus(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &address, "KVM_SET_IDENTITY_MAP_ADDR");
}

absl::Status VmFd::createIrqchip() const {
  return ioctlStatus(fd_.get(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
}

absl::Status VmFd::createPit2() const {
  kvm_pit_config config{};
  // The PIT's speaker port (0x61) is emulated in the kernel too; guests calibrate with it.
  config.flags = 0;
  return ioctlStatus(fd_.get(), KVM_CREATE_PIT2, &config, "KVM_CREATE_PIT2");
}

absl::Status VmFd::irqLine(uint32_t irq, bool level) const {
  kvm_irq_level line{};
  line.irq = irq;
  line.level = level ? 1 : 0;
  return ioctlStatus(fd_.get(), KVM_IRQ_LINE, &line, "KVM_IRQ_LINE");
}

absl::Status VmFd::irqfd(int eventfd, uint32_t gsi, bool assign) const {
  kvm_irqfd request{};
  request.fd = static_cast<uint32_t>(eventfd);
  request.gsi = gsi;
  request.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN;
  return ioctlStatus(fd_.get(), KVM_IRQFD, &request, "KVM_IRQFD");
}

absl::Status VmFd::ioeventfd(int eventfd, uint64_t address, uint32_t value, bool assign) const {
  kvm_ioeventfd request{};
  request.datamatch = value;
  request.addr = address;
  request.len = 4;
  request.fd = eventfd;
  request.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN);
  return ioctlStatus(fd_.get(), KVM_IOEVENTFD, &request, "KVM_IOEVENTFD");
}

absl::StatusOr<VcpuFd> VmFd::createVcpu(uint32_t id, size_t mmap_size) const {
  int vcpu;
  do {
    vcpu = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  } while (vcpu < 0 && errno == EINTR);
  if (vcpu < 0) return errnoStatus(errno, fmt::format("KVM_CREATE_VCPU {}", id));
  UniqueFd fd(vcpu);
  auto run = MmapRegion::map(mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get());
  if (!run.ok()) return annotate(run.status(), fmt::format("mapping kvm_run of vCPU {}", id));
  return VcpuFd(std::move(fd), std::move(*run));
}

absl::Status VmFd::getDirtyLog(uint32_t slot, std::span<uint64_t> bitmap) const {
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  absl::Status status = ioctlStatus(fd_.get(), KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG");
  if (!status.ok()) return annotate(status, fmt::format("memory slot {}", slot));
  return absl::OkStatus();
}

absl::Status VmFd::clearDirtyLog(uint32_t slot, uint64_t first_page, uint32_t num_pages,
                                 std::span<uint64_t> bitmap) const {
  if (uint64_t{bitmap.size()} * 64 < num_pages) {
    return absl::InvalidArgumentError(
        fmt::format("KVM_CLEAR_DIRTY_LOG of memory slot {}: a bitmap of {} words for {} pages",
                    slot, bitmap.size(), num_pages));
  }
  kvm_clear_dirty_log clear{};
  clear.slot = slot;
  clear.num_pages = num_pages;
  clear.first_page = first_page;
  clear.dirty_bitmap = bitmap.data();
  absl::Status status = ioctlStatus(fd_.get(), KVM_CLEAR_DIRTY_LOG, &clear, "KVM_CLEAR_DIRTY_LOG");
  if (!status.ok()) return annotate(status, fmt::format("memory slot {}", slot));
  return absl::OkStatus();
}

absl::Status VmFd::enableManualDirtyLogProtect() const {
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
  cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
  return ioctlStatus(fd_.get(), KVM_ENABLE_CAP, &cap,
                     "KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
}

absl::Status VmFd::getIrqchip(kvm_irqchip& chip) const {
  return ioctlStatus(fd_.get(), KVM_GET_IRQCHIP, &chip, "KVM_GET_IRQCHIP");
}
absl::Status VmFd::setIrqchip(const kvm_irqchip& chip) const {
  return ioctlStatus(fd_.get(), KVM_SET_IRQCHIP, &chip, "KVM_SET_IRQCHIP");
}
absl::Status VmFd::getPit2(kvm_pit_state2& pit) const {
  return ioctlStatus(fd_.get(), KVM_GET_PIT2, &pit, "KVM_GET_PIT2");
}
absl::Status VmFd::setPit2(const kvm_pit_state2& pit) const {
  return ioctlStatus(fd_.get(), KVM_SET_PIT2, &pit, "KVM_SET_PIT2");
}
absl::Status VmFd::getClock(kvm_clock_data& clock) const {
  return ioctlStatus(fd_.get(), KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK");
}
absl::Status VmFd::setClock(const kvm_clock_data& clock) const {
  return ioctlStatus(fd_.get(), KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
}

int VcpuFd::runOnce() const {
  return ::ioctl(fd_.get(), KVM_RUN, 0);
}

absl::Status VcpuFd::getRegs(kvm_regs& regs) const {
  return ioctlStatus(fd_.get(), KVM_GET_REGS, &regs, "KVM_GET_REGS");
}
absl::Status VcpuFd::setRegs(const kvm_regs& regs) const {
  return ioctlStatus(fd_.get(), KVM_SET_REGS, &regs, "KVM_SET_REGS");
}
absl::Status VcpuFd::getSregs(kvm_sregs& sregs) const {
  return ioctlStatus(fd_.get(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
}
absl::Status VcpuFd::setSregs(const kvm_sregs& sregs) const {
  return ioctlStatus(fd_.get(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
}
absl::Status VcpuFd::getFpu(kvm_fpu& fpu) const {
  return ioctlStatus(fd_.get(), KVM_GET_FPU, &fpu, "KVM_GET_FPU");
}
absl::Status VcpuFd::setFpu(const kvm_fpu& fpu) const {
  return ioctlStatus(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

absl::Status VcpuFd::getXsave(std::vector<uint8_t>& area, size_t size) const {
  area.assign(std::max(size, sizeof(abi::Xsave)), 0);
  if (size > sizeof(abi::Xsave)) {
    return ioctlStatus(fd_.get(), abi::kGetXsave2, area.data(), "KVM_GET_XSAVE2");
  }
  return ioctlStatus(fd_.get(), abi::kGetXsave, area.data(), "KVM_GET_XSAVE");
}

absl::Status VcpuFd::setXsave(const std::vector<uint8_t>& area) const {
  if (area.size() < sizeof(abi::Xsave)) {
    return absl::InvalidArgumentError(
        fmt::format("XSAVE area of {} bytes is smaller than {}", area.size(), sizeof(abi::Xsave)));
  }
  return ioctlStatus(fd_.get(), abi::kSetXsave, area.data(), "KVM_SET_XSAVE");
}

absl::Status VcpuFd::getXcrs(kvm_xcrs& xcrs) const {
  return ioctlStatus(fd_.get(), KVM_GET_XCRS, &xcrs, "KVM_GET_XCRS");
}
absl::Status VcpuFd::setXcrs(const kvm_xcrs& xcrs) const {
  return ioctlStatus(fd_.get(), KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
}

absl::Status VcpuFd::getMsrs(std::vector<kvm_msr_entry>& entries) const {
  FlexibleStruct<abi::MsrsHeader, kvm_msr_entry> msrs(entries.size());
  msrs.get()->nmsrs = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), msrs.entries());
  int read = ::ioctl(fd_.get(), abi::kGetMsrs, msrs.get());
  if (read < 0) return errnoStatus(errno, "KVM_GET_MSRS");
  // KVM reads in order and stops at the first MSR it cannot read.
  if (static_cast<size_t>(read) != entries.size()) {
    return absl::InternalError(fmt::format("KVM_GET_MSRS read {} of {} MSRs; MSR {:#x} failed",
                                           read, entries.size(),
                                           entries[static_cast<size_t>(read)].index));
  }
  std::copy(msrs.entries(), msrs.entries() + entries.size(), entries.begin());
  return absl::OkStatus();
}

absl::Status VcpuFd::setMsrs(const std::vector<kvm_msr_entry>& entries) const {
  FlexibleStruct<abi::MsrsHeader, kvm_msr_entry> msrs(entries.size());
  msrs.get()->nmsrs = static_cast<uint32_t>(entries.size());
  std::copy(entries.begin(), entries.end(), msrs.entries());
  int written = ::ioctl(fd_.get(), abi::kSetMsrs, msrs.get());
  if (written < 0) return errnoStatus(errno, "KVM_SET_MSRS");
  if (static_cast<size_t>(written) != entries.size()) {
    return absl::InternalError(fmt::format(
        "KVM_SET_MSRS wrote {} of {} MSRs; MSR {:#x} = {:#x} was refused", written, entries.size(),
        entries[static_cast<size_t>(written)].index, entries[static_cast<size_t>(written)].data));
  }
  return absl::OkStatus();
}

absl::Status VcpuFd::getLapic(kvm_lapic_state& lapic) const {
  return ioctlStatus(fd_.get(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
}
absl::Status VcpuFd::setLapic(const kvm_lapic_state& lapic) const {
  return ioctlStatus(fd_.get(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
}
absl::Status VcpuFd::getVcpuEvents(kvm_vcpu_events& events) const {
  return ioctlStatus(fd_.get(), KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
}
absl::Status VcpuFd::setVcpuEvents(const kvm_vcpu_events& events) const {
  return ioctlStatus(fd_.get(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
}
absl::Status VcpuFd::getDebugRegs(kvm_debugregs& debug) const {
  return ioctlStatus(fd_.get(), KVM_GET_DEBUGREGS, &debug, "KVM_GET_DEBUGREGS");
}
absl::Status VcpuFd::setDebugRegs(const kvm_debugregs& debug) const {
  return ioctlStatus(fd_.get(), KVM_SET_DEBUGREGS, &debug, "KVM_SET_DEBUGREGS");
}
absl::Status VcpuFd::getMpState(kvm_mp_state& state) const {
  return ioctlStatus(fd_.get(), KVM_GET_MP_STATE, &state, "KVM_GET_MP_STATE");
}
absl::Status VcpuFd::setMpState(const kvm_mp_state& state) const {
  return ioctlStatus(fd_.get(), KVM_SET_MP_STATE, &state, "KVM_SET_MP_STATE");
}

absl::Status VcpuFd::setCpuid(const CpuidEntries& cpuid) const {
  FlexibleStruct<abi::Cpuid2Header, kvm_cpuid_entry2> table(cpuid.entries.size());
  table.get()->nent = static_cast<uint32_t>(cpuid.entries.size());
  std::copy(cpuid.entries.begin(), cpuid.entries.end(), table.entries());
  return ioctlStatus(fd_.get(), abi::kSetCpuid2, table.get(), "KVM_SET_CPUID2");
}

absl::StatusOr<uint32_t> VcpuFd::getTscKhz() const {
  int khz = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return errnoStatus(errno, "KVM_GET_TSC_KHZ");
  return static_cast<uint32_t>(khz);
}

absl::Status VcpuFd::kvmclockCtrl() const {
  return ioctlStatus(fd_.get(), KVM_KVMCLOCK_CTRL, 0, "KVM_KVMCLOCK_CTRL");
}

}  // namespace flotilla::vmm
