// Test driver (see test_driver.h).
#include "tests/unit/vmm/virtio/test_driver.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "vmm/devices/bus.h"

namespace flotilla::vmm::virtio::testing {
namespace {

template <typename T>
T load(const GuestMemory& memory, uint64_t addr) {
  return *memory.readObject<T>(GuestAddress{addr});
}
template <typename T>
void store(const GuestMemory& memory, uint64_t addr, T value) {
  (void)memory.writeObject(GuestAddress{addr}, value);
}

}  // namespace

TestQueue::TestQueue(const GuestMemory& memory, uint64_t base, uint16_t size) : memory_(memory) {
  layout_.size = size;
  layout_.desc = base;
  layout_.avail = base + descriptorTableBytes(size);
  layout_.used = (layout_.avail + availRingBytes(size) + 4095) & ~uint64_t{4095};
  // Fresh rings, as a driver allocates them: nothing of an earlier queue at this place may
  // look available.
  for (const auto& [address, bytes] : {std::pair{layout_.desc, descriptorTableBytes(size)},
                                       std::pair{layout_.avail, availRingBytes(size)},
                                       std::pair{layout_.used, usedRingBytes(size)}}) {
    auto ring = memory.span(GuestAddress{address}, bytes);
    if (ring.ok()) std::fill(ring->begin(), ring->end(), uint8_t{0});
  }
}

void TestQueue::writeDescriptor(uint16_t index, const Descriptor& desc) {
  store(memory_, layout_.desc + uint64_t{16} * index, desc);
}

uint16_t TestQueue::addChain(const std::vector<TestBuffer>& buffers) {
  const uint16_t head = next_free_;
  for (size_t i = 0; i < buffers.size(); ++i) {
    const uint16_t index = static_cast<uint16_t>((head + i) % layout_.size);
    const bool last = i + 1 == buffers.size();
    Descriptor desc{
        buffers[i].addr, buffers[i].len,
        static_cast<uint16_t>((buffers[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext)),
        static_cast<uint16_t>((index + 1) % layout_.size)};
    writeDescriptor(index, desc);
  }
  next_free_ = static_cast<uint16_t>((head + buffers.size()) % layout_.size);
  return head;
}

uint16_t TestQueue::addIndirectChain(const std::vector<TestBuffer>& buffers, uint64_t table_addr) {
  for (size_t i = 0; i < buffers.size(); ++i) {
    const bool last = i + 1 == buffers.size();
    Descriptor desc{
        buffers[i].addr, buffers[i].len,
        static_cast<uint16_t>((buffers[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext)),
        static_cast<uint16_t>(i + 1)};
    store(memory_, table_addr + 16 * i, desc);
  }
  const uint16_t head = next_free_;
  writeDescriptor(
      head, Descriptor{table_addr, static_cast<uint32_t>(16 * buffers.size()), kDescIndirect, 0});
  next_free_ = static_cast<uint16_t>((head + 1) % layout_.size);
  return head;
}

void TestQueue::makeAvailable(uint16_t head) {
  store(memory_, layout_.avail + 4 + 2 * uint64_t{static_cast<uint16_t>(avail_idx_ % layout_.size)},
        head);
  setAvailIdx(static_cast<uint16_t>(avail_idx_ + 1));
}

void TestQueue::setAvailIdx(uint16_t idx) {
  avail_idx_ = idx;
  store(memory_, layout_.avail + 2, idx);
}

uint16_t TestQueue::usedIdx() const {
  return load<uint16_t>(memory_, layout_.used + 2);
}

std::vector<UsedElement> TestQueue::takeUsed() {
  std::vector<UsedElement> out;
  const uint16_t idx = usedIdx();
  while (last_used_ != idx) {
    out.push_back(load<UsedElement>(
        memory_,
        layout_.used + 4 + 8 * uint64_t{static_cast<uint16_t>(last_used_ % layout_.size)}));
    ++last_used_;
  }
  return out;
}

void TestQueue::setNoInterrupt(bool no_interrupt) {
  store<uint16_t>(memory_, layout_.avail, no_interrupt ? kAvailNoInterrupt : 0);
}

void TestQueue::setUsedEvent(uint16_t value) {
  store(memory_, layout_.avail + 4 + 2 * uint64_t{layout_.size}, value);
}

uint16_t TestQueue::availEvent() const {
  return load<uint16_t>(memory_, layout_.used + 4 + 8 * uint64_t{layout_.size});
}

bool TestQueue::eventIdxWantsNotification(uint16_t old_idx) const {
  // vring_need_event(avail_event, new, old), in 16-bit arithmetic.
  return static_cast<uint16_t>(avail_idx_ - availEvent() - 1) <
         static_cast<uint16_t>(avail_idx_ - old_idx);
}

uint16_t TestQueue::usedFlags() const {
  return load<uint16_t>(memory_, layout_.used);
}

uint32_t TestTransportDriver::read(uint64_t offset) {
  uint8_t data[4];
  transport_.read(offset, data);
  return static_cast<uint32_t>(loadLittleEndian(data));
}

void TestTransportDriver::write(uint64_t offset, uint32_t value) {
  uint8_t data[4];
  storeLittleEndian(value, data);
  transport_.write(offset, data);
}

uint64_t TestTransportDriver::deviceFeatures() {
  write(mmio::kDeviceFeaturesSel, 0);
  uint64_t features = read(mmio::kDeviceFeatures);
  write(mmio::kDeviceFeaturesSel, 1);
  return features | (uint64_t{read(mmio::kDeviceFeatures)} << 32);
}

bool TestTransportDriver::negotiate(uint64_t features) {
  write(mmio::kStatus, 0);
  write(mmio::kStatus, kStatusAcknowledge);
  write(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
  write(mmio::kDriverFeaturesSel, 0);
  write(mmio::kDriverFeatures, static_cast<uint32_t>(features));
  write(mmio::kDriverFeaturesSel, 1);
  write(mmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
  write(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  return (read(mmio::kStatus) & kStatusFeaturesOk) != 0;
}

void TestTransportDriver::setupQueue(uint32_t index, const QueueLayout& layout) {
  write(mmio::kQueueSel, index);
  write(mmio::kQueueNum, layout.size);
  write(mmio::kQueueDescLow, static_cast<uint32_t>(layout.desc));
  write(mmio::kQueueDescHigh, static_cast<uint32_t>(layout.desc >> 32));
  write(mmio::kQueueDriverLow, static_cast<uint32_t>(layout.avail));
  write(mmio::kQueueDriverHigh, static_cast<uint32_t>(layout.avail >> 32));
  write(mmio::kQueueDeviceLow, static_cast<uint32_t>(layout.used));
  write(mmio::kQueueDeviceHigh, static_cast<uint32_t>(layout.used >> 32));
  write(mmio::kQueueReady, 1);
}

void TestTransportDriver::driverOk() {
  write(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
}

std::vector<uint8_t> TestTransportDriver::readConfig(uint64_t offset, size_t bytes) {
  std::vector<uint8_t> out(bytes);
  transport_.read(mmio::kConfig + offset, out);
  return out;
}

bool CountingInterrupt::waitAbove(uint64_t n) const {
  std::pair<const CountingInterrupt*, uint64_t> arg(this, n);
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](std::pair<const CountingInterrupt*, uint64_t>* a) {
                                    return a->first->count_ > a->second;
                                  },
                                  &arg),
                              absl::Seconds(30));
}

}  // namespace flotilla::vmm::virtio::testing
