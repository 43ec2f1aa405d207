// Tests of the 16550A UART: the registers as the PC16550D data sheet defines them, the
// loopback probe of Linux's 8250 driver, interrupt priorities and IRQ 4 levels, the receive
// FIFO's capacity, and save -> restore -> save.
#include "vmm/devices/serial.h"

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/vmm/devices/fakes.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using vmm::testing::FakeInterruptLine;
using vmm::testing::FakeSerialSink;

// Register offsets from COM1's base.
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint64_t kDll = 0, kDlm = 1, kFcr = 2;  // DLL/DLM with LCR.DLAB set; FCR on write

// IIR values.
constexpr uint8_t kIirNone = 0x01, kIirModemStatus = 0x00, kIirThrEmpty = 0x02,
                  kIirReceivedData = 0x04, kIirFifos = 0xc0;

std::span<const uint8_t> bytesOf(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

class SerialTest : public ::testing::Test {
 protected:
  static uint8_t in(Serial& serial, uint64_t offset) {
    std::array<uint8_t, 1> byte = {0xee};
    serial.read(offset, byte);
    return byte[0];
  }
  static void out(Serial& serial, uint64_t offset, uint8_t value) {
    serial.write(offset, {&value, 1});
  }
  uint8_t in(uint64_t offset) { return in(*serial_, offset); }
  void out(uint64_t offset, uint8_t value) { out(*serial_, offset, value); }

  // Reads RBR until LSR reports no more data.
  static std::string drain(Serial& serial) {
    std::string text;
    while (in(serial, kLsr) & 0x01) text.push_back(static_cast<char>(in(serial, kData)));
    return text;
  }

  std::shared_ptr<FakeSerialSink> sink_ = std::make_shared<FakeSerialSink>();
  std::shared_ptr<FakeInterruptLine> irq_ = std::make_shared<FakeInterruptLine>();
  std::shared_ptr<Serial> serial_ = std::make_shared<Serial>(sink_, irq_);
};

TEST_F(SerialTest, ThrWritesReachTheSinkAndThrIsAlwaysEmpty) {
  EXPECT_EQ(in(kLsr), 0x60) << "THRE and TEMT, no data";
  for (char c : std::string("hello\n")) out(kData, static_cast<uint8_t>(c));
  EXPECT_EQ(sink_->bytes(), "hello\n");
  EXPECT_EQ(in(kLsr), 0x60);
  EXPECT_THAT(irq_->levels(), IsEmpty()) << "no interrupt is enabled";
}

TEST_F(SerialTest, WiderAccessesUseTheFirstByteAndReadZerosAbove) {
  const std::array<uint8_t, 2> word = {'A', 'B'};
  serial_->write(kData, word);
  EXPECT_EQ(sink_->bytes(), "A");
  std::array<uint8_t, 4> dword = {0xff, 0xff, 0xff, 0xff};
  serial_->read(kLsr, dword);
  EXPECT_THAT(dword, ElementsAre(0x60, 0, 0, 0));
  serial_->read(kLsr, {});  // an empty access is ignored
}

TEST_F(SerialTest, DlabSwitchesOffsetsZeroAndOneToTheDivisorLatch) {
  out(kLcr, 0x83);  // DLAB, 8 data bits
  EXPECT_EQ(in(kDll), 0x0c) << "9600 baud, as a BIOS leaves it";
  EXPECT_EQ(in(kDlm), 0x00);
  out(kDll, 0x01);  // 115200 baud
  out(kDlm, 0x02);
  EXPECT_EQ(in(kDll), 0x01);
  EXPECT_EQ(in(kDlm), 0x02);
  EXPECT_EQ(sink_->bytes(), "") << "a DLL write transmits nothing";
  EXPECT_EQ(in(kLcr), 0x83);

  out(kLcr, 0x03);
  EXPECT_EQ(in(kIer), 0x00) << "DLM is not IER";
  out(kIer, 0xff);
  EXPECT_EQ(in(kIer), 0x0f) << "IER's upper nibble is reserved";
  out(kData, 'x');
  EXPECT_EQ(sink_->bytes(), "x");
  out(kLcr, 0x80);
  EXPECT_EQ(in(kDll), 0x01) << "the divisor survives leaving and re-entering DLAB";
  EXPECT_EQ(in(kDlm), 0x02);
}

TEST_F(SerialTest, ScratchRegisterHoldsAnyValue) {
  for (uint8_t value : {uint8_t{0x00}, uint8_t{0x55}, uint8_t{0xaa}, uint8_t{0xff}}) {
    out(kScr, value);
    EXPECT_EQ(in(kScr), value);
  }
}

TEST_F(SerialTest, LsrDataReadyFollowsTheReceiveFifo) {
  EXPECT_EQ(serial_->receive(bytesOf("ab")), 2u);
  EXPECT_EQ(in(kLsr), 0x61) << "DR with THRE and TEMT";
  EXPECT_EQ(in(kData), 'a');
  EXPECT_EQ(in(kLsr), 0x61);
  EXPECT_EQ(in(kData), 'b');
  EXPECT_EQ(in(kLsr), 0x60);
  EXPECT_EQ(in(kData), 0x00) << "an empty RBR reads 0";
  EXPECT_EQ(in(kLsr), 0x60);
}

TEST_F(SerialTest, ReadOnlyRegistersIgnoreWritesAndOffsetsPastTheUartReadFF) {
  out(kLsr, 0x00);
  out(kMsr, 0x00);
  EXPECT_EQ(in(kLsr), 0x60);
  EXPECT_EQ(in(kMsr), 0xb0);
  EXPECT_EQ(in(8), 0xff);
  out(8, 0x12);  // ignored
  EXPECT_EQ(sink_->bytes(), "");
}

TEST_F(SerialTest, ModemStatusOutsideLoopbackShowsAnAttachedTerminal) {
  EXPECT_EQ(in(kMsr), 0xb0) << "DCD, DSR and CTS";
  out(kMcr, 0x0b);  // DTR, RTS, OUT2: what Linux sets when the port opens
  EXPECT_EQ(in(kMcr), 0x0b);
  EXPECT_EQ(in(kMsr), 0xb0) << "outside loopback the outputs do not change the inputs";
  out(kMcr, 0xff);
  EXPECT_EQ(in(kMcr), 0x1f) << "MCR's upper bits are reserved";
}

TEST_F(SerialTest, LoopbackMirrorsMcrIntoMsrAsLinuxAutoconfigExpects) {
  // Linux's autoconfig(): MCR = LOOP | 0x0a (RTS, OUT2) must read back MSR & 0xf0 == 0x90.
  out(kMcr, 0x1a);
  EXPECT_EQ(in(kMsr)&0xf0, 0x90);
  struct Case {
    uint8_t mcr;
    uint8_t msr_status;
  };
  // DTR -> DSR, RTS -> CTS, OUT1 -> RI, OUT2 -> DCD.
  for (Case c : {Case{0x10, 0x00}, Case{0x11, 0x20}, Case{0x12, 0x10}, Case{0x14, 0x40},
                 Case{0x18, 0x80}, Case{0x1f, 0xf0}}) {
    out(kMcr, c.mcr);
    EXPECT_EQ(in(kMsr)&0xf0, c.msr_status) << "MCR " << int{c.mcr};
  }
  out(kMcr, 0x00);
  EXPECT_EQ(in(kMsr)&0xf0, 0xb0);
}

TEST_F(SerialTest, LoopbackSendsThrBackToRbrInsteadOfTheSink) {
  out(kMcr, 0x10);
  out(kData, 'L');
  out(kData, 'B');
  EXPECT_EQ(sink_->bytes(), "") << "nothing leaves the UART in loopback";
  EXPECT_EQ(in(kLsr), 0x61);
  EXPECT_EQ(drain(*serial_), "LB");
  out(kMcr, 0x00);
  out(kData, 'x');
  EXPECT_EQ(sink_->bytes(), "x");
  EXPECT_EQ(in(kLsr), 0x60);
}

TEST_F(SerialTest, ModemStatusDeltaBitsRecordChangesUntilMsrIsRead) {
  EXPECT_EQ(in(kMsr), 0xb0) << "no deltas at power-on";
  // Entering loopback with every output off drops CTS, DSR and DCD: DCTS, DDSR, DDCD.
  out(kMcr, 0x10);
  EXPECT_EQ(in(kMsr), 0x0b);
  EXPECT_EQ(in(kMsr), 0x00) << "reading MSR clears the deltas";
  // RI rising sets no delta; TERI marks its trailing edge only.
  out(kMcr, 0x14);
  EXPECT_EQ(in(kMsr), 0x40);
  out(kMcr, 0x10);
  EXPECT_EQ(in(kMsr), 0x04);
  // RTS and OUT2 on: CTS and DCD rise.
  out(kMcr, 0x1a);
  EXPECT_EQ(in(kMsr), 0x99);
  // Deltas accumulate over several changes.
  out(kMcr, 0x10);
  out(kMcr, 0x11);
  EXPECT_EQ(in(kMsr), 0x2b) << "DSR now on; CTS, DCD fell, DSR rose";
}

TEST_F(SerialTest, EnablingThrEmptyRaisesItAtOnceAndReadingIirAcknowledgesIt) {
  out(kIer, 0x02);
  EXPECT_THAT(irq_->levels(), ElementsAre(true));
  EXPECT_EQ(in(kIir), kIirThrEmpty);
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false));
  EXPECT_EQ(in(kIir), kIirNone);
  // Writing IER again with THRI already enabled raises nothing.
  out(kIer, 0x02);
  EXPECT_EQ(in(kIir), kIirNone);
  // Every transmitted byte empties THR again.
  out(kData, 'a');
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false, true));
  EXPECT_EQ(in(kIir), kIirThrEmpty);
  EXPECT_FALSE(irq_->high());
  // Disabling THRI while it is pending drops the line without an IIR read.
  out(kData, 'b');
  EXPECT_TRUE(irq_->high());
  out(kIer, 0x00);
  EXPECT_FALSE(irq_->high());
  EXPECT_EQ(in(kIir), kIirNone);
}

