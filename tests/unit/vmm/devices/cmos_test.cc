// Tests of the CMOS RAM and RTC (MC146818): the time registers in BCD and binary, 12- and
// 24-hour modes, the guest's clock offset, Linux's way of setting the time (SET bit), the
// status registers, plain RAM, the index port, and save -> restore -> save. The host clock
// is a FakeClock, so every expected value is exact.
#include "vmm/devices/cmos.h"

#include <array>
#include <vector>

#include "absl/time/civil_time.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;

constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06, kDay = 0x07,
                  kMonth = 0x08, kYear = 0x09, kStatusA = 0x0a, kStatusB = 0x0b, kStatusC = 0x0c,
                  kStatusD = 0x0d, kCentury = 0x32;

absl::Time utc(int64_t year, int month, int day, int hour, int minute, int second) {
  return absl::FromCivil(absl::CivilSecond(year, month, day, hour, minute, second),
                         absl::UTCTimeZone());
}

class CmosTest : public ::testing::Test {
 protected:
  static uint8_t readRegister(Cmos& cmos, uint8_t index) {
    const uint8_t select = index;
    cmos.write(0, {&select, 1});
    std::array<uint8_t, 1> byte = {0xee};
    cmos.read(1, byte);
    return byte[0];
  }
  static void writeRegister(Cmos& cmos, uint8_t index, uint8_t value) {
    cmos.write(0, {&index, 1});
    cmos.write(1, {&value, 1});
  }
  uint8_t readRegister(uint8_t index) { return readRegister(cmos_, index); }
  void writeRegister(uint8_t index, uint8_t value) { writeRegister(cmos_, index, value); }

  // Seconds, minutes, hours, weekday, day, month, year, century: what Linux's
  // mc146818_get_time reads.
  static std::vector<uint8_t> time(Cmos& cmos) {
    std::vector<uint8_t> registers;
    for (uint8_t index : {kSeconds, kMinutes, kHours, kWeekday, kDay, kMonth, kYear, kCentury}) {
      registers.push_back(readRegister(cmos, index));
    }
    return registers;
  }
  std::vector<uint8_t> time() { return time(cmos_); }

  // Sunday, 14 March 2027, 15:09:26 UTC.
  FakeClock clock_{utc(2027, 3, 14, 15, 9, 26)};
  Cmos cmos_{clock_};
};

TEST_F(CmosTest, TimeRegistersReadTheHostClockInBcd) {
  EXPECT_EQ(readRegister(kStatusB), 0x02) << "24-hour, BCD";
  EXPECT_THAT(time(), ElementsAre(0x26, 0x09, 0x15, 0x01, 0x14, 0x03, 0x27, 0x20));
  clock_.advance(absl::Seconds(61));
  EXPECT_THAT(time(), ElementsAre(0x27, 0x10, 0x15, 0x01, 0x14, 0x03, 0x27, 0x20));
  clock_.advance(absl::Milliseconds(999));
  EXPECT_EQ(readRegister(kSeconds), 0x27) << "fractions of a second do not round up";
}

TEST_F(CmosTest, BinaryModeReadsPlainNumbers) {
  writeRegister(kStatusB, 0x06);
  EXPECT_THAT(time(), ElementsAre(26, 9, 15, 1, 14, 3, 27, 20));
}

TEST_F(CmosTest, TwelveHourModeMarksAfternoonsInBitSeven) {
  writeRegister(kStatusB, 0x00);  // 12-hour, BCD
  EXPECT_EQ(readRegister(kHours), 0x83) << "3 PM";
  clock_.advance(absl::Hours(9));  // 00:09
  EXPECT_EQ(readRegister(kHours), 0x12) << "12 AM";
  clock_.advance(absl::Hours(11));  // 11:09
  EXPECT_EQ(readRegister(kHours), 0x11);
  clock_.advance(absl::Hours(1));  // 12:09
  EXPECT_EQ(readRegister(kHours), 0x92) << "12 PM";
  writeRegister(kStatusB, 0x04);  // 12-hour, binary
  EXPECT_EQ(readRegister(kHours), 0x8c);
  clock_.advance(absl::Hours(12));  // 00:09
  EXPECT_EQ(readRegister(kHours), 0x0c);
  writeRegister(kStatusB, 0x06);  // 24-hour, binary
  EXPECT_EQ(readRegister(kHours), 0);
}

