// A vCPU's state at power-on: CPUID, FPU control words, the MSRs a 64-bit kernel expects
// from firmware, the LAPIC's LINT pins wired as on a PC, and for the boot vCPU the registers
// its kernel's boot protocol asks for.
#pragma once

#include <linux/kvm.h>

#include <vector>

#include "absl/status/status.h"
#include "vmm/boot/boot.h"
#include "vmm/kvm/kvm.h"

namespace flotilla::vmm {

// CPUID, FPU, boot MSRs (those in `supported_msrs`) and LAPIC LINT0 = ExtINT, LINT1 = NMI.
absl::Status configureVcpu(const VcpuFd& vcpu, const std::vector<kvm_cpuid_entry2>& cpuid,
                           const std::vector<uint32_t>& supported_msrs);

// The boot vCPU's segment, control and general registers for `entry`.
absl::Status setBootRegisters(const VcpuFd& vcpu, const BootEntry& entry);

}  // namespace flotilla::vmm
