// Virtqueue against guest memory without KVM: chains (direct, indirect), malformed rings and
// chains, wrap-around, EVENT_IDX and interrupt suppression, dirty tracking of what the device
// writes.
#include "vmm/devices/virtio/queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/vmm/virtio/test_driver.h"

namespace flotilla::vmm::virtio {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TestBuffer;
using testing::TestQueue;

constexpr uint64_t kQueueBase = 0x10000;
constexpr uint64_t kData = 0x100000;
const uint64_t kBothFeatures = featureBit(kFeatureIndirectDesc) | featureBit(kFeatureEventIdx);

class VirtqueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = GuestMemory::create(uint64_t{16} << 20, {});
    ASSERT_TRUE(memory.ok()) << memory.status();
    memory_.emplace(std::move(*memory));
    driver_.emplace(*memory_, kQueueBase, 8);
  }
  Virtqueue activate(uint64_t features = kBothFeatures, QueuePosition position = {}) {
    auto queue = Virtqueue::activate(*memory_, driver_->layout(), 256, features, position);
    EXPECT_TRUE(queue.ok()) << queue.status();
    return std::move(*queue);
  }
  uint8_t* host(uint64_t addr) { return memory_->span(GuestAddress{addr}, 1)->data(); }
  // The error pop() returns for the chain the driver just made available.
  std::string popError(Virtqueue& queue) {
    auto chain = queue.pop();
    EXPECT_FALSE(chain.ok());
    return chain.ok() ? "" : std::string(chain.status().message());
  }

  std::optional<GuestMemory> memory_;
  std::optional<TestQueue> driver_;
};

TEST_F(VirtqueueTest, RejectsBadLayouts) {
  const uint64_t ram = memory_->ramBytes();
  struct Case {
    QueueLayout layout;
    const char* message;
  } cases[] = {
      {{0, kQueueBase, kQueueBase + 0x1000, kQueueBase + 0x2000}, "power of two"},
      {{6, kQueueBase, kQueueBase + 0x1000, kQueueBase + 0x2000}, "power of two"},
      {{512, kQueueBase, kQueueBase + 0x2000, kQueueBase + 0x4000}, "power of two"},
      {{8, kQueueBase + 8, kQueueBase + 0x1000, kQueueBase + 0x2000}, "misaligned"},
      {{8, kQueueBase, kQueueBase + 0x1001, kQueueBase + 0x2000}, "misaligned"},
      {{8, kQueueBase, kQueueBase + 0x1000, kQueueBase + 0x2002}, "misaligned"},
      {{8, ram - 64, kQueueBase + 0x1000, kQueueBase + 0x2000}, "descriptor table"},
      {{8, kQueueBase, ram - 2, kQueueBase + 0x2000}, "driver area"},
      {{8, kQueueBase, kQueueBase + 0x1000, uint64_t{1} << 40}, "device area"},
  };
  for (const Case& c : cases) {
    auto queue = Virtqueue::activate(*memory_, c.layout, 256, 0);
    ASSERT_FALSE(queue.ok()) << c.message;
    EXPECT_THAT(std::string(queue.status().message()), HasSubstr(c.message));
  }
}

TEST_F(VirtqueueTest, PopsDirectChainsInOrder) {
  Virtqueue queue = activate();
  EXPECT_FALSE(queue.hasAvailable());
  const uint16_t head = driver_->addChain(
      {{kData, 16, false}, {kData + 0x1000, 512, false}, {kData + 0x2000, 1, true}});
  driver_->makeAvailable(head);
  ASSERT_TRUE(queue.hasAvailable());
  auto chain = queue.pop();
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_TRUE(chain->has_value());
  EXPECT_EQ((*chain)->head, head);
  ASSERT_EQ((*chain)->readable.size(), 2u);
  ASSERT_EQ((*chain)->writable.size(), 1u);
  EXPECT_EQ((*chain)->readable[0].data, host(kData));
  EXPECT_EQ((*chain)->readable[1].length, 512u);
  EXPECT_EQ((*chain)->writable[0].data, host(kData + 0x2000));
  EXPECT_EQ((*chain)->readableBytes(), 528u);
  EXPECT_EQ(queue.inFlight(), 1);
  auto none = queue.pop();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  queue.addUsed(head, 1);
  EXPECT_EQ(queue.inFlight(), 0);
  auto used = driver_->takeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].id, head);
  EXPECT_EQ(used[0].len, 1u);
}