TEST_F(CmosTest, WeekdayCountsFromSunday) {
  EXPECT_EQ(readRegister(kWeekday), 1) << "Sunday";
  clock_.advance(absl::Hours(24));
  EXPECT_EQ(readRegister(kWeekday), 2) << "Monday";
  clock_.advance(absl::Hours(24 * 5));
  EXPECT_EQ(readRegister(kWeekday), 7) << "Saturday";
  clock_.advance(absl::Hours(24));
  EXPECT_EQ(readRegister(kWeekday), 1);
}

TEST_F(CmosTest, CenturyTurnsWithTheYear) {
  FakeClock clock(utc(1999, 12, 31, 23, 59, 59));
  Cmos cmos(clock);
  EXPECT_THAT(time(cmos), ElementsAre(0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19));
  clock.advance(absl::Seconds(1));
  EXPECT_THAT(time(cmos), ElementsAre(0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20));
}

TEST_F(CmosTest, WritingATimeRegisterShiftsTheGuestClockAndTheShiftPersists) {
  writeRegister(kHours, 0x08);
  EXPECT_THAT(time(), ElementsAre(0x26, 0x09, 0x08, 0x01, 0x14, 0x03, 0x27, 0x20));
  EXPECT_EQ(cmos_.save().clock_offset_seconds(), -7 * 3600);
  clock_.advance(absl::Minutes(90));
  EXPECT_THAT(time(), ElementsAre(0x26, 0x39, 0x09, 0x01, 0x14, 0x03, 0x27, 0x20));
  EXPECT_EQ(clock_.now(), utc(2027, 3, 14, 16, 39, 26)) << "the host clock is untouched";

  writeRegister(kYear, 0x30);
  writeRegister(kDay, 0x01);
  EXPECT_THAT(time(), ElementsAre(0x26, 0x39, 0x09, 0x06, 0x01, 0x03, 0x30, 0x20))
      << "1 March 2030 is a Friday";
  writeRegister(kCentury, 0x21);
  EXPECT_EQ(readRegister(kYear), 0x30);
  EXPECT_EQ(readRegister(kCentury), 0x21);
  writeRegister(kWeekday, 0x03);  // derived from the date: ignored
  EXPECT_EQ(readRegister(kWeekday), 0x04) << "1 March 2130 is a Wednesday";
  clock_.advance(absl::Hours(24));
  EXPECT_EQ(readRegister(kDay), 0x02);
  EXPECT_EQ(readRegister(kWeekday), 0x05);
}

TEST_F(CmosTest, WritesFollowTheDataMode) {
  writeRegister(kStatusB, 0x06);  // binary, 24-hour
  writeRegister(kMinutes, 45);
  writeRegister(kSeconds, 0);
  EXPECT_EQ(readRegister(kMinutes), 45);
  EXPECT_EQ(readRegister(kSeconds), 0);
  writeRegister(kStatusB, 0x00);  // BCD, 12-hour
  writeRegister(kHours, 0x81);    // 1 PM
  writeRegister(kStatusB, 0x02);
  EXPECT_EQ(readRegister(kHours), 0x13);
  writeRegister(kStatusB, 0x00);
  writeRegister(kHours, 0x12);  // 12 AM
  writeRegister(kStatusB, 0x02);
  EXPECT_EQ(readRegister(kHours), 0x00);
  writeRegister(kStatusB, 0x00);
  writeRegister(kHours, 0x92);  // 12 PM
  writeRegister(kStatusB, 0x02);
  EXPECT_EQ(readRegister(kHours), 0x12);
  EXPECT_THAT(time(), ElementsAre(0x00, 0x45, 0x12, 0x01, 0x14, 0x03, 0x27, 0x20));
}

// What Linux's mc146818_set_time does: SET on, year, month, day, hours, minutes, seconds,
// SET off.
void setTimeAsLinuxDoes(Cmos& cmos, const std::array<uint8_t, 6>& ymdhms,
                        FakeClock* clock_between_writes = nullptr) {
  auto write = [&cmos](uint8_t index, uint8_t value) {
    cmos.write(0, {&index, 1});
    cmos.write(1, {&value, 1});
  };
  auto read = [&cmos](uint8_t index) {
    cmos.write(0, {&index, 1});
    std::array<uint8_t, 1> byte{};
    cmos.read(1, byte);
    return byte[0];
  };
  const uint8_t control = read(kStatusB);
  write(kStatusB, control | 0x80);
  const uint8_t registers[] = {kYear, kMonth, kDay, kHours, kMinutes, kSeconds};
  for (size_t i = 0; i < 6; ++i) {
    write(registers[i], ymdhms[i]);
    if (clock_between_writes != nullptr) clock_between_writes->advance(absl::Seconds(1));
  }
  write(kStatusB, control);
}

