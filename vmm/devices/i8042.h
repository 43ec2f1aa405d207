// Enough of the PC's 8042 keyboard controller (ports 0x60 and 0x64, IRQ 1) for Linux to find
// it, to reboot through it (command 0xfe pulses the CPU reset line: Linux's reboot=k), and
// for the VMM to ask for a graceful shutdown by typing Ctrl-Alt-Del. No mouse port. Port 0x61
// (the PIT speaker gate) lies in between and is emulated by KVM, not here.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>

#include "absl/synchronization/mutex.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/interrupt_line.h"

namespace flotilla::vmm {

class I8042 final : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0x60;  // data at +0, status/command at +4
  static constexpr uint64_t kSize = 5;
  static constexpr uint32_t kIrq = 1;

  // `on_reset` runs (on the calling vCPU's thread, with the device locked) when the guest
  // pulses the reset line; it must only record the request.
  I8042(std::shared_ptr<InterruptLine> irq, std::function<void()> on_reset);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Types Ctrl-Alt-Del (press and release), which Linux answers by rebooting.
  void sendCtrlAltDel();

  flotilla::v1::I8042State save() const;
  void restore(const flotilla::v1::I8042State& state);

 private:
  void command(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void data(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void keyboardCommand(uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void push(std::initializer_list<uint8_t> bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t status() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void updateInterrupt() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<InterruptLine> irq_;
  const std::function<void()> on_reset_;
  mutable absl::Mutex mu_;
  uint8_t command_byte_ ABSL_GUARDED_BY(mu_);
  uint8_t pending_command_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t keyboard_command_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t status_flags_ ABSL_GUARDED_BY(mu_);  // SYS and CMD/DATA; OBF is derived
  bool irq_level_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<uint8_t> output_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::vmm