TEST_F(VirtqueueTest, PopsIndirectChains) {
  Virtqueue queue = activate();
  const uint16_t head = driver_->addIndirectChain(
      {{kData, 16, false}, {kData + 0x1000, 4096, true}, {kData + 0x3000, 1, true}},
      kData + 0x8000);
  driver_->makeAvailable(head);
  auto chain = queue.pop();
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_TRUE(chain->has_value());
  EXPECT_EQ((*chain)->head, head);
  EXPECT_EQ((*chain)->readable.size(), 1u);
  EXPECT_EQ((*chain)->writable.size(), 2u);
  EXPECT_EQ((*chain)->writableBytes(), 4097u);
}

// Virtio 1.2 2.7.5.3.2: normal descriptors followed by one indirect descriptor is a valid chain.
TEST_F(VirtqueueTest, PopsDirectDescriptorsFollowedByAnIndirectTable) {
  Virtqueue queue = activate();
  (void)memory_->writeObject(GuestAddress{kData + 0x8000},
                             Descriptor{kData + 0x1000, 512, kDescWrite, 0});
  driver_->writeDescriptor(0, {kData, 16, kDescNext, 1});
  driver_->writeDescriptor(1, {kData + 0x8000, 16, kDescIndirect, 0});
  driver_->makeAvailable(0);
  auto chain = queue.pop();
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_TRUE(chain->has_value());
  EXPECT_EQ((*chain)->readableBytes(), 16u);
  EXPECT_EQ((*chain)->writableBytes(), 512u);
}

TEST_F(VirtqueueTest, RefusesIndirectWithoutTheFeature) {
  Virtqueue queue = activate(featureBit(kFeatureEventIdx));
  driver_->makeAvailable(driver_->addIndirectChain({{kData, 16, false}}, kData + 0x8000));
  EXPECT_THAT(popError(queue), HasSubstr("VIRTIO_F_INDIRECT_DESC was not negotiated"));
}

