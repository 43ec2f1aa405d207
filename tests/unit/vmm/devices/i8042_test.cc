// Tests of the 8042 keyboard controller: controller and keyboard commands as Linux's i8042 and
// atkbd drivers send them, the status register, IRQ 1 edges per byte, the CPU reset line, the
// Ctrl-Alt-Del scan codes in both modes, and save -> restore -> save.
#include "vmm/devices/i8042.h"

#include <array>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/vmm/devices/fakes.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using vmm::testing::FakeInterruptLine;

constexpr uint64_t kData = 0;     // port 0x60
constexpr uint64_t kCommand = 4;  // port 0x64: status on read, command on write

constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystem = 0x04;
constexpr uint8_t kStatusCommand = 0x08;
constexpr uint8_t kStatusUnlocked = 0x10;

class I8042Test : public ::testing::Test {
 protected:
  static uint8_t in(I8042& device, uint64_t offset) {
    std::array<uint8_t, 1> byte = {0xee};
    device.read(offset, byte);
    return byte[0];
  }
  static void out(I8042& device, uint64_t offset, uint8_t value) {
    device.write(offset, {&value, 1});
  }
  uint8_t in(uint64_t offset) { return in(*i8042_, offset); }
  void out(uint64_t offset, uint8_t value) { out(*i8042_, offset, value); }

  // Reads port 0x60 while the status register says the output buffer is full.
  static std::vector<uint8_t> drain(I8042& device) {
    std::vector<uint8_t> bytes;
    while (in(device, kCommand) & kStatusOutputFull) bytes.push_back(in(device, kData));
    return bytes;
  }
  std::vector<uint8_t> drain() { return drain(*i8042_); }

  int resets_ = 0;
  std::shared_ptr<FakeInterruptLine> irq_ = std::make_shared<FakeInterruptLine>();
  std::unique_ptr<I8042> i8042_ = std::make_unique<I8042>(irq_, [this] { ++resets_; });
};

TEST_F(I8042Test, PowerOnStatusIsSystemFlagAndUnlockedWithNothingToRead) {
  EXPECT_EQ(in(kCommand), kStatusSystem | kStatusUnlocked);
  EXPECT_EQ(in(kData), 0x00) << "an empty output buffer reads 0";
  EXPECT_THAT(irq_->levels(), IsEmpty());
  std::array<uint8_t, 2> word = {0, 0};
  i8042_->read(1, word);
  EXPECT_THAT(word, ElementsAre(0xff, 0xff)) << "offsets 1-3 belong to nobody here";
}

TEST_F(I8042Test, ControllerSelfTestAnswers55) {
  out(kCommand, 0xaa);
  EXPECT_EQ(in(kCommand), kStatusOutputFull | kStatusSystem | kStatusCommand | kStatusUnlocked);
  EXPECT_EQ(in(kData), 0x55);
  EXPECT_EQ(in(kCommand)&kStatusOutputFull, 0);
  out(kCommand, 0xab);  // keyboard interface test: 0 means no error
  EXPECT_THAT(drain(), ElementsAre(0x00));
}

TEST_F(I8042Test, CommandByteReadsAndWrites) {
  out(kCommand, 0x20);
  EXPECT_THAT(drain(), ElementsAre(0x45)) << "keyboard interrupt, system flag, translation";
  out(kCommand, 0x60);
  out(kData, 0x47);
  EXPECT_THAT(drain(), IsEmpty()) << "the data byte went to the controller, not the keyboard";
  out(kCommand, 0x20);
  EXPECT_THAT(drain(), ElementsAre(0x47));

  // Disable / enable the keyboard and aux ports: bits 4 and 5.
  out(kCommand, 0xad);
  out(kCommand, 0xa7);
  out(kCommand, 0x20);
  EXPECT_THAT(drain(), ElementsAre(0x77));
  out(kCommand, 0xae);
  out(kCommand, 0xa8);
  out(kCommand, 0x20);
  EXPECT_THAT(drain(), ElementsAre(0x47));
}

