// Fuzzes virtio-net's use of descriptor chains (vmm/devices/virtio/net_frames.h) on queues
// built from the input (virtqueue_fuzz_input.h: loops, out-of-range addresses, huge lengths,
// wrong directions are the queue's to refuse): every chain the queue hands out is used as a
// receive buffer for a frame of the input's length and as a transmit chain. A received frame
// must land only in the chain's writable buffers, as much of it as they hold, in order; a
// transmitted frame must be exactly the chain's readable bytes, and a chain no longer than a
// virtio-net header must send nothing.
//
// Input: a NetInputHeader, then the queue input.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "tests/fuzz/virtqueue_fuzz_input.h"
#include "vmm/devices/virtio/net_frames.h"

namespace {

using flotilla::vmm::virtio::ChainBuffer;
using flotilla::vmm::virtio::DescriptorChain;
namespace fuzz = flotilla::vmm::virtio::fuzz;
namespace net = flotilla::vmm::virtio::net;

struct NetInputHeader {
  uint32_t frame_length = 0;  // the received frame, capped at kMaxFrame
  uint8_t fill = 0;           // its bytes
  uint8_t reserved[3] = {};
};

constexpr size_t kMaxFrame = sizeof(net::Header) + 65535 + 14 + 4;

// Whether any two of `buffers` share a byte (a driver may hand out such chains; then a later
// buffer's bytes overwrite an earlier one's and only the lengths can be checked).
bool overlapping(const std::vector<ChainBuffer>& buffers) {
  for (size_t i = 0; i < buffers.size(); ++i) {
    for (size_t j = i + 1; j < buffers.size(); ++j) {
      const uint8_t* a = buffers[i].data;
      const uint8_t* b = buffers[j].data;
      if (a < b + buffers[j].length && b < a + buffers[i].length) return true;
    }
  }
  return false;
}

std::optional<uint32_t> useChain(const DescriptorChain& chain, const NetInputHeader& input,
                                 fuzz::GuestScratch& scratch) {
  // Receive: the frame goes into the writable buffers, in order, as much as fits.
  const size_t length = std::min<size_t>(input.frame_length, kMaxFrame);
  std::vector<uint8_t> frame(length, input.fill);
  for (size_t i = 0; i < frame.size(); i += 97) frame[i] = static_cast<uint8_t>(i);
  const size_t written = flotilla::vmm::virtio::scatterFrame(chain, frame);
  VIRTIO_FUZZ_CHECK(written == std::min<uint64_t>(length, chain.writableBytes()));
  const bool check_bytes = chain.writable.size() <= 64 && !overlapping(chain.writable);
  size_t offset = 0;
  for (const ChainBuffer& buffer : chain.writable) {
    if (offset == written) break;
    const size_t take = std::min<size_t>(buffer.length, written - offset);
    VIRTIO_FUZZ_CHECK(fuzz::insideGuestMemory(buffer.data, take));
    VIRTIO_FUZZ_CHECK(!check_bytes || std::memcmp(buffer.data, frame.data() + offset, take) == 0);
    scratch.note(buffer.data, take);
    offset += take;
  }
  // Transmit: exactly the readable bytes, or nothing for a chain no longer than a header.
  const std::vector<iovec> iov = flotilla::vmm::virtio::transmitBuffers(chain);
  const uint64_t readable = chain.readableBytes();
  if (readable <= sizeof(net::Header)) {
    VIRTIO_FUZZ_CHECK(iov.empty());
  } else {
    uint64_t total = 0;
    for (const iovec& piece : iov) {
      VIRTIO_FUZZ_CHECK(fuzz::insideGuestMemory(piece.iov_base, piece.iov_len));
      total += piece.iov_len;
    }
    VIRTIO_FUZZ_CHECK(total == readable);
  }
  return static_cast<uint32_t>(written);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::GuestScratch scratch;
  fuzz::ByteReader reader({data, size});
  const auto input = reader.take<NetInputHeader>();
  const fuzz::QueueInput queue = fuzz::decodeQueueInput(reader, scratch);
  fuzz::runQueue(queue, scratch,
                 [&](const DescriptorChain& chain) { return useChain(chain, input, scratch); });
  return 0;
}