TEST_F(VirtqueueTest, RefusesMalformedChains) {
  struct Case {
    const char* name;
    std::function<void(TestQueue&)> setup;
    const char* message;
  } cases[] = {
      {"loop",
       [](TestQueue& q) {
         q.writeDescriptor(0, {kData, 16, kDescNext, 1});
         q.writeDescriptor(1, {kData, 16, kDescNext, 0});
         q.makeAvailable(0);
       },
       "loop"},
      {"next beyond the table",
       [](TestQueue& q) {
         q.writeDescriptor(0, {kData, 16, kDescNext, 9});
         q.makeAvailable(0);
       },
       "beyond the table size"},
      {"head beyond the queue", [](TestQueue& q) { q.makeAvailable(8); }, "beyond the queue size"},
      {"buffer outside memory",
       [](TestQueue& q) {
         q.writeDescriptor(0, {uint64_t{15} << 20, 2 << 20, 0, 0});
         q.makeAvailable(0);
       },
       "not in guest memory"},
      {"buffer in the MMIO hole",
       [](TestQueue& q) {
         q.writeDescriptor(0, {0xd0000000, 16, 0, 0});
         q.makeAvailable(0);
       },
       "not in guest memory"},
      {"readable after writable",
       [](TestQueue& q) {
         q.writeDescriptor(0, {kData, 16, kDescNext | kDescWrite, 1});
         q.writeDescriptor(1, {kData, 16, 0, 0});
         q.makeAvailable(0);
       },
       "readable buffer after a device-writable"},
      {"indirect with next",
       [](TestQueue& q) {
         q.writeDescriptor(0, {kData, 16, kDescIndirect | kDescNext, 1});
         q.makeAvailable(0);
       },
       "NEXT flag"},
      {"indirect table of odd size",
       [](TestQueue& q) {
         q.writeDescriptor(0, {kData, 20, kDescIndirect, 0});
         q.makeAvailable(0);
       },
       "multiple of 16"},
      {"indirect table outside memory",
       [](TestQueue& q) {
         q.writeDescriptor(0, {uint64_t{1} << 40, 32, kDescIndirect, 0});
         q.makeAvailable(0);
       },
       "indirect table"},
      {"nested indirect",
       [this](TestQueue& q) {
         (void)memory_->writeObject(GuestAddress{kData + 0x8000},
                                    Descriptor{kData, 16, kDescIndirect, 0});
         q.writeDescriptor(0, {kData + 0x8000, 16, kDescIndirect, 0});
         q.makeAvailable(0);
       },
       "inside an indirect table"},
      {"huge chain",
       [](TestQueue& q) {
         // 3 x 2 GiB: each buffer alone is not checked against memory before the sum.
         q.writeDescriptor(0, {kData, 0x80000000, kDescNext, 1});
         q.writeDescriptor(1, {kData, 0x80000000, kDescNext, 2});
         q.writeDescriptor(2, {kData, 0x80000000, 0, 0});
         q.makeAvailable(0);
       },
       "not in guest memory"},
      {"available index far ahead",
       [](TestQueue& q) {
         q.writeDescriptor(0, {kData, 16, 0, 0});
         q.setAvailIdx(100);
       },
       "more than the queue size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    driver_.emplace(*memory_, kQueueBase, 8);
    driver_->setAvailIdx(0);
    Virtqueue queue = activate();
    c.setup(*driver_);
    EXPECT_THAT(popError(queue), HasSubstr(c.message));
  }
}

TEST_F(VirtqueueTest, WrapsAroundTheRingAndTheIndex) {
  // Start near the end of the 16-bit index space so that both the ring slot and the index wrap.
  const QueuePosition start{65530, 65530, 65530, false};
  driver_->setAvailIdx(65530);
  (void)memory_->writeObject(GuestAddress{driver_->layout().used + 2}, uint16_t{65530});
  driver_->takeUsed();
  Virtqueue queue = activate(kBothFeatures, start);
  for (int round = 0; round < 40; ++round) {
    const uint16_t head =
        driver_->addChain({{kData + 0x100 * static_cast<uint64_t>(round), 16, true}});
    driver_->makeAvailable(head);
    auto chain = queue.pop();
    ASSERT_TRUE(chain.ok()) << chain.status();
    ASSERT_TRUE(chain->has_value());
    EXPECT_EQ((*chain)->head, head);
    EXPECT_EQ((*chain)->writable[0].data, host(kData + 0x100 * static_cast<uint64_t>(round)));
    queue.addUsed(head, 16);
  }
  EXPECT_EQ(queue.position().next_avail, static_cast<uint16_t>(65530 + 40));
  EXPECT_EQ(driver_->usedIdx(), static_cast<uint16_t>(65530 + 40));
}

TEST_F(VirtqueueTest, InterruptsFollowNoInterruptWithoutEventIdx) {
  Virtqueue queue = activate(featureBit(kFeatureIndirectDesc));
  driver_->makeAvailable(driver_->addChain({{kData, 1, true}}));
  ASSERT_TRUE(queue.pop().ok());
  queue.addUsed(0, 1);
  EXPECT_TRUE(queue.needsInterrupt());
  driver_->setNoInterrupt(true);
  EXPECT_FALSE(queue.needsInterrupt());
}

TEST_F(VirtqueueTest, InterruptsFollowUsedEvent) {
  Virtqueue queue = activate();
  for (int i = 0; i < 4; ++i) driver_->makeAvailable(driver_->addChain({{kData, 1, true}}));
  driver_->setUsedEvent(2);  // interrupt when used index passes 2, i.e. on the 3rd element
  auto use_one = [&] {
    auto chain = queue.pop();
    ASSERT_TRUE(chain.ok() && chain->has_value());
    queue.addUsed((*chain)->head, 1);
  };
  use_one();
  EXPECT_TRUE(queue.needsInterrupt());  // the first interrupt is always sent
  use_one();
  EXPECT_FALSE(queue.needsInterrupt());  // used index 2: used_event 2 not yet passed
  use_one();
  EXPECT_TRUE(queue.needsInterrupt());  // used index 3 passed used_event 2
  use_one();
  EXPECT_FALSE(queue.needsInterrupt());
}

TEST_F(VirtqueueTest, EnableNotificationsPublishesAvailEvent) {
  Virtqueue queue = activate();
  driver_->makeAvailable(driver_->addChain({{kData, 1, true}}));
  ASSERT_TRUE(queue.pop().ok());
  EXPECT_FALSE(queue.enableNotifications());
  EXPECT_EQ(driver_->availEvent(), 1);
  driver_->makeAvailable(driver_->addChain({{kData, 1, true}}));
  EXPECT_TRUE(queue.enableNotifications());  // a chain arrived: the caller must poll again
}

TEST_F(VirtqueueTest, RewindReturnsChainsAgain) {
  Virtqueue queue = activate();
  const uint16_t a = driver_->addChain({{kData, 1, true}});
  driver_->makeAvailable(a);
  const uint16_t b = driver_->addChain({{kData + 0x10, 1, true}});
  driver_->makeAvailable(b);
  ASSERT_TRUE(queue.pop().ok());
  ASSERT_TRUE(queue.pop().ok());
  queue.rewind(1);
  auto again = queue.pop();
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->head, b);
}