TEST_F(I8042Test, CommandFlagInStatusFollowsTheLastPortWritten) {
  out(kCommand, 0xae);
  EXPECT_EQ(in(kCommand)&kStatusCommand, kStatusCommand);
  out(kData, 0xf4);
  EXPECT_EQ(in(kCommand)&kStatusCommand, 0);
}

TEST_F(I8042Test, KeyboardCommandsGetTheirAnswers) {
  out(kData, 0xff);  // reset: ACK, then the basic assurance test passed
  EXPECT_THAT(drain(), ElementsAre(0xfa, 0xaa));
  out(kData, 0xf2);  // identify: ACK, MF2 keyboard id
  EXPECT_THAT(drain(), ElementsAre(0xfa, 0xab, 0x83));
  out(kData, 0xed);  // set LEDs, then its parameter
  out(kData, 0x07);
  EXPECT_THAT(drain(), ElementsAre(0xfa, 0xfa));
  out(kData, 0xf0);  // scan code set 2
  out(kData, 0x02);
  EXPECT_THAT(drain(), ElementsAre(0xfa, 0xfa));
  out(kData, 0xf3);  // typematic rate: the parameter 0xff is not a command
  out(kData, 0xff);
  EXPECT_THAT(drain(), ElementsAre(0xfa, 0xfa));
  out(kData, 0xee);  // echo
  EXPECT_THAT(drain(), ElementsAre(0xee));
  out(kData, 0xf4);  // enable scanning
  EXPECT_THAT(drain(), ElementsAre(0xfa));
}

TEST_F(I8042Test, WriteKeyboardOutputBufferQueuesTheByte) {
  out(kCommand, 0xd2);
  out(kData, 0x1c);
  EXPECT_THAT(drain(), ElementsAre(0x1c));
}

TEST_F(I8042Test, Irq1MakesAnEdgeForEveryByte) {
  out(kData, 0xf2);  // three bytes queued
  EXPECT_THAT(irq_->levels(), ElementsAre(true));
  EXPECT_EQ(in(kData), 0xfa);
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false, true)) << "low on read, high for the next";
  EXPECT_EQ(in(kData), 0xab);
  EXPECT_EQ(in(kData), 0x83);
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false, true, false, true, false));
  EXPECT_EQ(irq_->risingEdges(), 3u);
  EXPECT_EQ(in(kData), 0x00);
  EXPECT_EQ(irq_->levels().size(), 6u) << "reading an empty buffer changes nothing";
}

TEST_F(I8042Test, NoIrq1WhileTheCommandByteDisablesIt) {
  out(kCommand, 0x60);
  out(kData, 0x44);  // keyboard interrupt off
  out(kData, 0xff);
  EXPECT_THAT(irq_->levels(), IsEmpty());
  EXPECT_EQ(in(kCommand)&kStatusOutputFull, kStatusOutputFull) << "polling still works";
  // Turning the interrupt back on with data waiting raises the line.
  out(kCommand, 0x60);
  out(kData, 0x45);
  EXPECT_THAT(irq_->levels(), ElementsAre(true));
  EXPECT_THAT(drain(), ElementsAre(0xfa, 0xaa));
  EXPECT_FALSE(irq_->high());
}

TEST_F(I8042Test, OutputBufferHoldsSixteenBytes) {
  for (int i = 0; i < 6; ++i) out(kData, 0xf2);  // 18 bytes of answers
  EXPECT_EQ(drain().size(), 16u);
}

TEST_F(I8042Test, PulsingOutputLineZeroResetsTheCpu) {
  out(kCommand, 0xff);  // pulse no line
  EXPECT_EQ(resets_, 0);
  out(kCommand, 0xfe);  // pulse line 0: Linux's reboot=k
  EXPECT_EQ(resets_, 1);
  out(kCommand, 0xf0);  // all four lines, including 0
  EXPECT_EQ(resets_, 2);
  EXPECT_THAT(drain(), IsEmpty());
}

