// Saving and restoring what KVM holds of a VM: each vCPU's registers, FPU/XSAVE, MSRs, LAPIC,
// pending events and debug registers; the PIC, IOAPIC, PIT and kvmclock. Saving needs the
// vCPUs paused (outside KVM_RUN). Restoring writes in the order KVM needs (as QEMU does):
// general registers, XSAVE, XCRs, segment and control registers, MSRs, MP state, LAPIC, the
// TSC deadline (only meaningful once the LAPIC is in TSC-deadline mode), events, debug.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/kvm/kvm.h"

namespace flotilla::vmm {

absl::StatusOr<flotilla::v1::VcpuState> saveVcpuState(const VcpuFd& vcpu, uint32_t index,
                                                      const std::vector<uint32_t>& msrs,
                                                      size_t xsave_size);
// `xsave_size` is this host's (Kvm::xsaveSize()); a saved area larger than that needs CPU
// state this host cannot hold and is refused.
absl::Status restoreVcpuState(const VcpuFd& vcpu, const flotilla::v1::VcpuState& state,
                              size_t xsave_size);

absl::StatusOr<flotilla::v1::IrqchipState> saveIrqchipState(const VmFd& vm);
absl::Status restoreIrqchipState(const VmFd& vm, const flotilla::v1::IrqchipState& state);

}  // namespace flotilla::vmm