TEST_F(CmosTest, SettingTheTimeUnderTheSetBitIsNotNormalizedInBetween) {
  FakeClock clock(utc(2027, 1, 31, 10, 0, 0));
  Cmos cmos(clock);
  // 15 February: month 2 written while the day is still 31 must not make it 3 March.
  setTimeAsLinuxDoes(cmos, {0x27, 0x02, 0x15, 0x08, 0x30, 0x00});
  EXPECT_THAT(time(cmos), ElementsAre(0x00, 0x30, 0x08, 0x02, 0x15, 0x02, 0x27, 0x20));
  clock.advance(absl::Seconds(5));
  EXPECT_EQ(readRegister(cmos, kSeconds), 0x05) << "the clock runs again once SET is off";
}

TEST_F(CmosTest, TheClockDoesNotTickIntoFieldsWhileTheGuestSetsThem) {
  // The guest writes back its own time just before midnight; the host clock moves on by a
  // second after every register: the result must be the written time, not a day later.
  FakeClock clock(utc(2027, 1, 31, 23, 59, 58));
  Cmos cmos(clock);
  setTimeAsLinuxDoes(cmos, {0x27, 0x01, 0x31, 0x23, 0x59, 0x58}, &clock);
  EXPECT_THAT(time(cmos), ElementsAre(0x58, 0x59, 0x23, 0x01, 0x31, 0x01, 0x27, 0x20));
  EXPECT_EQ(cmos.save().clock_offset_seconds(), -6);
}

TEST_F(CmosTest, WhileSetIsOnTheTimeRegistersHoldWhatWasWritten) {
  writeRegister(kStatusB, 0x82);
  EXPECT_THAT(time(), ElementsAre(0x26, 0x09, 0x15, 0x01, 0x14, 0x03, 0x27, 0x20))
      << "frozen at the time SET went on";
  clock_.advance(absl::Seconds(10));
  EXPECT_EQ(readRegister(kSeconds), 0x26);
  writeRegister(kMinutes, 0x44);
  EXPECT_EQ(readRegister(kMinutes), 0x44);
  EXPECT_EQ(cmos_.save().clock_offset_seconds(), 0) << "nothing applied yet";
  writeRegister(kStatusB, 0x02);
  EXPECT_THAT(time(), ElementsAre(0x26, 0x44, 0x15, 0x01, 0x14, 0x03, 0x27, 0x20));
}

TEST_F(CmosTest, StatusRegisters) {
  EXPECT_EQ(readRegister(kStatusA), 0x26) << "32.768 kHz, 1024 Hz";
  writeRegister(kStatusA, 0xa6);
  EXPECT_EQ(readRegister(kStatusA), 0x26) << "update in progress never reads as set";
  writeRegister(kStatusA, 0x2f);
  EXPECT_EQ(readRegister(kStatusA), 0x2f);

  EXPECT_EQ(readRegister(kStatusB), 0x02);
  writeRegister(kStatusB, 0x12);  // update-ended interrupt enable, 24-hour
  EXPECT_EQ(readRegister(kStatusB), 0x12);

  EXPECT_EQ(readRegister(kStatusC), 0x00) << "no interrupt flags";
  writeRegister(kStatusC, 0xff);
  EXPECT_EQ(readRegister(kStatusC), 0x00);

  EXPECT_EQ(readRegister(kStatusD), 0x80) << "valid RAM and time";
  writeRegister(kStatusD, 0x00);
  EXPECT_EQ(readRegister(kStatusD), 0x80);
}

TEST_F(CmosTest, OtherRegistersArePlainRam) {
  for (uint8_t index : {uint8_t{0x01}, uint8_t{0x03}, uint8_t{0x05}}) {  // alarms
    writeRegister(index, 0x42);
    EXPECT_EQ(readRegister(index), 0x42);
  }
  for (uint8_t index = 0x0e; index < 0x80; ++index) {
    if (index == kCentury) continue;
    writeRegister(index, static_cast<uint8_t>(index ^ 0x5a));
  }
  for (uint8_t index = 0x0e; index < 0x80; ++index) {
    if (index == kCentury) continue;
    EXPECT_EQ(readRegister(index), index ^ 0x5a) << "register " << int{index};
  }
  EXPECT_THAT(time(), ElementsAre(0x26, 0x09, 0x15, 0x01, 0x14, 0x03, 0x27, 0x20));
}

