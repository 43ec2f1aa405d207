// A 16550A UART, as on a PC's COM1 (I/O ports 0x3f8-0x3ff, IRQ 4). Transmission is
// instantaneous: bytes written to THR go straight to the output sink, and THR is always
// empty. Received bytes (from the console socket) wait in a FIFO for the guest. Linux's 8250
// driver probes with the scratch register and loopback mode, and transmits on THR-empty
// interrupts; all of that is emulated. See the PC16550D data sheet for the registers.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>

#include "absl/synchronization/mutex.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/interrupt_line.h"

namespace flotilla::vmm {

// Where the guest's serial output goes (a file, a socket, standard output).
class SerialSink {
 public:
  virtual ~SerialSink() = default;
  virtual void write(std::span<const uint8_t> bytes) = 0;
};

class Serial final : public BusDevice {
 public:
  static constexpr uint64_t kCom1Base = 0x3f8;
  static constexpr uint64_t kRegisterCount = 8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr size_t kRxCapacity = 4096;

  Serial(std::shared_ptr<SerialSink> sink, std::shared_ptr<InterruptLine> irq);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues bytes for the guest to receive (from any thread); bytes beyond the FIFO's
  // capacity are dropped, as a real UART would overrun. Returns how many were queued.
  size_t receive(std::span<const uint8_t> bytes);

  flotilla::v1::SerialState save() const;
  void restore(const flotilla::v1::SerialState& state);

 private:
  uint8_t readRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void writeRegister(uint64_t offset, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t interruptIdentification() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t modemStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void updateInterrupt() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<SerialSink> sink_;
  const std::shared_ptr<InterruptLine> irq_;
  mutable absl::Mutex mu_;
  uint8_t ier_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t lcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t mcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t scr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t dll_ ABSL_GUARDED_BY(mu_) = 0x0c;  // 9600 baud, as after a BIOS
  uint8_t dlm_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t fcr_ ABSL_GUARDED_BY(mu_) = 0;
  uint8_t msr_deltas_ ABSL_GUARDED_BY(mu_) = 0;
  bool thr_interrupt_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool irq_level_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<uint8_t> rx_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::vmm
