// Tests of the isa-debug-exit port: the exit status a written value maps to, and the value the
// callback receives for every access width.
#include "vmm/devices/debug_exit.h"

#include <array>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;

TEST(DebugExitTest, ExitStatusIsValueTimesTwoPlusOneInEightBits) {
  EXPECT_EQ(DebugExit::exitStatus(0), 1);
  EXPECT_EQ(DebugExit::exitStatus(1), 3);
  EXPECT_EQ(DebugExit::exitStatus(0x10), 0x21);
  EXPECT_EQ(DebugExit::exitStatus(0x31), 0x63);
  EXPECT_EQ(DebugExit::exitStatus(0x7f), 0xff);
  EXPECT_EQ(DebugExit::exitStatus(0x80), 1) << "bit 7 is shifted out of the status";
  EXPECT_EQ(DebugExit::exitStatus(0xffffffff), 0xff);
  for (uint32_t value = 0; value < 0x200; ++value) {
    EXPECT_EQ(DebugExit::exitStatus(value) % 2, 1) << "odd statuses belong to the guest";
  }
}

TEST(DebugExitTest, TheCallbackGetsTheValueOfEveryAccessWidth) {
  std::vector<uint32_t> values;
  DebugExit device([&values](uint32_t value) { values.push_back(value); });
  const std::array<uint8_t, 4> bytes = {0x78, 0x56, 0x34, 0x12};
  device.write(0, std::span<const uint8_t>(bytes).first(1));
  device.write(0, std::span<const uint8_t>(bytes).first(2));
  device.write(0, bytes);
  EXPECT_THAT(values, ElementsAre(0x78u, 0x5678u, 0x12345678u));
}

TEST(DebugExitTest, ReadsReturnZeros) {
  DebugExit device([](uint32_t) { ADD_FAILURE() << "a read must not end the VM"; });
  std::array<uint8_t, 4> data = {1, 2, 3, 4};
  device.read(0, data);
  EXPECT_THAT(data, ElementsAre(0, 0, 0, 0));
}

TEST(DebugExitTest, WorksThroughTheBusAtPortF4) {
  std::vector<uint32_t> values;
  Bus bus;
  ASSERT_TRUE(
      bus.add(DebugExit::kPort, DebugExit::kSize, "debug-exit",
              std::make_shared<DebugExit>([&values](uint32_t value) { values.push_back(value); }))
          .ok());
  const std::array<uint8_t, 2> word = {0x31, 0x00};
  EXPECT_TRUE(bus.write(0xf4, word));
  EXPECT_FALSE(bus.write(0xf8, word));
  ASSERT_THAT(values, ElementsAre(0x31u));
  EXPECT_EQ(DebugExit::exitStatus(values[0]), 0x63);
}

}  // namespace
}  // namespace flotilla::vmm
