// Tests of Bus: ranges claimed without overlap, accesses routed with offsets relative to the
// device, unclaimed addresses reported, and the little-endian register helpers.
#include "vmm/devices/bus.h"

#include <array>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records every access; reads return the offset in every byte.
class RecordingDevice final : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
    bool operator==(const Access&) const = default;
  };

  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (uint8_t& byte : data) byte = static_cast<uint8_t>(offset);
    accesses.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({true, offset, {data.begin(), data.end()}});
  }

  std::vector<Access> accesses;
};

TEST(BusTest, AccessesReachTheClaimingDeviceWithRelativeOffsets) {
  Bus bus;
  auto com1 = std::make_shared<RecordingDevice>();
  auto rtc = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x3f8, 8, "com1", com1).ok());
  ASSERT_TRUE(bus.add(0x70, 2, "rtc", rtc).ok());

  std::array<uint8_t, 1> byte{};
  EXPECT_TRUE(bus.read(0x3fd, byte));
  EXPECT_EQ(byte[0], 5);
  const std::array<uint8_t, 2> word = {0x34, 0x12};
  EXPECT_TRUE(bus.write(0x3f8, word));
  EXPECT_TRUE(bus.write(0x71, std::span<const uint8_t>(word).first(1)));
  EXPECT_TRUE(bus.read(0x3ff, byte)) << "the last byte of a range is the device's";

  EXPECT_THAT(com1->accesses, ElementsAre(RecordingDevice::Access{false, 5, {5}},
                                          RecordingDevice::Access{true, 0, {0x34, 0x12}},
                                          RecordingDevice::Access{false, 7, {7}}));
  EXPECT_THAT(rtc->accesses, ElementsAre(RecordingDevice::Access{true, 1, {0x34}}));
}

TEST(BusTest, UnclaimedAddressesAreReportedAndTouchNoDevice) {
  Bus bus;
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x100, 0x10, "dev", device).ok());
  std::array<uint8_t, 4> data = {1, 2, 3, 4};
  EXPECT_FALSE(bus.read(0xff, data));
  EXPECT_FALSE(bus.read(0x110, data));
  EXPECT_FALSE(bus.write(0x110, data));
  EXPECT_FALSE(bus.write(0, data));
  EXPECT_FALSE(bus.read(~uint64_t{0}, data));
  EXPECT_THAT(data, ElementsAre(1, 2, 3, 4)) << "a miss leaves the buffer to the caller";
  EXPECT_TRUE(device->accesses.empty());

  Bus empty;
  EXPECT_FALSE(empty.read(0x60, data));
  EXPECT_FALSE(empty.write(0x60, data));
}

TEST(BusTest, OverlapsOnEitherSideAreRefusedNamingBothDevices) {
  Bus bus;
  auto device = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x100, 0x10, "first", device).ok());

  // A new range that starts below and runs into the existing one.
  absl::Status below = bus.add(0xf8, 0x9, "below", device);
  EXPECT_TRUE(absl::IsAlreadyExists(below)) << below;
  EXPECT_THAT(below.message(), HasSubstr("device below at 0xf8 overlaps device first at 0x100"));
  // A new range that starts inside the existing one.
  absl::Status inside = bus.add(0x10f, 0x10, "inside", device);
  EXPECT_TRUE(absl::IsAlreadyExists(inside)) << inside;
  EXPECT_THAT(inside.message(), HasSubstr("device inside at 0x10f overlaps device first at 0x100"));
  // Same base, and one that covers it entirely.
  EXPECT_TRUE(absl::IsAlreadyExists(bus.add(0x100, 1, "same", device)));
  EXPECT_TRUE(absl::IsAlreadyExists(bus.add(0, 0x1000, "around", device)));

  // Adjacent ranges on both sides are fine.
  EXPECT_TRUE(bus.add(0xf0, 0x10, "before", device).ok());
  EXPECT_TRUE(bus.add(0x110, 0x10, "after", device).ok());
  // A range that starts in the last byte of another is refused.
  EXPECT_TRUE(absl::IsAlreadyExists(bus.add(0x11f, 2, "late", device)));
}

TEST(BusTest, EmptyAndWrappingRangesAreInvalid) {
  Bus bus;
  auto device = std::make_shared<RecordingDevice>();
  absl::Status empty = bus.add(0x100, 0, "empty", device);
  EXPECT_TRUE(absl::IsInvalidArgument(empty));
  EXPECT_THAT(empty.message(), HasSubstr("device empty: invalid range 0x100 + 0x0"));
  EXPECT_TRUE(absl::IsInvalidArgument(bus.add(~uint64_t{0}, 2, "wraps", device)));
  // A range's end must be representable: the very last byte cannot be claimed.
  EXPECT_TRUE(absl::IsInvalidArgument(bus.add(~uint64_t{0}, 1, "last byte", device)));
  EXPECT_TRUE(bus.add(~uint64_t{0} - 1, 1, "next to last", device).ok());
  std::array<uint8_t, 1> byte{};
  EXPECT_TRUE(bus.read(~uint64_t{0} - 1, byte));
  EXPECT_FALSE(bus.read(~uint64_t{0}, byte));
}

TEST(LittleEndianTest, LoadsAndStoresEveryWidth) {
  const std::array<uint8_t, 8> bytes = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  EXPECT_EQ(loadLittleEndian(std::span<const uint8_t>(bytes).first(1)), 0x01u);
  EXPECT_EQ(loadLittleEndian(std::span<const uint8_t>(bytes).first(2)), 0x0201u);
  EXPECT_EQ(loadLittleEndian(std::span<const uint8_t>(bytes).first(4)), 0x04030201u);
  EXPECT_EQ(loadLittleEndian(bytes), 0x0807060504030201u);
  EXPECT_EQ(loadLittleEndian({}), 0u);
  const std::array<uint8_t, 10> wide = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(loadLittleEndian(wide), 0x0807060504030201u) << "bytes past the 8th are ignored";

  std::array<uint8_t, 4> dword{};
  storeLittleEndian(0xaabbccddeeff0011u, dword);
  EXPECT_THAT(dword, ElementsAre(0x11, 0x00, 0xff, 0xee)) << "truncated to the access width";
  std::array<uint8_t, 2> word{};
  storeLittleEndian(0xbeef, word);
  EXPECT_THAT(word, ElementsAre(0xef, 0xbe));
  std::array<uint8_t, 10> wide_out{};
  wide_out.fill(0x55);
  storeLittleEndian(0x0102030405060708u, wide_out);
  EXPECT_THAT(wide_out, ElementsAre(8, 7, 6, 5, 4, 3, 2, 1, 0, 0));
  std::array<uint8_t, 8> round{};
  storeLittleEndian(0x1122334455667788u, round);
  EXPECT_EQ(loadLittleEndian(round), 0x1122334455667788u);
}

}  // namespace
}  // namespace flotilla::vmm
