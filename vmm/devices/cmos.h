// The PC's CMOS RAM and real-time clock (MC146818, ports 0x70-0x71): Linux reads the time at
// boot and probes the chip. The time is the host's wall clock plus an offset the guest sets
// by writing the time registers (with the SET bit on, as Linux does, the registers hold still
// and the written time takes effect when SET goes off). No RTC interrupts (IRQ 8): update-ended and
// periodic interrupts are not emulated, and the update-in-progress bit always reads 0.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/devices/bus.h"

namespace flotilla::vmm {

class Cmos final : public BusDevice {
 public:
  static constexpr uint64_t kBase = 0x70;
  static constexpr uint64_t kSize = 2;

  explicit Cmos(const Clock& clock);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  flotilla::v1::CmosState save() const;
  void restore(const flotilla::v1::CmosState& state);

 private:
  uint8_t readRegister(uint8_t index) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void writeRegister(uint8_t index, uint8_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Time guestTime() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void setGuestTime(absl::CivilSecond time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t encode(int value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int decode(uint8_t value) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::array<uint8_t, 128> ram_ ABSL_GUARDED_BY(mu_){};
  uint8_t index_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t offset_seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::vmm