TEST_F(SerialTest, ReceivedDataInterruptFollowsTheFifo) {
  EXPECT_EQ(serial_->receive(bytesOf("q")), 1u);
  EXPECT_THAT(irq_->levels(), IsEmpty()) << "RDA not enabled";
  out(kIer, 0x01);
  EXPECT_THAT(irq_->levels(), ElementsAre(true));
  EXPECT_EQ(in(kIir), kIirReceivedData);
  EXPECT_EQ(in(kIir), kIirReceivedData) << "reading IIR does not acknowledge RDA";
  EXPECT_EQ(in(kData), 'q');
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false));
  serial_->receive(bytesOf("xy"));
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false, true));
  EXPECT_EQ(in(kData), 'x');
  EXPECT_TRUE(irq_->high()) << "one byte left";
  EXPECT_EQ(in(kData), 'y');
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false, true, false));
}

TEST_F(SerialTest, InterruptIdentificationPrioritizesRdaThenThriThenModemStatus) {
  out(kMcr, 0x10);  // loopback: modem status deltas pending (DCTS, DDSR, DDCD)
  out(kIer, 0x0f);  // RDA, THRI, line status, modem status; THRI becomes pending
  serial_->receive(bytesOf("zz"));
  EXPECT_THAT(irq_->levels(), ElementsAre(true)) << "one line, held high";
  EXPECT_EQ(in(kIir), kIirReceivedData);
  EXPECT_EQ(drain(*serial_), "zz");
  EXPECT_EQ(in(kIir), kIirThrEmpty);
  EXPECT_EQ(in(kIir), kIirModemStatus) << "THRI was acknowledged by the previous read";
  EXPECT_TRUE(irq_->high());
  EXPECT_EQ(in(kMsr), 0x0b);
  EXPECT_EQ(in(kIir), kIirNone);
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false));
}

