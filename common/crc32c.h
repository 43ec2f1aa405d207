// CRC-32C (Castagnoli), the checksum of iSCSI and ext4: with the SSE 4.2 crc32 instruction
// where the CPU has it (every x86-64 CPU since 2008; several GB/s), a table otherwise.
// Incremental: crc32c(crc32c(0, a), b) == crc32c(0, a + b).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace flotilla {

uint32_t crc32c(uint32_t crc, std::span<const uint8_t> data);

}  // namespace flotilla