TEST_F(I8042Test, WritingTheOutputPortWithBitZeroClearResetsTheCpu) {
  out(kCommand, 0xd1);
  out(kData, 0xdf);  // A20 on, reset line high (inactive)
  EXPECT_EQ(resets_, 0);
  out(kCommand, 0xd1);
  out(kData, 0xde);
  EXPECT_EQ(resets_, 1);
  EXPECT_THAT(drain(), IsEmpty()) << "neither data byte reached the keyboard";
}

TEST_F(I8042Test, UnknownCommandsAnswerNothingAndCancelAPendingOne) {
  out(kCommand, 0x60);
  out(kCommand, 0xa9);  // aux interface test: not implemented (no mouse)
  out(kData, 0xf4);     // now a keyboard command, not a command byte
  EXPECT_THAT(drain(), ElementsAre(0xfa));
  out(kCommand, 0x20);
  EXPECT_THAT(drain(), ElementsAre(0x45));
}

TEST_F(I8042Test, CtrlAltDelInTranslatedModeUsesScanCodeSet1) {
  i8042_->sendCtrlAltDel();
  EXPECT_THAT(drain(), ElementsAre(0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d));
  EXPECT_EQ(irq_->risingEdges(), 8u);
}

TEST_F(I8042Test, CtrlAltDelUntranslatedUsesScanCodeSet2) {
  out(kCommand, 0x60);
  out(kData, 0x05);  // translation off
  i8042_->sendCtrlAltDel();
  EXPECT_THAT(drain(),
              ElementsAre(0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14));
}

TEST_F(I8042Test, SaveRestoreSaveIsStableAndTheRestoredControllerBehavesTheSame) {
  out(kCommand, 0x60);
  out(kData, 0x65);     // keyboard interrupt, system, aux disabled, translation
  out(kData, 0xed);     // set LEDs: waiting for the parameter
  out(kData, 0xf2);     // ... which is this byte: ACK
  out(kData, 0xf3);     // typematic: waiting for the parameter
  out(kCommand, 0x60);  // and a command waiting for its data byte
  const flotilla::v1::I8042State saved = i8042_->save();
  EXPECT_EQ(saved.command_byte(), 0x65u);
  EXPECT_EQ(saved.pending_command(), 0x60u);
  EXPECT_EQ(saved.keyboard_command(), 0xf3u);
  EXPECT_EQ(saved.output(), std::string("\xfa\xfa\xfa", 3));
  EXPECT_EQ(saved.status() & kStatusCommand, kStatusCommand);

  auto irq = std::make_shared<FakeInterruptLine>();
  int resets = 0;
  I8042 restored(irq, [&resets] { ++resets; });
  restored.restore(saved);
  EXPECT_EQ(restored.save().DebugString(), saved.DebugString());
  EXPECT_THAT(irq->levels(), ElementsAre(true)) << "queued output raises IRQ 1";

  for (I8042* device : {i8042_.get(), &restored}) {
    SCOPED_TRACE(device == &restored ? "restored" : "original");
    EXPECT_EQ(in(*device, kCommand),
              kStatusOutputFull | kStatusSystem | kStatusCommand | kStatusUnlocked);
    out(*device, kData, 0x45);  // the pending 0x60's data byte
    out(*device, kData, 0x1f);  // the pending 0xf3's parameter: ACK
    EXPECT_THAT(drain(*device), ElementsAre(0xfa, 0xfa, 0xfa, 0xfa));
    out(*device, kCommand, 0x20);
    EXPECT_THAT(drain(*device), ElementsAre(0x45));
  }
  EXPECT_EQ(restored.save().DebugString(), i8042_->save().DebugString());
}

TEST_F(I8042Test, RestoreKeepsOnlyKnownStatusBitsAndSixteenBytes) {
  flotilla::v1::I8042State state;
  state.set_command_byte(0x45);
  state.set_status(0xff);
  state.set_output(std::string(40, '\x42'));
  i8042_->restore(state);
  EXPECT_EQ(i8042_->save().status(), uint32_t{kStatusSystem | kStatusCommand});
  EXPECT_EQ(i8042_->save().output().size(), 16u);
  EXPECT_THAT(drain(), ElementsAreArray(std::vector<uint8_t>(16, 0x42)));
}

}  // namespace
}  // namespace flotilla::vmm
