// Thin owners of the KVM API's file descriptors (/dev/kvm, a VM, a vCPU). Each method is one
// ioctl; failures are statuses naming the ioctl, so that a caller's message says what KVM
// refused. Structures are the kernel's own (linux/kvm.h): the ABI is stable by design.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mmap_region.h"
#include "common/unique_fd.h"

namespace flotilla::vmm {

class VcpuFd;
class VmFd;

// Owning buffers for KVM's variable-length structures.
struct CpuidEntries {
  std::vector<kvm_cpuid_entry2> entries;
};

class Kvm {
 public:
  // Opens /dev/kvm and checks the API version and the capabilities Flotilla needs; a missing
  // device or capability is a FailedPrecondition that says what to enable.
  static absl::StatusOr<Kvm> open();

  int fd() const { return fd_.get(); }
  // KVM_CHECK_EXTENSION: 0 when unsupported, else the capability's value.
  int checkExtension(unsigned capability) const;
  absl::StatusOr<CpuidEntries> supportedCpuid() const;
  absl::StatusOr<std::vector<uint32_t>> msrIndexList() const;
  // KVM_GET_MSR_FEATURE_INDEX_LIST-independent: the size of a vCPU's kvm_run mapping.
  absl::StatusOr<size_t> vcpuMmapSize() const;
  // KVM_CAP_XSAVE2's size of a vCPU's XSAVE area (at least 4096).
  size_t xsaveSize() const;
  absl::StatusOr<VmFd> createVm() const;

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class VmFd {
 public:
  int fd() const { return fd_.get(); }

  absl::Status setUserMemoryRegion(uint32_t slot, uint64_t guest_address, uint64_t size,
                                   void* host_address, uint32_t flags = 0) const;
  absl::Status setTssAddress(uint64_t address) const;
  absl::Status setIdentityMapAddress(uint64_t address) const;
  absl::Status createIrqchip() const;
  absl::Status createPit2() const;
  // Raises (level 1) or lowers (level 0) an interrupt line of the in-kernel irqchip.
  absl::Status irqLine(uint32_t irq, bool level) const;
  // KVM_IRQFD: a write to `eventfd` raises interrupt `gsi` (an edge), without a system call
  // into the VMM's vCPU threads. `assign` false removes it again.
  absl::Status irqfd(int eventfd, uint32_t gsi, bool assign) const;
  // KVM_IOEVENTFD: a 4-byte guest write of `value` to MMIO `address` signals `eventfd`
  // instead of exiting to the VMM. `assign` false removes it again.
  absl::Status ioeventfd(int eventfd, uint64_t address, uint32_t value, bool assign) const;
  absl::StatusOr<VcpuFd> createVcpu(uint32_t id, size_t mmap_size) const;

  // Dirty-page logging (a slot registered with KVM_MEM_LOG_DIRTY_PAGES). KVM_GET_DIRTY_LOG
  // copies the slot's bitmap into `bitmap` (bit i = page i of the slot; at least
  // ceil(pages / 64) words): without manual protect KVM also clears it and write-protects the
  // pages again, with it (enableManualDirtyLogProtect()) the bits stay until clearDirtyLog().
  absl::Status getDirtyLog(uint32_t slot, std::span<uint64_t> bitmap) const;
  // KVM_CLEAR_DIRTY_LOG: clears the bits of pages [first_page, first_page + num_pages) of the
  // slot that are set in `bitmap` (bit i = page first_page + i) and write-protects those
  // pages, so that the next write is logged again. first_page must be a multiple of 64, and
  // num_pages too unless the range ends at the slot's end.
  absl::Status clearDirtyLog(uint32_t slot, uint64_t first_page, uint32_t num_pages,
                             std::span<uint64_t> bitmap) const;
  // KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) with KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
  // only (not KVM_DIRTY_LOG_INITIALLY_SET: logging starts with an empty bitmap). Check
  // Kvm::checkExtension(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) first.
  absl::Status enableManualDirtyLogProtect() const;

  absl::Status getIrqchip(kvm_irqchip& chip) const;
  absl::Status setIrqchip(const kvm_irqchip& chip) const;
  absl::Status getPit2(kvm_pit_state2& pit) const;
  absl::Status setPit2(const kvm_pit_state2& pit) const;
  absl::Status getClock(kvm_clock_data& clock) const;
  absl::Status setClock(const kvm_clock_data& clock) const;

 private:
  friend class Kvm;
  explicit VmFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class VcpuFd {
 public:
  int fd() const { return fd_.get(); }
  // The shared kvm_run structure (exit information, immediate_exit).
  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }

  // KVM_RUN: returns its raw result (0, or -1 with errno EINTR when interrupted) so that the
  // vCPU loop can tell a kick from a failure.
  int runOnce() const;

  absl::Status getRegs(kvm_regs& regs) const;
  absl::Status setRegs(const kvm_regs& regs) const;
  absl::Status getSregs(kvm_sregs& sregs) const;
  absl::Status setSregs(const kvm_sregs& sregs) const;
  absl::Status getFpu(kvm_fpu& fpu) const;
  absl::Status setFpu(const kvm_fpu& fpu) const;
  // XSAVE area of `size` bytes (Kvm::xsaveSize()); KVM_GET_XSAVE2 when size > 4096.
  absl::Status getXsave(std::vector<uint8_t>& area, size_t size) const;
  absl::Status setXsave(const std::vector<uint8_t>& area) const;
  absl::Status getXcrs(kvm_xcrs& xcrs) const;
  absl::Status setXcrs(const kvm_xcrs& xcrs) const;
  // Reads the MSRs listed in `entries` (index set, data filled in); all must be read.
  absl::Status getMsrs(std::vector<kvm_msr_entry>& entries) const;
  absl::Status setMsrs(const std::vector<kvm_msr_entry>& entries) const;
  absl::Status getLapic(kvm_lapic_state& lapic) const;
  absl::Status setLapic(const kvm_lapic_state& lapic) const;
  absl::Status getVcpuEvents(kvm_vcpu_events& events) const;
  absl::Status setVcpuEvents(const kvm_vcpu_events& events) const;
  absl::Status getDebugRegs(kvm_debugregs& debug) const;
  absl::Status setDebugRegs(const kvm_debugregs& debug) const;
  absl::Status getMpState(kvm_mp_state& state) const;
  absl::Status setMpState(const kvm_mp_state& state) const;
  absl::Status setCpuid(const CpuidEntries& cpuid) const;
  absl::StatusOr<uint32_t> getTscKhz() const;
  // Tells the guest's kvmclock that the VM was paused (avoids soft-lockup warnings).
  absl::Status kvmclockCtrl() const;

 private:
  friend class VmFd;
  VcpuFd(UniqueFd fd, MmapRegion run) : fd_(std::move(fd)), run_(std::move(run)) {}
  UniqueFd fd_;
  MmapRegion run_;
};

}  // namespace flotilla::vmm