// Dirty tracking: the pages a device may write are reported through the memory's tracker.
class VirtqueueDirtyTest : public VirtqueueTest {
 protected:
  void SetUp() override {
    VirtqueueTest::SetUp();
    pages_ = memory_->backing().size() / kPageSize;
    tracker_ = std::make_shared<ConcurrentDirtyBitmap>(pages_);
    memory_->setDeviceDirtyTracker(tracker_);
  }
  // The pages marked since the last call. (The test driver writes its rings through
  // GuestMemory::write(), which marks too: drain before the device's step.)
  std::vector<uint64_t> drain() {
    DirtyBitmap out(pages_);
    tracker_->drainInto(out);
    std::vector<uint64_t> pages;
    out.forEachRun([&pages](uint64_t first, uint64_t count) {
      for (uint64_t page = first; page < first + count; ++page) pages.push_back(page);
    });
    return pages;
  }
  static uint64_t page(uint64_t addr) { return addr / kPageSize; }

  uint64_t pages_ = 0;
  std::shared_ptr<ConcurrentDirtyBitmap> tracker_;
};

TEST_F(VirtqueueDirtyTest, MarksWritableBuffersWhenPoppedAndAgainWithTheUsedRing) {
  Virtqueue queue = activate();
  const uint16_t head = driver_->addChain({{kData, 16, false},
                                           {kData + 0x1800, 0x1000, true},  // two pages
                                           {kData + 0x5000, 1, true}});
  driver_->makeAvailable(head);
  drain();
  auto chain = queue.pop();
  ASSERT_TRUE(chain.ok() && chain->has_value());
  // Only the device-writable buffers: not the readable one, not the rings.
  EXPECT_THAT(drain(), ElementsAre(page(kData) + 1, page(kData) + 2, page(kData) + 5));

  // The device writes after the migration thread drained the marks (an asynchronous read
  // completing): returning the chain marks its buffers again, and the used ring.
  (*chain)->writable[0].data[0] = 0xaa;
  queue.addUsed(head, 0x1001);
  const uint64_t used_page = page(driver_->layout().used);
  EXPECT_THAT(drain(), ElementsAre(used_page, page(kData) + 1, page(kData) + 2, page(kData) + 5));
  ASSERT_EQ(driver_->takeUsed().size(), 1u);
}

TEST_F(VirtqueueDirtyTest, MarksWritableBuffersOfIndirectTables) {
  Virtqueue queue = activate();
  const uint64_t table = kData + 0x8000;
  // Direct descriptors, then an indirect table with a readable and two writable buffers.
  (void)memory_->writeObject(GuestAddress{table}, Descriptor{kData, 16, kDescNext, 1});
  (void)memory_->writeObject(GuestAddress{table + 16},
                             Descriptor{kData + 0x3000, 512, kDescWrite | kDescNext, 2});
  (void)memory_->writeObject(GuestAddress{table + 32},
                             Descriptor{kData + 0x9ffe, 4, kDescWrite, 0});  // two pages
  driver_->writeDescriptor(0, {kData + 0x2000, 8, kDescNext, 1});
  driver_->writeDescriptor(1, {table, 48, kDescIndirect, 0});
  driver_->makeAvailable(0);
  drain();
  auto chain = queue.pop();
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_TRUE(chain->has_value());
  EXPECT_THAT(drain(), ElementsAre(page(kData) + 3, page(kData) + 9, page(kData) + 10));
}

TEST_F(VirtqueueDirtyTest, MarksTheAvailEventAndTheUsedFlags) {
  const uint64_t used_page = page(driver_->layout().used);
  Virtqueue with_event_idx = activate();
  drain();
  EXPECT_FALSE(with_event_idx.enableNotifications());
  EXPECT_THAT(drain(), ElementsAre(used_page));

  Virtqueue without = activate(featureBit(kFeatureIndirectDesc));
  drain();
  EXPECT_FALSE(without.enableNotifications());
  EXPECT_THAT(drain(), ElementsAre(used_page));
}

TEST_F(VirtqueueDirtyTest, NothingIsMarkedWithoutATracker) {
  memory_->setDeviceDirtyTracker(nullptr);
  Virtqueue queue = activate();
  driver_->makeAvailable(driver_->addChain({{kData, 16, true}}));
  auto chain = queue.pop();
  ASSERT_TRUE(chain.ok() && chain->has_value());
  queue.addUsed((*chain)->head, 16);
  EXPECT_THAT(drain(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace flotilla::vmm::virtio
