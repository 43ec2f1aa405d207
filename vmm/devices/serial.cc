// 16550A UART (see serial.h). Register and bit names follow the PC16550D data sheet.
#include "vmm/devices/serial.h"

#include <algorithm>
#include <vector>

namespace flotilla::vmm {
namespace {

// Register offsets (DLAB = divisor latch access bit, LCR bit 7).
constexpr uint64_t kData = 0;  // RBR (read) / THR (write); DLL when DLAB
constexpr uint64_t kIer = 1;   // DLM when DLAB
constexpr uint64_t kIirFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerReceivedData = 0x01;
constexpr uint8_t kIerThrEmpty = 0x02;
constexpr uint8_t kIerModemStatus = 0x08;

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirModemStatus = 0x00;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirReceivedData = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrTransmitterEmpty = 0x40;

constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

}  // namespace

Serial::Serial(std::shared_ptr<SerialSink> sink, std::shared_ptr<InterruptLine> irq)
    : sink_(std::move(sink)), irq_(std::move(irq)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  absl::MutexLock lock(&mu_);
  std::fill(data.begin(), data.end(), 0);
  data[0] = readRegister(offset);
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  absl::MutexLock lock(&mu_);
  writeRegister(offset, data[0]);
}

size_t Serial::receive(std::span<const uint8_t> bytes) {
  absl::MutexLock lock(&mu_);
  size_t queued = std::min(bytes.size(), kRxCapacity - rx_.size());
  rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(queued));
  updateInterrupt();
  return queued;
}

uint8_t Serial::modemStatus() const {
  if (mcr_ & kMcrLoop) {
    // Loopback: the modem control outputs come back as the modem status inputs.
    uint8_t status = 0;
    if (mcr_ & kMcrRts) status |= kMsrCts;
    if (mcr_ & kMcrDtr) status |= kMsrDsr;
    if (mcr_ & kMcrOut1) status |= kMsrRi;
    if (mcr_ & kMcrOut2) status |= kMsrDcd;
    return status;
  }
  // A terminal is always there: carrier, data set ready, clear to send.
  return kMsrDcd | kMsrDsr | kMsrCts;
}

uint8_t Serial::interruptIdentification() const {
  if ((ier_ & kIerReceivedData) && !rx_.empty()) return kIirReceivedData;
  if ((ier_ & kIerThrEmpty) && thr_interrupt_pending_) return kIirThrEmpty;
  if ((ier_ & kIerModemStatus) && (msr_deltas_ & 0x0f)) return kIirModemStatus;
  return kIirNone;
}

void Serial::updateInterrupt() {
  bool level = interruptIdentification() != kIirNone;
  if (level != irq_level_) {
    irq_level_ = level;
    irq_->setLevel(level);
  }
}

uint8_t Serial::readRegister(uint64_t offset) {
  switch (offset) {
    case kData: {
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_.empty()) return 0;
      uint8_t byte = rx_.front();
      rx_.pop_front();
      updateInterrupt();
      return byte;
    }
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIirFcr: {
      uint8_t iir = interruptIdentification();
      // Reading IIR while it reports THR empty acknowledges that interrupt.
      if (iir == kIirThrEmpty) {
        thr_interrupt_pending_ = false;
        updateInterrupt();
      }
      return iir | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0);
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return (rx_.empty() ? 0 : kLsrDataReady) | kLsrThrEmpty | kLsrTransmitterEmpty;
    case kMsr: {
      uint8_t status = modemStatus() | msr_deltas_;
      msr_deltas_ = 0;
      updateInterrupt();
      return status;
    }
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Serial::writeRegister(uint64_t offset, uint8_t value) {
  switch (offset) {
    case kData:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
        return;
      }
      if (mcr_ & kMcrLoop) {
        if (rx_.size() < kRxCapacity) rx_.push_back(value);
      } else {
        sink_->write({&value, 1});
      }
      // The byte left at once: THR is empty again.
      thr_interrupt_pending_ = true;
      updateInterrupt();
      return;
    case kIer:
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      // Enabling the THR-empty interrupt while THR is empty raises it at once.
      if ((value & kIerThrEmpty) && !(ier_ & kIerThrEmpty)) thr_interrupt_pending_ = true;
      ier_ = value & 0x0f;
      updateInterrupt();
      return;
    case kIirFcr:
      if (value & kFcrClearRx) rx_.clear();
      fcr_ = value & 0xc9;  // enable, DMA mode and the receive trigger level
      updateInterrupt();
      return;
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      uint8_t before = modemStatus();
      mcr_ = value & 0x1f;
      uint8_t after = modemStatus();
      // Delta bits: CTS, DSR and DCD changed; RI went from on to off (trailing edge).
      uint8_t changed = before ^ after;
      msr_deltas_ |= ((changed & (kMsrCts | kMsrDsr | kMsrDcd)) >> 4) |
                     ((before & kMsrRi) && !(after & kMsrRi) ? 0x04 : 0);
      updateInterrupt();
      return;
    }
    case kScr:
      scr_ = value;
      return;
    default:  // LSR and MSR are read-only
      return;
  }
}

flotilla::v1::SerialState Serial::save() const {
  absl::MutexLock lock(&mu_);
  flotilla::v1::SerialState state;
  state.set_ier(ier_);
  state.set_lcr(lcr_);
  state.set_mcr(mcr_);
  state.set_scr(scr_);
  state.set_dll(dll_);
  state.set_dlm(dlm_);
  state.set_fcr(fcr_);
  state.set_thr_interrupt_pending(thr_interrupt_pending_);
  state.set_msr_deltas(msr_deltas_);
  state.set_rx(std::string(rx_.begin(), rx_.end()));
  return state;
}

void Serial::restore(const flotilla::v1::SerialState& state) {
  absl::MutexLock lock(&mu_);
  ier_ = static_cast<uint8_t>(state.ier() & 0x0f);
  lcr_ = static_cast<uint8_t>(state.lcr());
  mcr_ = static_cast<uint8_t>(state.mcr() & 0x1f);
  scr_ = static_cast<uint8_t>(state.scr());
  dll_ = static_cast<uint8_t>(state.dll());
  dlm_ = static_cast<uint8_t>(state.dlm());
  fcr_ = static_cast<uint8_t>(state.fcr() & 0xc9);
  thr_interrupt_pending_ = state.thr_interrupt_pending();
  msr_deltas_ = static_cast<uint8_t>(state.msr_deltas() & 0x0f);
  const std::string& rx = state.rx();
  rx_.assign(rx.begin(), rx.begin() + static_cast<ptrdiff_t>(std::min(rx.size(), kRxCapacity)));
  updateInterrupt();
}

}  // namespace flotilla::vmm
