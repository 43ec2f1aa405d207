// virtio-net frames and descriptor chains (see net_frames.h).
#include "vmm/devices/virtio/net_frames.h"

#include <algorithm>
#include <cstring>

#include "vmm/devices/virtio/blk_request.h"
#include "vmm/devices/virtio/spec.h"

namespace flotilla::vmm::virtio {

size_t scatterFrame(const DescriptorChain& chain, std::span<const uint8_t> frame) {
  size_t done = 0;
  for (const ChainBuffer& buffer : chain.writable) {
    if (done == frame.size()) break;
    const size_t take = std::min<size_t>(buffer.length, frame.size() - done);
    std::memcpy(buffer.data, frame.data() + done, take);
    done += take;
  }
  return done;
}

std::vector<iovec> transmitBuffers(const DescriptorChain& chain) {
  const uint64_t bytes = chain.readableBytes();
  if (bytes <= sizeof(net::Header)) return {};
  return sliceBuffers(chain.readable, 0, bytes);
}

}  // namespace flotilla::vmm::virtio
