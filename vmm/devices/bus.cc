// Bus (see bus.h).
#include "vmm/devices/bus.h"

#include "fmt/format.h"

namespace flotilla::vmm {

absl::Status Bus::add(uint64_t base, uint64_t size, std::string name,
                      std::shared_ptr<BusDevice> device) {
  if (size == 0 || base + size < base) {
    return absl::InvalidArgumentError(
        fmt::format("device {}: invalid range {:#x} + {:#x}", name, base, size));
  }
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + size) {
    return absl::AlreadyExistsError(fmt::format("device {} at {:#x} overlaps device {} at {:#x}",
                                                name, base, next->second.name, next->first));
  }
  if (next != ranges_.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second.size > base) {
      return absl::AlreadyExistsError(fmt::format("device {} at {:#x} overlaps device {} at {:#x}",
                                                  name, base, previous->second.name,
                                                  previous->first));
    }
  }
  ranges_.emplace(base, Range{size, std::move(name), std::move(device)});
  return absl::OkStatus();
}

const Bus::Range* Bus::find(uint64_t address, uint64_t* base) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return nullptr;
  --it;
  if (address - it->first >= it->second.size) return nullptr;
  *base = it->first;
  return &it->second;
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) const {
  uint64_t base = 0;
  const Range* range = find(address, &base);
  if (range == nullptr) return false;
  range->device->read(address - base, data);
  return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) const {
  uint64_t base = 0;
  const Range* range = find(address, &base);
  if (range == nullptr) return false;
  range->device->write(address - base, data);
  return true;
}

uint64_t loadLittleEndian(std::span<const uint8_t> data) {
  uint64_t value = 0;
  for (size_t i = 0; i < data.size() && i < 8; ++i) value |= uint64_t{data[i]} << (8 * i);
  return value;
}

void storeLittleEndian(uint64_t value, std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = i < 8 ? static_cast<uint8_t>(value >> (8 * i)) : 0;
  }
}

}  // namespace flotilla::vmm
