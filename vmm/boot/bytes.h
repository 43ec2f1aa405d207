// Helpers for reading untrusted kernel images: checked arithmetic on offsets and sizes read
// from the image, bounds-checked reads of little-endian structures, and sizes for messages.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>

namespace flotilla::vmm {

// a + b, or nullopt when it overflows 64 bits.
inline std::optional<uint64_t> checkedAdd(uint64_t a, uint64_t b) {
  uint64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

// a * b, or nullopt when it overflows 64 bits.
inline std::optional<uint64_t> checkedMul(uint64_t a, uint64_t b) {
  uint64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// Whether [offset, offset + length) lies inside [0, total), without overflow for any inputs.
inline bool rangeInside(uint64_t offset, uint64_t length, uint64_t total) {
  return offset <= total && length <= total - offset;
}

// `value` rounded up to a multiple of `alignment` (a power of two), or nullopt on overflow.
inline std::optional<uint64_t> alignUp(uint64_t value, uint64_t alignment) {
  std::optional<uint64_t> bumped = checkedAdd(value, alignment - 1);
  if (!bumped) return std::nullopt;
  return *bumped & ~(alignment - 1);
}

inline uint64_t alignDown(uint64_t value, uint64_t alignment) {
  return value & ~(alignment - 1);
}

inline bool isPowerOfTwo(uint64_t value) {
  return value != 0 && (value & (value - 1)) == 0;
}

// The trivially copyable T stored at `offset` of `bytes`, or nullopt when it does not fit.
// The image is little-endian like the host (x86-64 only), so a copy is a decode.
template <typename T>
std::optional<T> readStruct(std::span<const uint8_t> bytes, uint64_t offset) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (!rangeInside(offset, sizeof(T), bytes.size())) return std::nullopt;
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// "12 bytes", "3 KiB", "256 MiB", "4 GiB", or "1.5 MiB" for sizes that are not a whole
// number of units: for messages.
std::string describeSize(uint64_t bytes);

// The first `count` bytes of `bytes` in hex ("7f 45 4c 46 02 ..."), for messages about
// unknown formats.
std::string hexPrefix(std::span<const uint8_t> bytes, size_t count);

}  // namespace flotilla::vmm
