// KVM state save and restore (see vcpu_state.h).
#include "vmm/state/vcpu_state.h"

#include "vmm/kvm/kvm_abi.h"

#include <cstring>
#include <string>
#include <type_traits>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm {
namespace {

constexpr uint32_t kMsrTscDeadline = 0x6e0;

template <typename T>
std::string toBytes(const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  return std::string(reinterpret_cast<const char*>(&value), sizeof(T));
}

// A KVM structure from its saved bytes; the size must match exactly (a different size means
// another layout: a corrupted or foreign file).
template <typename T>
absl::Status fromBytes(const std::string& bytes, T& value, const char* what) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (bytes.size() != sizeof(T)) {
    return absl::DataLossError(
        fmt::format("saved {} is {} bytes, expected {}", what, bytes.size(), sizeof(T)));
  }
  std::memcpy(&value, bytes.data(), sizeof(T));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<flotilla::v1::VcpuState> saveVcpuState(const VcpuFd& vcpu, uint32_t index,
                                                      const std::vector<uint32_t>& msrs,
                                                      size_t xsave_size) {
  flotilla::v1::VcpuState state;
  state.set_index(index);
  kvm_mp_state mp{};
  RETURN_IF_ERROR(vcpu.getMpState(mp));
  state.set_mp_state(mp.mp_state);
  kvm_regs regs{};
  RETURN_IF_ERROR(vcpu.getRegs(regs));
  state.set_regs(toBytes(regs));
  kvm_sregs sregs{};
  RETURN_IF_ERROR(vcpu.getSregs(sregs));
  state.set_sregs(toBytes(sregs));
  std::vector<uint8_t> xsave;
  RETURN_IF_ERROR(vcpu.getXsave(xsave, xsave_size));
  state.set_xsave(std::string(xsave.begin(), xsave.end()));
  kvm_xcrs xcrs{};
  RETURN_IF_ERROR(vcpu.getXcrs(xcrs));
  state.set_xcrs(toBytes(xcrs));
  std::vector<kvm_msr_entry> entries(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) entries[i].index = msrs[i];
  RETURN_IF_ERROR(vcpu.getMsrs(entries));
  for (const kvm_msr_entry& entry : entries) {
    flotilla::v1::Msr* msr = state.add_msrs();
    msr->set_index(entry.index);
    msr->set_value(entry.data);
  }
  kvm_lapic_state lapic{};
  RETURN_IF_ERROR(vcpu.getLapic(lapic));
  state.set_lapic(toBytes(lapic));
  kvm_vcpu_events events{};
  RETURN_IF_ERROR(vcpu.getVcpuEvents(events));
  state.set_events(toBytes(events));
  kvm_debugregs debug{};
  RETURN_IF_ERROR(vcpu.getDebugRegs(debug));
  state.set_debugregs(toBytes(debug));
  return state;
}

absl::Status restoreVcpuState(const VcpuFd& vcpu, const flotilla::v1::VcpuState& state,
                              size_t xsave_size) {
  kvm_regs regs{};
  RETURN_IF_ERROR(fromBytes(state.regs(), regs, "kvm_regs"));
  kvm_sregs sregs{};
  RETURN_IF_ERROR(fromBytes(state.sregs(), sregs, "kvm_sregs"));
  kvm_xcrs xcrs{};
  RETURN_IF_ERROR(fromBytes(state.xcrs(), xcrs, "kvm_xcrs"));
  kvm_lapic_state lapic{};
  RETURN_IF_ERROR(fromBytes(state.lapic(), lapic, "kvm_lapic_state"));
  kvm_vcpu_events events{};
  RETURN_IF_ERROR(fromBytes(state.events(), events, "kvm_vcpu_events"));
  kvm_debugregs debug{};
  RETURN_IF_ERROR(fromBytes(state.debugregs(), debug, "kvm_debugregs"));
  if (state.xsave().size() < sizeof(abi::Xsave)) {
    return absl::DataLossError(fmt::format("saved XSAVE area is {} bytes, less than {}",
                                           state.xsave().size(), sizeof(abi::Xsave)));
  }
  if (state.xsave().size() > xsave_size) {
    return absl::FailedPreconditionError(fmt::format(
        "the saved XSAVE area ({} bytes) holds CPU state this host cannot ({} bytes): restore "
        "on a host with the same CPU features, or use a CPU model both hosts support",
        state.xsave().size(), xsave_size));
  }
  std::vector<uint8_t> xsave(state.xsave().begin(), state.xsave().end());
  xsave.resize(xsave_size, 0);

  std::vector<kvm_msr_entry> msrs;
  std::vector<kvm_msr_entry> deadline;
  for (const flotilla::v1::Msr& msr : state.msrs()) {
    kvm_msr_entry entry{};
    entry.index = msr.index();
    entry.data = msr.value();
    (msr.index() == kMsrTscDeadline ? deadline : msrs).push_back(entry);
  }

  RETURN_IF_ERROR(vcpu.setRegs(regs));
  RETURN_IF_ERROR(vcpu.setXsave(xsave));
  RETURN_IF_ERROR(vcpu.setXcrs(xcrs));
  RETURN_IF_ERROR(vcpu.setSregs(sregs));
  RETURN_IF_ERROR(vcpu.setMsrs(msrs));
  kvm_mp_state mp{};
  mp.mp_state = state.mp_state();
  RETURN_IF_ERROR(vcpu.setMpState(mp));
  RETURN_IF_ERROR(vcpu.setLapic(lapic));
  RETURN_IF_ERROR(vcpu.setMsrs(deadline));
  RETURN_IF_ERROR(vcpu.setVcpuEvents(events));
  return vcpu.setDebugRegs(debug);
}

absl::StatusOr<flotilla::v1::IrqchipState> saveIrqchipState(const VmFd& vm) {
  flotilla::v1::IrqchipState state;
  for (uint32_t chip_id : {uint32_t{KVM_IRQCHIP_PIC_MASTER}, uint32_t{KVM_IRQCHIP_PIC_SLAVE},
                           uint32_t{KVM_IRQCHIP_IOAPIC}}) {
    kvm_irqchip chip{};
    chip.chip_id = chip_id;
    RETURN_IF_ERROR(vm.getIrqchip(chip));
    std::string bytes = toBytes(chip);
    if (chip_id == KVM_IRQCHIP_PIC_MASTER) state.set_pic_master(bytes);
    if (chip_id == KVM_IRQCHIP_PIC_SLAVE) state.set_pic_slave(bytes);
    if (chip_id == KVM_IRQCHIP_IOAPIC) state.set_ioapic(bytes);
  }
  kvm_pit_state2 pit{};
  RETURN_IF_ERROR(vm.getPit2(pit));
  state.set_pit(toBytes(pit));
  kvm_clock_data clock{};
  RETURN_IF_ERROR(vm.getClock(clock));
  state.set_clock_ns(clock.clock);
  return state;
}

absl::Status restoreIrqchipState(const VmFd& vm, const flotilla::v1::IrqchipState& state) {
  struct Chip {
    const std::string& bytes;
    uint32_t id;
    const char* name;
  };
  for (const Chip& saved : {Chip{state.pic_master(), KVM_IRQCHIP_PIC_MASTER, "master PIC"},
                            Chip{state.pic_slave(), KVM_IRQCHIP_PIC_SLAVE, "slave PIC"},
                            Chip{state.ioapic(), KVM_IRQCHIP_IOAPIC, "IOAPIC"}}) {
    kvm_irqchip chip{};
    RETURN_IF_ERROR(fromBytes(saved.bytes, chip, saved.name));
    if (chip.chip_id != saved.id) {
      return absl::DataLossError(
          fmt::format("saved {} state has chip id {}", saved.name, chip.chip_id));
    }
    RETURN_IF_ERROR(vm.setIrqchip(chip));
  }
  kvm_pit_state2 pit{};
  RETURN_IF_ERROR(fromBytes(state.pit(), pit, "kvm_pit_state2"));
  RETURN_IF_ERROR(vm.setPit2(pit));
  // The guest's clock continues from the instant it was saved: to the guest, no time passed.
  kvm_clock_data clock{};
  clock.clock = state.clock_ns();
  return vm.setClock(clock);
}

}  // namespace flotilla::vmm
