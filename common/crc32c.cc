// CRC-32C (see crc32c.h).
#include "common/crc32c.h"

#include <array>
#include <cstring>

namespace flotilla {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // Castagnoli, reflected

constexpr std::array<uint32_t, 256> makeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) != 0 ? kPolynomial : 0);
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = makeTable();

uint32_t crc32cTable(uint32_t crc, const uint8_t* data, size_t size) {
  for (size_t i = 0; i < size; ++i) crc = kTable[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

__attribute__((target("sse4.2"))) uint32_t crc32cHardware(uint32_t crc, const uint8_t* data,
                                                          size_t size) {
  uint64_t value = crc;
  while (size >= sizeof(uint64_t)) {
    uint64_t word = 0;
    std::memcpy(&word, data, sizeof(word));
    value = __builtin_ia32_crc32di(value, word);
    data += sizeof(word);
    size -= sizeof(word);
  }
  auto narrow = static_cast<uint32_t>(value);
  while (size > 0) {
    narrow = __builtin_ia32_crc32qi(narrow, *data);
    ++data;
    --size;
  }
  return narrow;
}

bool hasSse42() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return has;
}

}  // namespace

uint32_t crc32c(uint32_t crc, std::span<const uint8_t> data) {
  crc = ~crc;
  crc = hasSse42() ? crc32cHardware(crc, data.data(), data.size())
                   : crc32cTable(crc, data.data(), data.size());
  return ~crc;
}

}  // namespace flotilla
