// Power-on vCPU state (see setup.h). Register bits from the Intel SDM vol. 3A (2.5 control
// registers, 3.4.5 segment descriptors) and the LAPIC's LVT layout (10.5.1).
#include "vmm/vcpu/setup.h"

#include <algorithm>
#include <cstring>

#include "common/status.h"
#include "vmm/vcpu/msrs.h"

namespace flotilla::vmm {
namespace {

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

// LAPIC register offsets in kvm_lapic_state.regs, and the LVT delivery-mode field.
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kDeliveryModeMask = 0x700;
constexpr uint32_t kDeliveryModeNmi = 0x400;
constexpr uint32_t kDeliveryModeExtInt = 0x700;

uint32_t lapicRegister(const kvm_lapic_state& lapic, size_t offset) {
  uint32_t value;
  std::memcpy(&value, lapic.regs + offset, sizeof(value));
  return value;
}

void setLapicRegister(kvm_lapic_state& lapic, size_t offset, uint32_t value) {
  std::memcpy(lapic.regs + offset, &value, sizeof(value));
}

kvm_segment flatSegment(uint16_t selector, uint8_t type, bool code64, bool big) {
  kvm_segment segment{};
  segment.base = 0;
  segment.limit = 0xffffffff;
  segment.selector = selector;
  segment.type = type;
  segment.present = 1;
  segment.dpl = 0;
  segment.db = big ? 1 : 0;
  segment.s = 1;  // code or data, not a system segment
  segment.l = code64 ? 1 : 0;
  segment.g = 1;
  return segment;
}

}  // namespace

absl::Status configureVcpu(const VcpuFd& vcpu, const std::vector<kvm_cpuid_entry2>& cpuid,
                           const std::vector<uint32_t>& supported_msrs) {
  RETURN_IF_ERROR(vcpu.setCpuid(CpuidEntries{cpuid}));

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87: all exceptions masked, extended precision (FNINIT's value)
  fpu.mxcsr = 0x1f80;  // SSE: all exceptions masked
  RETURN_IF_ERROR(vcpu.setFpu(fpu));

  std::vector<kvm_msr_entry> msrs;
  for (const auto& [index, value] : bootMsrs()) {
    if (std::find(supported_msrs.begin(), supported_msrs.end(), index) != supported_msrs.end()) {
      kvm_msr_entry entry{};
      entry.index = index;
      entry.data = value;
      msrs.push_back(entry);
    }
  }
  RETURN_IF_ERROR(vcpu.setMsrs(msrs));

  // As on a PC: the 8259 PIC's output reaches the boot CPU through LINT0 (ExtINT), NMIs
  // through LINT1. Linux relies on this until it switches to the IOAPIC.
  kvm_lapic_state lapic{};
  RETURN_IF_ERROR(vcpu.getLapic(lapic));
  setLapicRegister(
      lapic, kApicLvtLint0,
      (lapicRegister(lapic, kApicLvtLint0) & ~kDeliveryModeMask) | kDeliveryModeExtInt);
  setLapicRegister(lapic, kApicLvtLint1,
                   (lapicRegister(lapic, kApicLvtLint1) & ~kDeliveryModeMask) | kDeliveryModeNmi);
  return vcpu.setLapic(lapic);
}

absl::Status setBootRegisters(const VcpuFd& vcpu, const BootEntry& entry) {
  const bool long_mode = entry.mode == BootEntry::Mode::kLong64;
  kvm_sregs sregs{};
  RETURN_IF_ERROR(vcpu.getSregs(sregs));
  // Type 11: execute/read code, accessed; type 3: read/write data, accessed.
  sregs.cs = flatSegment(entry.code_selector, 11, long_mode, !long_mode);
  kvm_segment data = flatSegment(entry.data_selector, 3, false, true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  // A busy TSS (the GDT's): VM entry requires a usable task register, though nothing
  // switches tasks.
  sregs.tr = kvm_segment{};
  sregs.tr.selector = entry.tss_selector;
  sregs.tr.limit = 0x67;
  sregs.tr.type = 11;
  sregs.tr.present = 1;
  sregs.gdt.base = entry.gdt_base.raw();
  sregs.gdt.limit = entry.gdt_limit;
  // An empty IDT: the kernel sets up its own before it enables interrupts.
  sregs.idt.base = entry.idt_base.raw();
  sregs.idt.limit = entry.idt_limit;
  if (long_mode) {
    sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;  // also clears the reset value's CD and NW
    sregs.cr3 = entry.cr3;
    sregs.cr4 = kCr4Pae;
    sregs.efer = kEferLme | kEferLma;
  } else {
    sregs.cr0 = kCr0Pe | kCr0Et;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
  }
  RETURN_IF_ERROR(vcpu.setSregs(sregs));

  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved and always set; interrupts off
  regs.rip = entry.rip;
  regs.rsp = entry.rsp;
  regs.rsi = entry.rsi;
  regs.rbx = entry.rbx;
  return vcpu.setRegs(regs);
}

}  // namespace flotilla::vmm
