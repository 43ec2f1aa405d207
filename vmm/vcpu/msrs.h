// Model-specific registers: the values a kernel finds at boot (as firmware would leave them),
// and the ones a snapshot saves (those KVM can save, in the order restore must write them).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace flotilla::vmm {

inline constexpr uint32_t kMsrIa32Tsc = 0x10;

// {index, value} pairs for a vCPU at power-on.
const std::vector<std::pair<uint32_t, uint64_t>>& bootMsrs();

// The MSRs a snapshot saves, among those KVM reports it can save (`kvm_msrs`, from
// KVM_GET_MSR_INDEX_LIST). The TSC comes first: restoring it before the MSRs that depend on
// it (TSC deadline, TSC adjust) keeps them consistent.
std::vector<uint32_t> msrsToSave(const std::vector<uint32_t>& kvm_msrs);

}  // namespace flotilla::vmm
