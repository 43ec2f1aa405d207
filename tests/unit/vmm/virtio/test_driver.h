// A virtio driver for unit tests: lays out split virtqueues in a GuestMemory (no KVM), makes
// descriptor chains available, reads used elements back, and programs a virtio-mmio
// transport through its registers as Linux's virtio_mmio driver does.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/devices/virtio/device.h"
#include "vmm/devices/virtio/spec.h"
#include "vmm/devices/virtio/transport.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::virtio::testing {

struct TestBuffer {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

// One split virtqueue in guest memory: descriptors at `base`, then the driver and device areas.
class TestQueue {
 public:
  TestQueue(const GuestMemory& memory, uint64_t base, uint16_t size);

  QueueLayout layout() const { return layout_; }
  uint16_t size() const { return layout_.size; }

  // Writes a chain of direct descriptors starting at free slots; returns its head. With
  // `indirect`, writes the buffers into an indirect table at `table_addr` and one descriptor
  // pointing at it.
  uint16_t addChain(const std::vector<TestBuffer>& buffers);
  uint16_t addIndirectChain(const std::vector<TestBuffer>& buffers, uint64_t table_addr);
  // Raw access for malformed queues.
  void writeDescriptor(uint16_t index, const Descriptor& desc);
  // Puts `head` in the available ring (and bumps the index unless `publish` is false).
  void makeAvailable(uint16_t head);
  void setAvailIdx(uint16_t idx);
  uint16_t availIdx() const { return avail_idx_; }

  // Used elements the device returned since the last call.
  std::vector<UsedElement> takeUsed();
  uint16_t usedIdx() const;
  void setNoInterrupt(bool no_interrupt);
  void setUsedEvent(uint16_t value);
  uint16_t availEvent() const;
  // Whether a driver that made chains available since its avail index was `old_idx` must
  // notify the device, with VIRTIO_F_EVENT_IDX (2.7.10): when avail_event lies in
  // [old_idx, availIdx()).
  bool eventIdxWantsNotification(uint16_t old_idx) const;
  uint16_t usedFlags() const;

 private:
  const GuestMemory& memory_;
  QueueLayout layout_;
  uint16_t next_free_ = 0;
  uint16_t avail_idx_ = 0;
  uint16_t last_used_ = 0;
};

// Drives a VirtioMmio transport through its registers.
class TestTransportDriver {
 public:
  explicit TestTransportDriver(VirtioMmio& transport) : transport_(transport) {}
  uint32_t read(uint64_t offset);
  void write(uint64_t offset, uint32_t value);
  uint64_t deviceFeatures();
  // ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns whether the device kept FEATURES_OK.
  bool negotiate(uint64_t features);
  void setupQueue(uint32_t index, const QueueLayout& layout);
  void driverOk();
  void notify(uint32_t queue) { write(mmio::kQueueNotify, queue); }
  uint32_t status() { return read(mmio::kStatus); }
  std::vector<uint8_t> readConfig(uint64_t offset, size_t bytes);

 private:
  VirtioMmio& transport_;
};

// Counts interrupts; tests wait for a count.
class CountingInterrupt final : public InterruptTrigger {
 public:
  void trigger() override {
    absl::MutexLock lock(&mu_);
    ++count_;
  }
  uint64_t count() const {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  // Waits (bounded by a generous timeout, not a performance threshold) until count() > n.
  bool waitAbove(uint64_t n) const;

 private:
  mutable absl::Mutex mu_;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::vmm::virtio::testing
