// The CPUID a guest sees, chosen through a CPU model:
//   host       everything KVM supports on this host (fastest; the VM can only move to
//              hosts with the same or a newer CPU);
//   x86-64-v2  the x86-64 psABI baseline v2 (SSE4.2, POPCNT, CX16, ...), everything else hidden;
//   x86-64-v3  v2 plus AVX, AVX2, BMI1/2, FMA, MOVBE, F16C, LZCNT, XSAVE (x87/SSE/AVX state).
// A baseline lets a VM migrate between hosts whose CPUs differ, as long as each host supports
// the baseline. Every model also gets per-vCPU topology (APIC ids) and the hypervisor bit.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::vmm {

// The names of the CPU models, for help texts and errors.
std::vector<std::string> cpuModelNames();

// Checks that `model` exists and that the host (`supported`, from KVM_GET_SUPPORTED_CPUID)
// has every feature it requires; the error names the missing features.
absl::Status checkCpuModel(const std::vector<kvm_cpuid_entry2>& supported, std::string_view model);

// The CPUID table of vCPU `index` of `count` under `model` (checked with checkCpuModel).
absl::StatusOr<std::vector<kvm_cpuid_entry2>> buildCpuid(
    const std::vector<kvm_cpuid_entry2>& supported, std::string_view model, uint32_t index,
    uint32_t count);

}  // namespace flotilla::vmm