TEST_F(SerialTest, ThriStaysPendingWhileRdaHidesIt) {
  out(kIer, 0x03);
  serial_->receive(bytesOf("r"));
  EXPECT_EQ(in(kIir), kIirReceivedData) << "reading IIR here does not acknowledge THRI";
  EXPECT_EQ(in(kData), 'r');
  EXPECT_EQ(in(kIir), kIirThrEmpty);
  EXPECT_EQ(in(kIir), kIirNone);
}

TEST_F(SerialTest, ModemStatusInterruptNeedsItsEnableBit) {
  out(kMcr, 0x10);
  out(kIer, 0x01);
  EXPECT_EQ(in(kIir), kIirNone);
  EXPECT_THAT(irq_->levels(), IsEmpty());
  out(kIer, 0x08);
  EXPECT_EQ(in(kIir), kIirModemStatus);
  EXPECT_THAT(irq_->levels(), ElementsAre(true));
  in(kMsr);
  EXPECT_THAT(irq_->levels(), ElementsAre(true, false));
}

TEST_F(SerialTest, FifoEnableShowsInIirAndFcrClearsTheReceiveFifo) {
  EXPECT_EQ(in(kIir), kIirNone);
  out(kFcr, 0x01);
  EXPECT_EQ(in(kIir), kIirFifos | kIirNone);
  out(kIer, 0x02);
  EXPECT_EQ(in(kIir), kIirFifos | kIirThrEmpty);
  EXPECT_EQ(in(kIir), kIirFifos | kIirNone);

  out(kIer, 0x01);
  serial_->receive(bytesOf("stale"));
  EXPECT_EQ(in(kIir), kIirFifos | kIirReceivedData);
  EXPECT_TRUE(irq_->high());
  out(kFcr, 0xc7);  // enable, clear both FIFOs, 14-byte trigger
  EXPECT_EQ(in(kLsr), 0x60) << "the receive FIFO was cleared";
  EXPECT_FALSE(irq_->high()) << "with the data gone, so is its interrupt";
  EXPECT_EQ(in(kIir), kIirFifos | kIirNone);
  out(kFcr, 0x00);
  EXPECT_EQ(in(kIir), kIirNone);
}

