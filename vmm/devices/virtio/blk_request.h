// Parsing of virtio-blk requests (virtio 1.2 section 5.2.6) from descriptor chains, apart from
// the device so that it can be unit-tested and fuzzed without a backend: header, data buffers
// and status byte, with every length and range checked against the disk.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/devices/virtio/queue.h"

namespace flotilla::vmm::virtio {

// The first `length` bytes of `buffers` from byte `offset` on, as iovecs (fewer bytes when
// the buffers end first).
std::vector<iovec> sliceBuffers(std::span<const ChainBuffer> buffers, uint64_t offset,
                                uint64_t length);
// Copies up to out.size() bytes from the start of `buffers`; returns how many.
size_t gatherBytes(std::span<const ChainBuffer> buffers, uint64_t offset, std::span<uint8_t> out);

struct BlockDiskInfo {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  bool flush = false;         // VIRTIO_BLK_F_FLUSH negotiated
  bool discard = false;       // VIRTIO_BLK_F_DISCARD negotiated
  bool write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES negotiated
  uint32_t max_discard_sectors = 0;
  uint32_t max_write_zeroes_sectors = 0;
};

struct BlockRequestPlan {
  uint32_t type = 0;
  uint64_t offset = 0;  // bytes (sector * 512)
  std::vector<iovec> data;
  uint64_t data_bytes = 0;    // IN/OUT/GET_ID data; DISCARD/WRITE_ZEROES range length
  bool unmap = false;         // WRITE_ZEROES with VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
  uint8_t* status = nullptr;  // the status byte, in guest memory
  // Set when the request is already answered (bad range, read-only disk, unsupported type):
  // the device writes this status without calling the backend.
  std::optional<uint8_t> immediate_status;
  // What the used element reports as written: IN and GET_ID data plus the status byte.
  uint32_t used_length = 1;
};

// The request in `chain` for the disk `disk`. An error means the chain is not a virtio-blk
// request at all (no header, no status byte): the driver broke the protocol.
absl::StatusOr<BlockRequestPlan> parseBlockRequest(const DescriptorChain& chain,
                                                   const BlockDiskInfo& disk);

}  // namespace flotilla::vmm::virtio
