// Virtqueue: the device side of one split virtqueue (virtio 1.2 section 2.7) in guest memory.
// The transport fills in its size and ring addresses from the driver's register writes;
// activate() checks them against guest memory once, after which pop() walks descriptor
// chains (direct and indirect) and addUsed()/needsInterrupt() return them. Every address and
// length that comes from the guest is checked: a malformed ring or chain yields an error (the
// device then asks the driver for a reset), never an access outside guest memory.
//
// Dirty tracking (live migration): the device's writes into guest memory bypass KVM's dirty
// log, so the queue reports them through GuestMemory::markDeviceWrite(): the device-writable
// buffers of a chain when pop() returns it and again when addUsed() returns it (by then the
// device wrote them, also asynchronously, e.g. io_uring reads: a mark at pop time alone could
// be drained and the page copied before the write lands), and the used ring and avail_event
// as it writes them.
//
// Not thread-safe: the owning device serializes calls.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/devices/virtio/spec.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::virtio {

// One buffer of a descriptor chain, already translated to host memory.
struct ChainBuffer {
  uint8_t* data = nullptr;
  uint32_t length = 0;
};

struct DescriptorChain {
  uint16_t head = 0;
  std::vector<ChainBuffer> readable;  // driver -> device, in order
  std::vector<ChainBuffer> writable;  // device -> driver, in order (all after the readable ones)
  uint64_t readableBytes() const;
  uint64_t writableBytes() const;
};

// Where the driver placed a queue (the transport's QueueNum, QueueDesc, QueueDriver,
// QueueDevice registers).
struct QueueLayout {
  uint16_t size = 0;
  uint64_t desc = 0;
  uint64_t avail = 0;  // the driver area
  uint64_t used = 0;   // the device area
};

// A queue's position, saved in snapshots and migrations.
struct QueuePosition {
  uint16_t next_avail = 0;
  uint16_t next_used = 0;
  uint16_t signalled_used = 0;
  bool signalled_used_valid = false;
};

class Virtqueue {
 public:
  // Checks `layout` (power-of-two size up to `max_size`, alignment, rings inside guest
  // memory) and starts using it from `position` (zero for a fresh queue).
  static absl::StatusOr<Virtqueue> activate(const GuestMemory& memory, const QueueLayout& layout,
                                            uint16_t max_size, uint64_t features,
                                            QueuePosition position = {});

  // The next chain the driver made available, nullopt when there is none, or an error when
  // the ring or the chain is malformed (the queue must not be used again until reset).
  absl::StatusOr<std::optional<DescriptorChain>> pop();
  // Gives back the last `count` chains pop() returned, which the device could not use yet
  // (e.g. receive buffers too small for a frame): pop() returns them again.
  void rewind(uint16_t count) {
    position_.next_avail = static_cast<uint16_t>(position_.next_avail - count);
  }
  // Whether the driver made a chain available that pop() has not returned yet.
  bool hasAvailable() const;
  // Returns chain `head` to the driver with `written` bytes written into its buffers. The
  // device has finished writing them: they are marked for dirty tracking (see above).
  void addUsed(uint16_t head, uint32_t written);
  // After one or more addUsed(): whether the driver wants an interrupt now
  // (VIRTQ_AVAIL_F_NO_INTERRUPT, or the used_event index with VIRTIO_F_EVENT_IDX).
  bool needsInterrupt();
  // Asks the driver to notify the device about chains made available after the ones pop()
  // returned (with VIRTIO_F_EVENT_IDX: avail_event); returns hasAvailable() read after a
  // full barrier, so that the caller re-polls instead of missing a chain made available in
  // between.
  bool enableNotifications();

  const QueueLayout& layout() const { return layout_; }
  QueuePosition position() const { return position_; }
  // Chains popped but not yet returned with addUsed() (requests in flight).
  uint16_t inFlight() const {
    return static_cast<uint16_t>(position_.next_avail - position_.next_used);
  }

 private:
  Virtqueue(const GuestMemory& memory, QueueLayout layout, uint64_t features,
            QueuePosition position, uint8_t* desc, uint8_t* avail, uint8_t* used);
  uint16_t availIdx() const;
  absl::StatusOr<DescriptorChain> readChain(uint16_t head) const;

  const GuestMemory* memory_;
  QueueLayout layout_;
  bool event_idx_;
  bool indirect_;
  QueuePosition position_;
  uint8_t* desc_;
  uint8_t* avail_;
  uint8_t* used_;
  // The device-writable buffers of each chain in flight, by head, to mark them again when
  // addUsed() returns the chain (capacity kept: no allocation per chain once warm).
  std::vector<std::vector<ChainBuffer>> writable_by_head_;
};

}  // namespace flotilla::vmm::virtio
