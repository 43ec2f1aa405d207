// A debug-exit port compatible with QEMU's isa-debug-exit (I/O port 0xf4, 4 bytes): a guest
// that writes `value` there ends the VM, and the VMM exits with status (value << 1) | 1, so
// that test guests can report success or failure through the VMM's exit status.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/devices/bus.h"

namespace flotilla::vmm {

class DebugExit final : public BusDevice {
 public:
  static constexpr uint64_t kPort = 0xf4;
  static constexpr uint64_t kSize = 4;

  // `on_exit` receives the value written; it must only record the request.
  explicit DebugExit(std::function<void(uint32_t)> on_exit) : on_exit_(std::move(on_exit)) {}

  void read(uint64_t, std::span<uint8_t> data) override {
    for (uint8_t& byte : data) byte = 0;
  }
  void write(uint64_t, std::span<const uint8_t> data) override {
    on_exit_(static_cast<uint32_t>(loadLittleEndian(data)));
  }

  // The VMM's exit status for a value written to the port.
  static int exitStatus(uint32_t value) { return static_cast<int>((value << 1) | 1) & 0xff; }

 private:
  const std::function<void(uint32_t)> on_exit_;
};

}  // namespace flotilla::vmm
