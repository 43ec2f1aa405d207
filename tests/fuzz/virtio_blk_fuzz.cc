// libFuzzer target for virtio-blk request parsing (vmm/devices/virtio/blk_request.h) on chains
// popped from a fuzzed virtqueue: an input is a DiskInputHeader (the disk and its negotiated
// features) followed by a queue input (virtqueue_fuzz_input.h). Each chain goes through
// sliceBuffers/gatherBytes and parseBlockRequest, whose plan is checked against the request
// as read from the chain: a request the device hands to its backend stays inside the disk and
// its data iovecs are exactly the request's data bytes, in guest memory; the status byte is
// the chain's last writable byte; the used length never exceeds the writable bytes.
//
// The seed corpus (corpus/virtio_blk/) is written by this target; after changing the format,
//   FLOTILLA_WRITE_SEED_CORPUS=tests/fuzz/corpus build/fuzz/bin/virtio_blk_fuzz
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/fuzz/virtqueue_fuzz_input.h"
#include "vmm/devices/virtio/blk_request.h"

namespace {

using flotilla::vmm::virtio::BlockDiskInfo;
using flotilla::vmm::virtio::BlockRequestPlan;
using flotilla::vmm::virtio::ChainBuffer;
using flotilla::vmm::virtio::Descriptor;
using flotilla::vmm::virtio::DescriptorChain;
using flotilla::vmm::virtio::kDescIndirect;
using flotilla::vmm::virtio::kDescNext;
using flotilla::vmm::virtio::kDescWrite;
namespace blk = flotilla::vmm::virtio::blk;
namespace fuzz = flotilla::vmm::virtio::fuzz;

#pragma pack(push, 1)
struct DiskInputHeader {
  // The backend's size: the capacity is size_bytes / 512, as VirtioBlock computes it.
  uint64_t size_bytes = 0;
  uint32_t max_discard_sectors = 0;
  uint32_t max_write_zeroes_sectors = 0;
  uint8_t flags = 0;  // kDisk* bits
  uint8_t reserved[3] = {};
  // The range each chain's buffers are sliced and gathered at.
  uint32_t slice_offset = 0;
  uint32_t slice_length = 0;
};
#pragma pack(pop)
static_assert(sizeof(DiskInputHeader) == 28);

constexpr uint8_t kDiskReadOnly = 1;
constexpr uint8_t kDiskFlush = 2;
constexpr uint8_t kDiskDiscard = 4;
constexpr uint8_t kDiskWriteZeroes = 8;

using u128 = unsigned __int128;

// The host address of byte `position` of the stream `buffers` make, or null past its end.
uint8_t* streamByte(std::span<const ChainBuffer> buffers, uint64_t position) {
  for (const ChainBuffer& buffer : buffers) {
    if (position < buffer.length) return buffer.data + position;
    position -= buffer.length;
  }
  return nullptr;
}

uint64_t streamBytes(std::span<const ChainBuffer> buffers) {
  uint64_t total = 0;
  for (const ChainBuffer& buffer : buffers) total += buffer.length;
  return total;
}

// `pieces` must be bytes [offset, offset + length) of the stream, in order, each piece inside
// one buffer (hence in guest memory).
void checkPieces(const std::vector<iovec>& pieces, std::span<const ChainBuffer> buffers,
                 uint64_t offset, uint64_t length) {
  uint64_t done = 0;
  for (const iovec& piece : pieces) {
    VIRTIO_FUZZ_CHECK(piece.iov_len > 0);
    auto* base = static_cast<uint8_t*>(piece.iov_base);
    VIRTIO_FUZZ_CHECK(base == streamByte(buffers, offset + done));
    // Contiguous from first to last byte: the piece does not run past its buffer.
    VIRTIO_FUZZ_CHECK(streamByte(buffers, offset + done + piece.iov_len - 1) ==
                      base + piece.iov_len - 1);
    VIRTIO_FUZZ_CHECK(fuzz::insideGuestMemory(base, piece.iov_len));
    done += piece.iov_len;
  }
  VIRTIO_FUZZ_CHECK(done == length);
}

void checkSlices(std::span<const ChainBuffer> buffers, uint64_t offset, uint64_t length) {
  const uint64_t total = streamBytes(buffers);
  const uint64_t available = offset >= total ? 0 : total - offset;
  const uint64_t expected = std::min(length, available);
  checkPieces(flotilla::vmm::virtio::sliceBuffers(buffers, offset, length), buffers, offset,
              expected);
  // gatherBytes copies the same bytes; a small window is enough.
  uint8_t out[64];
  const size_t window = static_cast<size_t>(std::min<uint64_t>(length, sizeof(out)));
  const size_t copied = flotilla::vmm::virtio::gatherBytes(buffers, offset, {out, window});
  VIRTIO_FUZZ_CHECK(copied == std::min<uint64_t>(window, available));
  for (size_t i = 0; i < copied; ++i) VIRTIO_FUZZ_CHECK(out[i] == *streamByte(buffers, offset + i));
}

template <typename T>
std::optional<T> streamObject(std::span<const ChainBuffer> buffers, uint64_t offset) {
  T value;
  auto* raw = reinterpret_cast<uint8_t*>(&value);
  for (size_t i = 0; i < sizeof(T); ++i) {
    const uint8_t* byte = streamByte(buffers, offset + i);
    if (byte == nullptr) return std::nullopt;
    raw[i] = *byte;
  }
  return value;
}

// The plan parseBlockRequest made for `chain`, against virtio 1.2 section 5.2.6 and the
// limits in `disk`. Returns the used length the device reports.
uint32_t checkPlan(const DescriptorChain& chain, const BlockDiskInfo& disk,
                   const BlockRequestPlan& plan, const blk::RequestHeader& header) {
  const uint64_t readable = chain.readableBytes();
  const uint64_t writable = chain.writableBytes();
  const ChainBuffer& last = chain.writable.back();
  VIRTIO_FUZZ_CHECK(plan.type == header.type);
  VIRTIO_FUZZ_CHECK(plan.status == last.data + last.length - 1);
  VIRTIO_FUZZ_CHECK(fuzz::insideGuestMemory(plan.status, 1));
  VIRTIO_FUZZ_CHECK(plan.used_length >= 1 && plan.used_length <= writable);
  VIRTIO_FUZZ_CHECK(!plan.immediate_status.has_value() ||
                    *plan.immediate_status == blk::kStatusIoErr ||
                    *plan.immediate_status == blk::kStatusUnsupported);
  const u128 capacity_bytes = u128{disk.capacity_sectors} * blk::kSectorSize;
  auto in_disk = [&](uint64_t sector, uint64_t bytes) {
    return u128{sector} * blk::kSectorSize + bytes <= capacity_bytes;
  };
  std::optional<uint8_t> expected_status;
  switch (header.type) {
    case blk::kTypeIn:
    case blk::kTypeOut: {
      const bool in = header.type == blk::kTypeIn;
      const uint64_t bytes = in ? writable - 1 : readable - sizeof(header);
      VIRTIO_FUZZ_CHECK(plan.data_bytes == bytes);
      if ((!in && disk.read_only) || bytes % blk::kSectorSize != 0 ||
          !in_disk(header.sector, bytes)) {
        expected_status = blk::kStatusIoErr;
        VIRTIO_FUZZ_CHECK(plan.data.empty() && plan.used_length == 1);
        break;
      }
      VIRTIO_FUZZ_CHECK(u128{plan.offset} == u128{header.sector} * blk::kSectorSize);
      VIRTIO_FUZZ_CHECK(u128{plan.offset} + plan.data_bytes <= capacity_bytes);
      if (in) {
        checkPieces(plan.data, chain.writable, 0, bytes);
        VIRTIO_FUZZ_CHECK(plan.used_length == bytes + 1);
      } else {
        checkPieces(plan.data, chain.readable, sizeof(header), bytes);
        VIRTIO_FUZZ_CHECK(plan.used_length == 1);
      }
      break;
    }
    case blk::kTypeFlush:
      if (!disk.flush) expected_status = blk::kStatusUnsupported;
      VIRTIO_FUZZ_CHECK(plan.data.empty() && plan.used_length == 1);
      break;
    case blk::kTypeGetId: {
      const uint64_t bytes = std::min<uint64_t>(writable - 1, blk::kIdBytes);
      VIRTIO_FUZZ_CHECK(plan.data_bytes == bytes && plan.used_length == bytes + 1);
      checkPieces(plan.data, chain.writable, 0, bytes);
      break;
    }
    case blk::kTypeDiscard:
    case blk::kTypeWriteZeroes: {
      const bool discard = header.type == blk::kTypeDiscard;
      VIRTIO_FUZZ_CHECK(plan.data.empty() && plan.used_length == 1);
      if (!(discard ? disk.discard : disk.write_zeroes)) {
        expected_status = blk::kStatusUnsupported;
        break;
      }
      if (disk.read_only) {
        expected_status = blk::kStatusIoErr;
        break;
      }
      // Exactly one segment (max_discard_seg = max_write_zeroes_seg = 1).
      if (readable != sizeof(header) + sizeof(blk::DiscardSegment)) {
        expected_status = blk::kStatusUnsupported;
        break;
      }
      const auto segment = streamObject<blk::DiscardSegment>(chain.readable, sizeof(header));
      VIRTIO_FUZZ_CHECK(segment.has_value());
      const uint32_t allowed_flags = discard ? 0 : blk::kWriteZeroesFlagUnmap;
      const uint32_t max_sectors =
          discard ? disk.max_discard_sectors : disk.max_write_zeroes_sectors;
      if ((segment->flags & ~allowed_flags) != 0 || segment->num_sectors > max_sectors) {
        expected_status = blk::kStatusUnsupported;
        break;
      }
      const uint64_t bytes = uint64_t{segment->num_sectors} * blk::kSectorSize;
      VIRTIO_FUZZ_CHECK(plan.data_bytes == bytes);
      VIRTIO_FUZZ_CHECK(plan.unmap == ((segment->flags & blk::kWriteZeroesFlagUnmap) != 0));
      if (!in_disk(segment->sector, bytes)) {
        expected_status = blk::kStatusIoErr;
        break;
      }
      VIRTIO_FUZZ_CHECK(u128{plan.offset} == u128{segment->sector} * blk::kSectorSize);
      break;
    }
    default:
      expected_status = blk::kStatusUnsupported;
      VIRTIO_FUZZ_CHECK(plan.data.empty() && plan.used_length == 1);
      break;
  }
  VIRTIO_FUZZ_CHECK(plan.immediate_status == expected_status);
  // What VirtioBlock reports: the used length on success, the status byte alone otherwise.
  return plan.immediate_status.has_value() ? 1 : plan.used_length;
}

std::optional<uint32_t> handleRequest(const DescriptorChain& chain, const DiskInputHeader& input,
                                      const BlockDiskInfo& disk, fuzz::GuestScratch& scratch) {
  checkSlices(chain.readable, input.slice_offset, input.slice_length);
  checkSlices(chain.writable, input.slice_offset, input.slice_length);

  auto plan = flotilla::vmm::virtio::parseBlockRequest(chain, disk);
  const auto header = streamObject<blk::RequestHeader>(chain.readable, 0);
  VIRTIO_FUZZ_CHECK(plan.ok() == (header.has_value() && !chain.writable.empty()));
  if (!plan.ok()) {
    VIRTIO_FUZZ_CHECK(absl::IsDataLoss(plan.status()) && !plan.status().message().empty());
    return std::nullopt;  // the device asks for a reset
  }
  const uint32_t used_length = checkPlan(chain, disk, *plan, *header);
  // Complete it as the device would: the status byte is the only guest memory it writes here.
  *plan->status = plan->immediate_status.value_or(blk::kStatusOk);
  scratch.note(plan->status, 1);
  return used_length;
}

// --- Seeds: requests on a 1 MiB disk, in a queue of 16 at the seed addresses below. ---

constexpr uint32_t kHeaderAt = 0x10000;   // request headers
constexpr uint32_t kDataAt = 0x20000;     // data buffers
constexpr uint32_t kStatusAt = 0x30000;   // status bytes
constexpr uint32_t kIndirectAt = 0x8000;  // indirect tables

std::vector<uint8_t> diskPrefix(uint8_t flags) {
  DiskInputHeader disk;
  disk.size_bytes = 1 << 20;
  disk.max_discard_sectors = 1024;
  disk.max_write_zeroes_sectors = 1024;
  disk.flags = flags;
  disk.slice_offset = 10;
  disk.slice_length = 600;
  const auto* raw = reinterpret_cast<const uint8_t*>(&disk);
  return {raw, raw + sizeof(disk)};
}

fuzz::QueueInputBuilder requestQueue(uint8_t features = 0) {
  fuzz::QueueInputHeader header;
  header.features = features;
  header.size = 4;  // 16 descriptors
  header.pops = 16;
  header.desc = 0x1000;
  header.avail = 0x3000;
  header.used = 0x4000;
  return fuzz::QueueInputBuilder(header);
}

// A request as the Linux driver lays it out: header, data, status, from descriptor 0.
fuzz::QueueInputBuilder request(uint32_t type, uint64_t sector, uint32_t data_bytes,
                                bool data_writable, std::vector<uint8_t> payload = {}) {
  fuzz::QueueInputBuilder queue = requestQueue();
  queue.writeObject(fuzz::kBaseAbsolute, kHeaderAt, blk::RequestHeader{type, 0, sector});
  if (!payload.empty()) queue.write(fuzz::kBaseAbsolute, kDataAt, payload);
  const uint16_t data_flags = data_writable ? kDescWrite : 0;
  if (data_bytes > 0) {
    queue.descriptor(0, Descriptor{kHeaderAt, 16, kDescNext, 1})
        .descriptor(
            1, Descriptor{kDataAt, data_bytes, static_cast<uint16_t>(data_flags | kDescNext), 2})
        .descriptor(2, Descriptor{kStatusAt, 1, kDescWrite, 0});
  } else {
    queue.descriptor(0, Descriptor{kHeaderAt, 16, kDescNext, 1})
        .descriptor(1, Descriptor{kStatusAt, 1, kDescWrite, 0});
  }
  return queue.avail(0, 1, 0, {0});
}

std::vector<uint8_t> segmentBytes(uint64_t sector, uint32_t sectors, uint32_t flags) {
  const blk::DiscardSegment segment{sector, sectors, flags};
  const auto* raw = reinterpret_cast<const uint8_t*>(&segment);
  return {raw, raw + sizeof(segment)};
}

std::vector<std::pair<std::string, std::vector<uint8_t>>> seeds() {
  const uint8_t all = kDiskFlush | kDiskDiscard | kDiskWriteZeroes;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
  out.emplace_back("read_4k", request(blk::kTypeIn, 8, 4096, true).bytes(diskPrefix(all)));
  out.emplace_back("write_1k",
                   request(blk::kTypeOut, 0, 1024, false, std::vector<uint8_t>(1024, 0xab))
                       .bytes(diskPrefix(all)));
  out.emplace_back("write_read_only",
                   request(blk::kTypeOut, 0, 512, false).bytes(diskPrefix(all | kDiskReadOnly)));
  out.emplace_back("read_past_end", request(blk::kTypeIn, 2047, 1024, true).bytes(diskPrefix(all)));
  out.emplace_back("flush", request(blk::kTypeFlush, 0, 0, false).bytes(diskPrefix(all)));
  out.emplace_back("get_id", request(blk::kTypeGetId, 0, 20, true).bytes(diskPrefix(all)));
  out.emplace_back(
      "discard",
      request(blk::kTypeDiscard, 0, 16, false, segmentBytes(16, 8, 0)).bytes(diskPrefix(all)));
  out.emplace_back("write_zeroes_unmap", request(blk::kTypeWriteZeroes, 0, 16, false,
                                                 segmentBytes(100, 28, blk::kWriteZeroesFlagUnmap))
                                             .bytes(diskPrefix(all)));

  // A read through an indirect table, its data split over two buffers.
  fuzz::QueueInputBuilder indirect = requestQueue(fuzz::kInputIndirect);
  indirect.writeObject(fuzz::kBaseAbsolute, kHeaderAt, blk::RequestHeader{blk::kTypeIn, 0, 4})
      .descriptor(0, Descriptor{kIndirectAt, 64, kDescIndirect, 0})
      .indirectTable(kIndirectAt, {Descriptor{kHeaderAt, 16, kDescNext, 1},
                                   Descriptor{kDataAt, 1024, kDescWrite | kDescNext, 2},
                                   Descriptor{kDataAt + 0x1000, 512, kDescWrite | kDescNext, 3},
                                   Descriptor{kStatusAt, 1, kDescWrite, 0}})
      .avail(0, 1, 0, {0});
  out.emplace_back("indirect_read", indirect.bytes(diskPrefix(all)));

  // A write whose header is a direct descriptor and whose data and status are in an
  // indirect table after it.
  fuzz::QueueInputBuilder mixed = requestQueue(fuzz::kInputIndirect);
  mixed.writeObject(fuzz::kBaseAbsolute, kHeaderAt, blk::RequestHeader{blk::kTypeOut, 0, 6})
      .descriptor(0, Descriptor{kHeaderAt, 16, kDescNext, 1})
      .descriptor(1, Descriptor{kIndirectAt, 32, kDescIndirect, 0})
      .indirectTable(kIndirectAt, {Descriptor{kDataAt, 2048, kDescNext, 1},
                                   Descriptor{kStatusAt, 1, kDescWrite, 0}})
      .avail(0, 1, 0, {0});
  out.emplace_back("write_header_then_indirect", mixed.bytes(diskPrefix(all)));

  // The largest read a chain can carry: 4 GiB in all, 16 bytes of header, 4 GiB - 512 bytes
  // of data (buffers of all of RAM, overlapping), the status byte, on an 8 GiB disk.
  constexpr uint32_t kAllRam = static_cast<uint32_t>(fuzz::kRamBytes);
  std::vector<Descriptor> chain = {Descriptor{kHeaderAt, 16, kDescNext, 1}};
  for (uint16_t i = 1; i < 128; ++i) {
    chain.push_back(Descriptor{0, kAllRam, kDescWrite | kDescNext, static_cast<uint16_t>(i + 1)});
  }
  chain.push_back(Descriptor{0, kAllRam - 511, kDescWrite, 0});
  fuzz::QueueInputHeader big_header;
  big_header.size = 8;  // 256 descriptors
  big_header.pops = 4;
  big_header.desc = 0x1000;
  big_header.avail = 0x3000;
  big_header.used = 0x4000;
  fuzz::QueueInputBuilder big(big_header);
  big.writeObject(fuzz::kBaseAbsolute, kHeaderAt, blk::RequestHeader{blk::kTypeIn, 0, 0})
      .descriptors(0, chain)
      .avail(0, 1, 0, {0});
  std::vector<uint8_t> big_disk = diskPrefix(all);
  const uint64_t eight_gib = uint64_t{8} << 30;
  std::memcpy(big_disk.data() + offsetof(DiskInputHeader, size_bytes), &eight_gib, 8);
  out.emplace_back("read_4gib_chain", big.bytes(big_disk));

  // Header and status in one buffer each direction, sharing a page (as some drivers do).
  fuzz::QueueInputBuilder packed = requestQueue();
  packed.writeObject(fuzz::kBaseAbsolute, kHeaderAt, blk::RequestHeader{blk::kTypeOut, 0, 2})
      .descriptor(0, Descriptor{kHeaderAt, 16 + 512, kDescNext, 1})
      .descriptor(1, Descriptor{kHeaderAt + 16 + 512, 1, kDescWrite, 0})
      .avail(0, 1, 0, {0});
  out.emplace_back("write_header_with_data", packed.bytes(diskPrefix(all)));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  fuzz::writeSeedsIfAsked("virtio_blk", seeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::GuestScratch scratch;
  fuzz::ByteReader reader({data, size});
  const auto disk_input = reader.take<DiskInputHeader>();
  BlockDiskInfo disk;
  disk.capacity_sectors = disk_input.size_bytes / blk::kSectorSize;
  disk.read_only = (disk_input.flags & kDiskReadOnly) != 0;
  disk.flush = (disk_input.flags & kDiskFlush) != 0;
  disk.discard = (disk_input.flags & kDiskDiscard) != 0;
  disk.write_zeroes = (disk_input.flags & kDiskWriteZeroes) != 0;
  disk.max_discard_sectors = disk_input.max_discard_sectors;
  disk.max_write_zeroes_sectors = disk_input.max_write_zeroes_sectors;

  const fuzz::QueueInput input = fuzz::decodeQueueInput(reader, scratch);
  fuzz::runQueue(input, scratch, [&](const DescriptorChain& chain) {
    return handleRequest(chain, disk_input, disk, scratch);
  });
  return 0;
}
