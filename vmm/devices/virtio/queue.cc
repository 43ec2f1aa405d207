// Virtqueue (see queue.h).
#include "vmm/devices/virtio/queue.h"

#include <atomic>
#include <cstring>

#include "fmt/format.h"

namespace flotilla::vmm::virtio {
namespace {

// The ring indices live in memory the guest writes concurrently: they are read and written
// with atomic accesses; the barriers the spec requires are the acquire/release orders and
// the full fences below.
uint16_t loadAcquire(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}
uint16_t loadRelaxed(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_RELAXED);
}
void storeRelease(uint8_t* p, uint16_t value) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), value, __ATOMIC_RELEASE);
}
void storeRelaxed(uint8_t* p, uint16_t value) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), value, __ATOMIC_RELAXED);
}

absl::Status malformed(std::string message) {
  return absl::DataLossError(std::move(message));
}

// A chain may hold at most this many bytes (the sum of its buffers): more than any device
// request needs, and small enough that no length computation overflows.
constexpr uint64_t kMaxChainBytes = uint64_t{1} << 32;

}  // namespace

uint64_t DescriptorChain::readableBytes() const {
  uint64_t total = 0;
  for (const ChainBuffer& buffer : readable) total += buffer.length;
  return total;
}

uint64_t DescriptorChain::writableBytes() const {
  uint64_t total = 0;
  for (const ChainBuffer& buffer : writable) total += buffer.length;
  return total;
}

Virtqueue::Virtqueue(const GuestMemory& memory, QueueLayout layout, uint64_t features,
                     QueuePosition position, uint8_t* desc, uint8_t* avail, uint8_t* used)
    : memory_(&memory),
      layout_(layout),
      event_idx_(hasFeature(features, kFeatureEventIdx)),
      indirect_(hasFeature(features, kFeatureIndirectDesc)),
      position_(position),
      desc_(desc),
      avail_(avail),
      used_(used),
      writable_by_head_(layout.size) {}

absl::StatusOr<Virtqueue> Virtqueue::activate(const GuestMemory& memory, const QueueLayout& layout,
                                              uint16_t max_size, uint64_t features,
                                              QueuePosition position) {
  const uint16_t size = layout.size;
  if (size == 0 || size > max_size || (size & (size - 1)) != 0) {
    return malformed(
        fmt::format("queue size {} is not a power of two between 1 and {}", size, max_size));
  }
  if (layout.desc % 16 != 0 || layout.avail % 2 != 0 || layout.used % 4 != 0) {
    return malformed(fmt::format(
        "misaligned rings: descriptors at {:#x} (16-byte), driver area at {:#x} (2-byte), device "
        "area at {:#x} (4-byte)",
        layout.desc, layout.avail, layout.used));
  }
  auto ring = [&](uint64_t address, uint64_t bytes, const char* what) -> absl::StatusOr<uint8_t*> {
    auto span = memory.span(GuestAddress{address}, bytes);
    if (!span.ok()) {
      return malformed(
          fmt::format("the {} ({} bytes at {:#x}) is not in guest memory", what, bytes, address));
    }
    return span->data();
  };
  auto desc = ring(layout.desc, descriptorTableBytes(size), "descriptor table");
  if (!desc.ok()) return desc.status();
  auto avail = ring(layout.avail, availRingBytes(size), "driver area");
  if (!avail.ok()) return avail.status();
  auto used = ring(layout.used, usedRingBytes(size), "device area");
  if (!used.ok()) return used.status();
  return Virtqueue(memory, layout, features, position, *desc, *avail, *used);
}

uint16_t Virtqueue::availIdx() const {
  return loadAcquire(avail_ + 2);
}

bool Virtqueue::hasAvailable() const {
  return availIdx() != position_.next_avail;
}

absl::StatusOr<std::optional<DescriptorChain>> Virtqueue::pop() {
  const uint16_t avail_idx = availIdx();
  if (avail_idx == position_.next_avail) return std::nullopt;
  const uint16_t pending = static_cast<uint16_t>(avail_idx - position_.next_avail);
  if (pending > layout_.size) {
    return malformed(
        fmt::format("the driver's available index {} is {} ahead of the device's {}, "
                    "more than the queue size {}",
                    avail_idx, pending, position_.next_avail, layout_.size));
  }
  const size_t slot = position_.next_avail & (layout_.size - 1);
  const uint16_t head = loadRelaxed(avail_ + 4 + 2 * slot);
  auto chain = readChain(head);
  if (!chain.ok()) return chain.status();
  ++position_.next_avail;
  // Marked from now on for writes a device makes without ever returning the chain (a reset
  // in flight), and remembered to be marked again by addUsed(), after the device's writes.
  std::vector<ChainBuffer>& writable = writable_by_head_[chain->head];
  writable.assign(chain->writable.begin(), chain->writable.end());
  for (const ChainBuffer& buffer : writable) memory_->markDeviceWrite(buffer.data, buffer.length);
  return std::optional<DescriptorChain>(std::move(*chain));
}

