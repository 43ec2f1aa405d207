// Bus: routes the guest's port I/O (or MMIO) accesses to the device that claims the address.
// Devices are added while the VM is built and the bus is read-only once vCPUs run, so
// lookups take no lock; each device guards its own state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "absl/status/status.h"

namespace flotilla::vmm {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  // `offset` is relative to the start of the device's range; the span's size is the access
  // width (1, 2, 4 or 8 bytes). Values are little-endian, as the guest sees them.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  // Claims [base, base + size) for `device` (named in errors). Overlaps are refused.
  absl::Status add(uint64_t base, uint64_t size, std::string name,
                   std::shared_ptr<BusDevice> device);

  // False when no device claims the address (the caller decides what the guest then sees).
  bool read(uint64_t address, std::span<uint8_t> data) const;
  bool write(uint64_t address, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t size;
    std::string name;
    std::shared_ptr<BusDevice> device;
  };
  // The range claiming `address` and its base, or null.
  const Range* find(uint64_t address, uint64_t* base) const;

  std::map<uint64_t, Range> ranges_;  // by base address
};

// Little-endian helpers for device registers.
uint64_t loadLittleEndian(std::span<const uint8_t> data);
void storeLittleEndian(uint64_t value, std::span<uint8_t> data);

}  // namespace flotilla::vmm