TEST_F(SerialTest, ReceiveKeepsAtMostTheFifoCapacityAndDropsTheRest) {
  std::string big(Serial::kRxCapacity + 100, 'a');
  big[0] = 'F';
  big[Serial::kRxCapacity - 1] = 'L';
  EXPECT_EQ(serial_->receive(bytesOf(big)), Serial::kRxCapacity);
  EXPECT_EQ(serial_->receive(bytesOf("more")), 0u) << "a full FIFO overruns";
  EXPECT_EQ(in(kData), 'F');
  EXPECT_EQ(serial_->receive(bytesOf("12")), 1u) << "room for exactly one byte";
  std::string rest = drain(*serial_);
  ASSERT_EQ(rest.size(), Serial::kRxCapacity);
  EXPECT_EQ(rest[Serial::kRxCapacity - 2], 'L');
  EXPECT_EQ(rest.back(), '1');

  // In loopback, transmitted bytes beyond the capacity are dropped the same way.
  out(kMcr, 0x10);
  for (size_t i = 0; i < Serial::kRxCapacity + 3; ++i) out(kData, 'x');
  EXPECT_EQ(drain(*serial_).size(), Serial::kRxCapacity);
  EXPECT_EQ(serial_->receive({}), 0u);
}

TEST_F(SerialTest, SaveRestoreSaveIsStableAndTheRestoredUartBehavesTheSame) {
  out(kLcr, 0x80);
  out(kDll, 0x01);
  out(kDlm, 0x00);
  out(kLcr, 0x03);
  out(kFcr, 0xc1);
  out(kScr, 0x5a);
  out(kMcr, 0x10);
  out(kMcr, 0x0b);  // back out of loopback, leaving modem status deltas
  out(kIer, 0x03);  // RDA and THRI; THRI pending
  serial_->receive(bytesOf("hello"));

  const flotilla::v1::SerialState saved = serial_->save();
  EXPECT_EQ(saved.rx(), "hello");
  EXPECT_TRUE(saved.thr_interrupt_pending());
  EXPECT_EQ(saved.msr_deltas(), 0x0bu);
  EXPECT_EQ(saved.ier(), 0x03u);
  EXPECT_EQ(saved.lcr(), 0x03u);
  EXPECT_EQ(saved.mcr(), 0x0bu);
  EXPECT_EQ(saved.dll(), 0x01u);
  EXPECT_EQ(saved.fcr(), 0xc1u);
  EXPECT_EQ(saved.scr(), 0x5au);

  auto sink = std::make_shared<FakeSerialSink>();
  auto irq = std::make_shared<FakeInterruptLine>();
  Serial restored(sink, irq);
  restored.restore(saved);
  EXPECT_EQ(restored.save().DebugString(), saved.DebugString());
  EXPECT_THAT(irq->levels(), ElementsAre(true)) << "the pending interrupts raise IRQ 4";

  // Both UARTs answer the same sequence of accesses identically.
  for (Serial* serial : {serial_.get(), &restored}) {
    SCOPED_TRACE(serial == &restored ? "restored" : "original");
    EXPECT_EQ(in(*serial, kIir), kIirFifos | kIirReceivedData);
    EXPECT_EQ(drain(*serial), "hello");
    EXPECT_EQ(in(*serial, kIir), kIirFifos | kIirThrEmpty);
    EXPECT_EQ(in(*serial, kIir), kIirFifos | kIirNone);
    EXPECT_EQ(in(*serial, kMsr), 0xbb);
    EXPECT_EQ(in(*serial, kScr), 0x5a);
    out(*serial, kLcr, 0x83);
    EXPECT_EQ(in(*serial, kDll), 0x01);
    out(*serial, kLcr, 0x03);
    out(*serial, kData, '!');
  }
  EXPECT_EQ(sink->bytes(), "!");
  EXPECT_EQ(restored.save().DebugString(), serial_->save().DebugString());
}

TEST_F(SerialTest, RestoreMasksReservedBitsAndCapsTheFifo) {
  flotilla::v1::SerialState state;
  state.set_ier(0xff);
  state.set_mcr(0xff);
  state.set_fcr(0xff);
  state.set_msr_deltas(0xff);
  state.set_rx(std::string(Serial::kRxCapacity + 10, 'r'));
  serial_->restore(state);
  flotilla::v1::SerialState saved = serial_->save();
  EXPECT_EQ(saved.ier(), 0x0fu);
  EXPECT_EQ(saved.mcr(), 0x1fu);
  EXPECT_EQ(saved.fcr(), 0xc9u);
  EXPECT_EQ(saved.msr_deltas(), 0x0fu);
  EXPECT_EQ(saved.rx().size(), Serial::kRxCapacity);
}

}  // namespace
}  // namespace flotilla::vmm
