// How virtio-net frames meet descriptor chains (virtio 1.2 section 5.1.6): a received frame
// (virtio-net header first) copied into a chain's device-writable buffers, and a transmitted
// frame read from its driver-readable buffers. Pure functions over chains the virtqueue
// already checked, in the library the fuzz tree builds (tests/fuzz/virtio_net_fuzz.cc).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vmm/devices/virtio/queue.h"

namespace flotilla::vmm::virtio {

// Copies `frame` into the device-writable buffers of `chain`, in order; returns how many
// bytes fit (all of them when the chain is large enough).
size_t scatterFrame(const DescriptorChain& chain, std::span<const uint8_t> frame);

// The driver-readable buffers of a transmit chain as iovecs for writev (the virtio-net header
// and the frame after it); empty when the chain holds no more than a header (nothing to send:
// the device counts a transmit error and returns the chain).
std::vector<iovec> transmitBuffers(const DescriptorChain& chain);

}  // namespace flotilla::vmm::virtio
