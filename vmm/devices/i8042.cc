// 8042 keyboard controller (see i8042.h). Commands as documented in the IBM PC/AT technical
// reference and used by Linux's drivers/input/serio/i8042.c and atkbd.c.
#include "vmm/devices/i8042.h"

#include <algorithm>

namespace flotilla::vmm {
namespace {

constexpr uint64_t kDataPort = 0;
constexpr uint64_t kCommandPort = 4;

constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystem = 0x04;    // self test passed
constexpr uint8_t kStatusCommand = 0x08;   // last write went to the command port
constexpr uint8_t kStatusUnlocked = 0x10;  // keyboard not inhibited

constexpr uint8_t kCtrKeyboardInterrupt = 0x01;
constexpr uint8_t kCtrSystem = 0x04;
constexpr uint8_t kCtrKeyboardDisabled = 0x10;
constexpr uint8_t kCtrAuxDisabled = 0x20;
constexpr uint8_t kCtrTranslate = 0x40;

constexpr uint8_t kAck = 0xfa;
constexpr size_t kOutputCapacity = 16;

}  // namespace

I8042::I8042(std::shared_ptr<InterruptLine> irq, std::function<void()> on_reset)
    : irq_(std::move(irq)),
      on_reset_(std::move(on_reset)),
      command_byte_(kCtrKeyboardInterrupt | kCtrSystem | kCtrTranslate),
      status_flags_(kStatusSystem) {}

uint8_t I8042::status() const {
  return status_flags_ | kStatusUnlocked | (output_.empty() ? 0 : kStatusOutputFull);
}

void I8042::updateInterrupt() {
  bool level = !output_.empty() && (command_byte_ & kCtrKeyboardInterrupt);
  if (level != irq_level_) {
    irq_level_ = level;
    irq_->setLevel(level);
  }
}

void I8042::push(std::initializer_list<uint8_t> bytes) {
  for (uint8_t byte : bytes) {
    if (output_.size() < kOutputCapacity) output_.push_back(byte);
  }
  updateInterrupt();
}

void I8042::read(uint64_t offset, std::span<uint8_t> out) {
  if (out.empty()) return;
  absl::MutexLock lock(&mu_);
  std::fill(out.begin(), out.end(), 0xff);
  if (offset == kCommandPort) {
    out[0] = status();
  } else if (offset == kDataPort) {
    out[0] = output_.empty() ? 0 : output_.front();
    if (!output_.empty()) output_.pop_front();
    // Reading empties the output buffer and drops IRQ 1; the next byte raises it again, so
    // that every byte makes an edge.
    if (irq_level_) {
      irq_level_ = false;
      irq_->setLevel(false);
    }
    updateInterrupt();
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> in) {
  if (in.empty()) return;
  absl::MutexLock lock(&mu_);
  if (offset == kCommandPort) {
    status_flags_ |= kStatusCommand;
    command(in[0]);
  } else if (offset == kDataPort) {
    status_flags_ &= static_cast<uint8_t>(~kStatusCommand);
    data(in[0]);
  }
}

void I8042::command(uint8_t value) {
  pending_command_ = 0;
  switch (value) {
    case 0x20:  // read the command byte
      push({command_byte_});
      return;
    case 0x60:  // write the command byte (next data byte)
    case 0xd1:  // write the output port (next data byte)
    case 0xd2:  // write the keyboard output buffer (next data byte)
      pending_command_ = value;
      return;
    case 0xa7:
      command_byte_ |= kCtrAuxDisabled;
      return;
    case 0xa8:
      command_byte_ &= static_cast<uint8_t>(~kCtrAuxDisabled);
      return;
    case 0xaa:  // controller self test
      status_flags_ |= kStatusSystem;
      push({0x55});
      return;
    case 0xab:  // keyboard interface test
      push({0x00});
      return;
    case 0xad:
      command_byte_ |= kCtrKeyboardDisabled;
      return;
    case 0xae:
      command_byte_ &= static_cast<uint8_t>(~kCtrKeyboardDisabled);
      return;
    default:
      // 0xf0-0xff pulse output lines for 6 us; line 0 (bit 0 clear) is the CPU reset.
      if ((value & 0xf0) == 0xf0 && !(value & 0x01)) on_reset_();
      // Anything else (including the mouse commands) is not implemented: no answer, which
      // Linux reads as "no such port".
      return;
  }
}

void I8042::data(uint8_t value) {
  uint8_t pending = pending_command_;
  pending_command_ = 0;
  switch (pending) {
    case 0x60:
      command_byte_ = value;
      updateInterrupt();
      return;
    case 0xd1:
      if (!(value & 0x01)) on_reset_();  // output port bit 0 low: reset the CPU
      return;
    case 0xd2:
      push({value});
      return;
    default:
      keyboardCommand(value);
      return;
  }
}

void I8042::keyboardCommand(uint8_t value) {
  if (keyboard_command_ != 0) {  // the parameter of the previous command
    keyboard_command_ = 0;
    push({kAck});
    return;
  }
  switch (value) {
    case 0xed:  // set LEDs
    case 0xf0:  // select scan code set
    case 0xf3:  // set typematic rate
      keyboard_command_ = value;
      push({kAck});
      return;
    case 0xee:  // echo
      push({0xee});
      return;
    case 0xf2:  // identify: an MF2 keyboard
      push({kAck, 0xab, 0x83});
      return;
    case 0xff:  // reset: acknowledged, basic assurance test passed
      push({kAck, 0xaa});
      return;
    default:  // enable, disable, defaults, ...
      push({kAck});
      return;
  }
}

void I8042::sendCtrlAltDel() {
  absl::MutexLock lock(&mu_);
  if (command_byte_ & kCtrTranslate) {
    // Scan code set 1, as the controller delivers when translating.
    push({0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d});
  } else {
    push({0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14});
  }
}

flotilla::v1::I8042State I8042::save() const {
  absl::MutexLock lock(&mu_);
  flotilla::v1::I8042State state;
  state.set_command_byte(command_byte_);
  state.set_pending_command(pending_command_);
  state.set_keyboard_command(keyboard_command_);
  state.set_status(status_flags_);
  state.set_output(std::string(output_.begin(), output_.end()));
  return state;
}

void I8042::restore(const flotilla::v1::I8042State& state) {
  absl::MutexLock lock(&mu_);
  command_byte_ = static_cast<uint8_t>(state.command_byte());
  pending_command_ = static_cast<uint8_t>(state.pending_command());
  keyboard_command_ = static_cast<uint8_t>(state.keyboard_command());
  status_flags_ = static_cast<uint8_t>(state.status() & (kStatusSystem | kStatusCommand));
  const std::string& output = state.output();
  output_.assign(output.begin(),
                 output.begin() + static_cast<ptrdiff_t>(std::min(output.size(), kOutputCapacity)));
  updateInterrupt();
}

}  // namespace flotilla::vmm
