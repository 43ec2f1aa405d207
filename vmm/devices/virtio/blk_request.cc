// virtio-blk request parsing (see blk_request.h).
#include "vmm/devices/virtio/blk_request.h"

#include <algorithm>
#include <cstring>

#include "fmt/format.h"

namespace flotilla::vmm::virtio {

std::vector<iovec> sliceBuffers(std::span<const ChainBuffer> buffers, uint64_t offset,
                                uint64_t length) {
  std::vector<iovec> out;
  for (const ChainBuffer& buffer : buffers) {
    if (length == 0) break;
    if (offset >= buffer.length) {
      offset -= buffer.length;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(buffer.length - offset, length);
    out.push_back(iovec{buffer.data + offset, static_cast<size_t>(take)});
    length -= take;
    offset = 0;
  }
  return out;
}

size_t gatherBytes(std::span<const ChainBuffer> buffers, uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  for (const iovec& piece : sliceBuffers(buffers, offset, out.size())) {
    std::memcpy(out.data() + done, piece.iov_base, piece.iov_len);
    done += piece.iov_len;
  }
  return done;
}

absl::StatusOr<BlockRequestPlan> parseBlockRequest(const DescriptorChain& chain,
                                                   const BlockDiskInfo& disk) {
  blk::RequestHeader header;
  if (gatherBytes(chain.readable, 0, {reinterpret_cast<uint8_t*>(&header), sizeof(header)}) !=
      sizeof(header)) {
    return absl::DataLossError(
        fmt::format("block request {}: {} readable bytes, fewer than the 16-byte header",
                    chain.head, chain.readableBytes()));
  }
  if (chain.writable.empty()) {
    return absl::DataLossError(
        fmt::format("block request {}: no device-writable buffer for the status byte", chain.head));
  }
  BlockRequestPlan plan;
  plan.type = header.type;
  const ChainBuffer& last = chain.writable.back();
  plan.status = last.data + last.length - 1;
  const uint64_t writable_data = chain.writableBytes() - 1;
  const uint64_t readable_data = chain.readableBytes() - sizeof(header);
  const uint64_t capacity_bytes = disk.capacity_sectors * blk::kSectorSize;

  auto in_range = [&](uint64_t sector, uint64_t bytes) {
    return sector <= disk.capacity_sectors && bytes <= capacity_bytes - sector * blk::kSectorSize;
  };
  switch (header.type) {
    case blk::kTypeIn:
    case blk::kTypeOut: {
      const bool in = header.type == blk::kTypeIn;
      plan.data_bytes = in ? writable_data : readable_data;
      plan.offset = header.sector * blk::kSectorSize;
      if (!in && disk.read_only) {
        plan.immediate_status = blk::kStatusIoErr;
      } else if (plan.data_bytes % blk::kSectorSize != 0 ||
                 !in_range(header.sector, plan.data_bytes)) {
        plan.immediate_status = blk::kStatusIoErr;
      } else if (in) {
        plan.data = sliceBuffers(chain.writable, 0, plan.data_bytes);
        plan.used_length = static_cast<uint32_t>(plan.data_bytes + 1);
      } else {
        plan.data = sliceBuffers(chain.readable, sizeof(header), plan.data_bytes);
      }
      return plan;
    }
    case blk::kTypeFlush:
      if (!disk.flush) plan.immediate_status = blk::kStatusUnsupported;
      return plan;
    case blk::kTypeGetId:
      plan.data_bytes = std::min<uint64_t>(writable_data, blk::kIdBytes);
      plan.data = sliceBuffers(chain.writable, 0, plan.data_bytes);
      plan.used_length = static_cast<uint32_t>(plan.data_bytes + 1);
      return plan;
    case blk::kTypeDiscard:
    case blk::kTypeWriteZeroes: {
      const bool discard = header.type == blk::kTypeDiscard;
      if (!(discard ? disk.discard : disk.write_zeroes)) {
        plan.immediate_status = blk::kStatusUnsupported;
        return plan;
      }
      if (disk.read_only) {
        plan.immediate_status = blk::kStatusIoErr;
        return plan;
      }
      // One segment per request (max_discard_seg = max_write_zeroes_seg = 1).
      blk::DiscardSegment segment;
      if (readable_data != sizeof(segment)) {
        plan.immediate_status = blk::kStatusUnsupported;
        return plan;
      }
      gatherBytes(chain.readable, sizeof(header),
                  {reinterpret_cast<uint8_t*>(&segment), sizeof(segment)});
      const uint32_t allowed_flags = discard ? 0 : blk::kWriteZeroesFlagUnmap;
      const uint32_t max_sectors =
          discard ? disk.max_discard_sectors : disk.max_write_zeroes_sectors;
      if ((segment.flags & ~allowed_flags) != 0 || segment.num_sectors > max_sectors) {
        plan.immediate_status = blk::kStatusUnsupported;
        return plan;
      }
      plan.offset = segment.sector * blk::kSectorSize;
      plan.data_bytes = uint64_t{segment.num_sectors} * blk::kSectorSize;
      plan.unmap = (segment.flags & blk::kWriteZeroesFlagUnmap) != 0;
      if (!in_range(segment.sector, plan.data_bytes)) plan.immediate_status = blk::kStatusIoErr;
      return plan;
    }
    default:
      plan.immediate_status = blk::kStatusUnsupported;
      return plan;
  }
}

}  // namespace flotilla::vmm::virtio
