// InterruptLine: a device's interrupt output. Devices set its level (high while they want
// attention); the in-kernel PIC/IOAPIC turns a rising edge into an interrupt for ISA lines.
#pragma once

#include <cstdint>

namespace flotilla::vmm {

class InterruptLine {
 public:
  virtual ~InterruptLine() = default;
  virtual void setLevel(bool high) = 0;
};

}  // namespace flotilla::vmm