TEST_F(CmosTest, IndexPortIgnoresTheNmiMaskBitAndReadsAsIdle) {
  const uint8_t index_with_nmi_mask = 0x80 | 0x10;
  cmos_.write(0, {&index_with_nmi_mask, 1});
  const uint8_t value = 0x42;
  cmos_.write(1, {&value, 1});
  EXPECT_EQ(readRegister(0x10), 0x42);
  EXPECT_EQ(cmos_.save().index(), 0x10u);

  std::array<uint8_t, 1> index_port{};
  cmos_.read(0, index_port);
  EXPECT_EQ(index_port[0], 0xff) << "the index port is write-only";
  std::array<uint8_t, 2> wide = {0, 0};
  cmos_.read(1, wide);
  EXPECT_THAT(wide, ElementsAre(0x42, 0xff));

  const uint8_t seconds_with_nmi_mask = 0x80;
  cmos_.write(0, {&seconds_with_nmi_mask, 1});
  std::array<uint8_t, 1> data{};
  cmos_.read(1, data);
  EXPECT_EQ(data[0], 0x26);
}

TEST_F(CmosTest, SaveRestoreSaveIsStableAndTheRestoredClockReadsTheSame) {
  writeRegister(0x20, 0xab);
  writeRegister(0x7f, 0xcd);
  writeRegister(kStatusB, 0x06);
  writeRegister(kYear, 31);  // a guest clock four years ahead
  cmos_.write(0, std::array<uint8_t, 1>{0x20});
  const flotilla::v1::CmosState saved = cmos_.save();
  EXPECT_EQ(saved.ram().size(), 128u);
  EXPECT_EQ(saved.index(), 0x20u);
  EXPECT_EQ(saved.clock_offset_seconds(),
            absl::ToInt64Seconds(utc(2031, 3, 14, 15, 9, 26) - utc(2027, 3, 14, 15, 9, 26)));

  Cmos restored(clock_);
  restored.restore(saved);
  EXPECT_EQ(restored.save().DebugString(), saved.DebugString());
  std::array<uint8_t, 1> selected{};
  restored.read(1, selected);
  EXPECT_EQ(selected[0], 0xab) << "the index survives";
  for (uint8_t index = 0; index < 0x80; ++index) {
    EXPECT_EQ(readRegister(restored, index), readRegister(cmos_, index))
        << "register " << int{index};
  }
  clock_.advance(absl::Hours(50));
  EXPECT_EQ(time(restored), time(cmos_));
  EXPECT_THAT(time(restored), ElementsAre(26, 9, 17, 1, 16, 3, 31, 20))
      << "Sunday 16 March 2031, 17:09:26";
}

TEST_F(CmosTest, ASnapshotTakenWhileTheGuestSetsTheTimeKeepsWhatItWrote) {
  writeRegister(kStatusB, 0x82);
  writeRegister(kYear, 0x28);
  writeRegister(kMonth, 0x02);
  const flotilla::v1::CmosState saved = cmos_.save();

  Cmos restored(clock_);
  restored.restore(saved);
  EXPECT_EQ(restored.save().DebugString(), saved.DebugString());
  for (Cmos* cmos : {&cmos_, &restored}) {
    writeRegister(*cmos, kDay, 0x29);  // 29 February 2028 exists
    writeRegister(*cmos, kStatusB, 0x02);
    EXPECT_THAT(time(*cmos), ElementsAre(0x26, 0x09, 0x15, 0x03, 0x29, 0x02, 0x28, 0x20));
  }
}

TEST_F(CmosTest, RestoreZeroFillsShortRamAndMasksTheIndex) {
  flotilla::v1::CmosState state;
  state.set_ram(std::string("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x26\x02", 12));
  state.set_index(0xff);
  state.set_clock_offset_seconds(-3600);
  cmos_.restore(state);
  const flotilla::v1::CmosState saved = cmos_.save();
  EXPECT_EQ(saved.ram().size(), 128u);
  EXPECT_EQ(saved.ram().substr(0, 12), state.ram());
  EXPECT_EQ(saved.ram().substr(12), std::string(116, '\0'));
  EXPECT_EQ(saved.index(), 0x7fu);
  EXPECT_EQ(readRegister(kHours), 0x14);
  EXPECT_EQ(readRegister(kStatusD), 0x00) << "RAM as saved, even the valid bit";
}

}  // namespace
}  // namespace flotilla::vmm