absl::StatusOr<DescriptorChain> Virtqueue::readChain(uint16_t head) const {
  DescriptorChain chain;
  chain.head = head;
  if (head >= layout_.size) {
    return malformed(fmt::format("chain head {} is beyond the queue size {}", head, layout_.size));
  }
  const uint8_t* table = desc_;
  uint32_t table_size = layout_.size;
  bool in_indirect = false;
  uint32_t index = head;
  uint32_t visited = 0;
  uint64_t total = 0;
  while (true) {
    if (++visited > table_size) {
      return malformed(fmt::format("the chain at head {} has a loop or more than {} descriptors",
                                   head, table_size));
    }
    Descriptor desc;
    std::memcpy(&desc, table + uint64_t{16} * index, sizeof(desc));
    if ((desc.flags & kDescIndirect) != 0) {
      if (!indirect_) {
        return malformed(fmt::format(
            "chain {}: an indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not negotiated",
            head));
      }
      if (in_indirect) {
        return malformed(
            fmt::format("chain {}: an indirect descriptor inside an indirect table", head));
      }
      if ((desc.flags & kDescNext) != 0) {
        return malformed(fmt::format("chain {}: an indirect descriptor with the NEXT flag", head));
      }
      if (desc.len == 0 || desc.len % 16 != 0 || desc.len / 16 > kMaxQueueSize) {
        return malformed(
            fmt::format("chain {}: an indirect table of {} bytes (want a multiple of "
                        "16, at most {} descriptors)",
                        head, desc.len, kMaxQueueSize));
      }
      auto span = memory_->span(GuestAddress{desc.addr}, desc.len);
      if (!span.ok()) {
        return malformed(
            fmt::format("chain {}: the indirect table ({} bytes at {:#x}) is not in "
                        "guest memory",
                        head, desc.len, desc.addr));
      }
      // Direct descriptors may come before it: "The device MUST handle the case of zero or
      // more normal chained descriptors followed by a single descriptor with
      // flags&VIRTQ_DESC_F_INDIRECT" (2.7.5.3.2). The walk stays bounded: at most the queue
      // size in the descriptor table, then at most the indirect table's size.
      table = span->data();
      table_size = desc.len / 16;
      in_indirect = true;
      index = 0;
      visited = 0;
      continue;
    }
    total += desc.len;
    if (total > kMaxChainBytes) {
      return malformed(fmt::format("chain {}: more than {} bytes", head, kMaxChainBytes));
    }
    if (desc.len > 0) {
      auto span = memory_->span(GuestAddress{desc.addr}, desc.len);
      if (!span.ok()) {
        return malformed(
            fmt::format("chain {}: a buffer ({} bytes at {:#x}) is not in guest "
                        "memory",
                        head, desc.len, desc.addr));
      }
      ChainBuffer buffer{span->data(), desc.len};
      if ((desc.flags & kDescWrite) != 0) {
        chain.writable.push_back(buffer);
      } else {
        if (!chain.writable.empty()) {
          return malformed(
              fmt::format("chain {}: a device-readable buffer after a device-writable one", head));
        }
        chain.readable.push_back(buffer);
      }
    }
    if ((desc.flags & kDescNext) == 0) break;
    index = desc.next;
    if (index >= table_size) {
      return malformed(fmt::format("chain {}: next descriptor {} is beyond the table size {}", head,
                                   index, table_size));
    }
  }
  return chain;
}

void Virtqueue::addUsed(uint16_t head, uint32_t written) {
  if (head < writable_by_head_.size()) {
    std::vector<ChainBuffer>& writable = writable_by_head_[head];
    for (const ChainBuffer& buffer : writable) {
      memory_->markDeviceWrite(buffer.data, buffer.length);
    }
    writable.clear();
  }
  const size_t slot = position_.next_used & (layout_.size - 1);
  UsedElement element{head, written};
  uint8_t* used_element = used_ + 4 + sizeof(UsedElement) * slot;
  std::memcpy(used_element, &element, sizeof(element));
  ++position_.next_used;
  storeRelease(used_ + 2, position_.next_used);
  memory_->markDeviceWrite(used_element, sizeof(element));
  memory_->markDeviceWrite(used_ + 2, sizeof(uint16_t));
}

bool Virtqueue::needsInterrupt() {
  // The used index must be visible before the driver's flags or used_event are read.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t old_used = position_.signalled_used;
  const bool old_valid = position_.signalled_used_valid;
  const uint16_t new_used = position_.next_used;
  position_.signalled_used = new_used;
  position_.signalled_used_valid = true;
  if (!event_idx_) return (loadRelaxed(avail_) & kAvailNoInterrupt) == 0;
  if (!old_valid) return true;
  const uint16_t used_event = loadRelaxed(avail_ + 4 + 2 * uint64_t{layout_.size});
  // vring_need_event(): whether used_event lies in (old_used, new_used].
  return static_cast<uint16_t>(new_used - used_event - 1) <
         static_cast<uint16_t>(new_used - old_used);
}

bool Virtqueue::enableNotifications() {
  if (event_idx_) {
    uint8_t* avail_event = used_ + 4 + sizeof(UsedElement) * layout_.size;
    storeRelaxed(avail_event, position_.next_avail);
    memory_->markDeviceWrite(avail_event, sizeof(uint16_t));
  } else {
    storeRelaxed(used_, 0);  // clear VIRTQ_USED_F_NO_NOTIFY
    memory_->markDeviceWrite(used_, sizeof(uint16_t));
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return hasAvailable();
}

}  // namespace flotilla::vmm::virtio
