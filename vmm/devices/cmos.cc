// CMOS RAM and RTC (see cmos.h). Register map from the MC146818 data sheet; the century byte
// at 0x32 as on IBM PCs.
#include "vmm/devices/cmos.h"

#include <algorithm>
#include <iterator>

namespace flotilla::vmm {
namespace {

constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kWeekday = 0x06;
constexpr uint8_t kDay = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kStatusA = 0x0a;
constexpr uint8_t kStatusB = 0x0b;
constexpr uint8_t kStatusC = 0x0c;
constexpr uint8_t kStatusD = 0x0d;
constexpr uint8_t kCentury = 0x32;

constexpr uint8_t kStatusBSet = 0x80;     // updates stopped: the guest is setting the time
constexpr uint8_t kStatusBBinary = 0x04;  // data mode: binary rather than BCD
constexpr uint8_t kStatusB24Hour = 0x02;
constexpr uint8_t kStatusDValid = 0x80;  // battery good, time valid
constexpr uint8_t kHourPm = 0x80;        // in 12-hour mode

constexpr uint8_t kTimeRegisters[] = {kSeconds, kMinutes, kHours, kWeekday,
                                      kDay,     kMonth,   kYear,  kCentury};

bool isTimeRegister(uint8_t index) {
  return std::find(std::begin(kTimeRegisters), std::end(kTimeRegisters), index) !=
         std::end(kTimeRegisters);
}

}  // namespace

Cmos::Cmos(const Clock& clock) : clock_(clock) {
  ram_[kStatusA] = 0x26;  // 32.768 kHz time base, 1024 Hz periodic rate
  ram_[kStatusB] = kStatusB24Hour;
  ram_[kStatusD] = kStatusDValid;
}

absl::Time Cmos::guestTime() const {
  return clock_.now() + absl::Seconds(offset_seconds_);
}

uint8_t Cmos::encode(int value) const {
  if (ram_[kStatusB] & kStatusBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

int Cmos::decode(uint8_t value) const {
  if (ram_[kStatusB] & kStatusBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t Cmos::readRegister(uint8_t index) const {
  // While SET stops updates, the time registers are plain RAM holding what the guest wrote.
  if ((ram_[kStatusB] & kStatusBSet) && isTimeRegister(index)) return ram_[index];
  const absl::CivilSecond now = absl::ToCivilSecond(guestTime(), absl::UTCTimeZone());
  switch (index) {
    case kSeconds:
      return encode(now.second());
    case kMinutes:
      return encode(now.minute());
    case kHours: {
      if (ram_[kStatusB] & kStatusB24Hour) return encode(now.hour());
      int hour12 = now.hour() % 12 == 0 ? 12 : now.hour() % 12;
      return static_cast<uint8_t>(encode(hour12) | (now.hour() >= 12 ? kHourPm : 0));
    }
    case kWeekday:  // 1 = Sunday
      return encode(static_cast<int>(absl::GetWeekday(now)) == 6
                        ? 1
                        : static_cast<int>(absl::GetWeekday(now)) + 2);
    case kDay:
      return encode(now.day());
    case kMonth:
      return encode(now.month());
    case kYear:
      return encode(static_cast<int>(now.year() % 100));
    case kCentury:
      return encode(static_cast<int>(now.year() / 100));
    case kStatusA:
      return ram_[kStatusA] & 0x7f;  // update in progress: never
    case kStatusC:
      return 0;  // no interrupt flags
    default:
      return ram_[index];
  }
}

void Cmos::writeRegister(uint8_t index, uint8_t value) {
  // Linux sets the time with SET on, one register at a time, year first: applying each write
  // to the running clock would normalize the dates in between (January 31 with month 2 is
  // March 3) and let the clock tick between the fields. So SET freezes the registers (the
  // time when it went on), writes land in them, and clearing SET sets the clock from them.
  if (index == kStatusB) {
    const bool was_set = ram_[kStatusB] & kStatusBSet;
    const bool set = value & kStatusBSet;
    if (was_set && !set) {
      const uint8_t hours = ram_[kHours];
      int hour = (ram_[kStatusB] & kStatusB24Hour)
                     ? decode(hours)
                     : decode(hours & 0x7f) % 12 + ((hours & kHourPm) ? 12 : 0);
      setGuestTime(absl::CivilSecond(decode(ram_[kCentury]) * 100 + decode(ram_[kYear]),
                                     decode(ram_[kMonth]), decode(ram_[kDay]), hour,
                                     decode(ram_[kMinutes]), decode(ram_[kSeconds])));
    }
    if (!was_set && set) {
      ram_[kStatusB] = value & static_cast<uint8_t>(~kStatusBSet);  // the new data mode
      for (uint8_t reg : kTimeRegisters) ram_[reg] = readRegister(reg);
    }
    ram_[kStatusB] = value;
    return;
  }
  if ((ram_[kStatusB] & kStatusBSet) && isTimeRegister(index)) {
    ram_[index] = value;
    return;
  }
  absl::CivilSecond now = absl::ToCivilSecond(guestTime(), absl::UTCTimeZone());
  int64_t year = now.year();
  int month = now.month(), day = now.day(), hour = now.hour(), minute = now.minute(),
      second = now.second();
  switch (index) {
    case kSeconds:
      second = decode(value);
      break;
    case kMinutes:
      minute = decode(value);
      break;
    case kHours:
      if (ram_[kStatusB] & kStatusB24Hour) {
        hour = decode(value);
      } else {
        hour = decode(value & 0x7f) % 12 + ((value & kHourPm) ? 12 : 0);
      }
      break;
    case kDay:
      day = decode(value);
      break;
    case kMonth:
      month = decode(value);
      break;
    case kYear:
      year = year / 100 * 100 + decode(value);
      break;
    case kCentury:
      year = decode(value) * 100 + year % 100;
      break;
    case kStatusC:
    case kStatusD:
      return;  // read-only
    case kWeekday:
      return;  // derived from the date
    default:
      ram_[index] = value;
      return;
  }
  setGuestTime(absl::CivilSecond(year, month, day, hour, minute, second));
}

void Cmos::setGuestTime(absl::CivilSecond time) {
  absl::Time set = absl::FromCivil(time, absl::UTCTimeZone());
  offset_seconds_ = absl::ToUnixSeconds(set) - absl::ToUnixSeconds(clock_.now());
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  absl::MutexLock lock(&mu_);
  std::fill(data.begin(), data.end(), 0xff);
  // The index port is write-only; reading it returns the bus's idle value.
  if (offset == 1) data[0] = readRegister(index_);
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  absl::MutexLock lock(&mu_);
  if (offset == 0) {
    index_ = data[0] & 0x7f;  // bit 7 masks NMIs on real hardware; nothing to mask here
  } else {
    writeRegister(index_, data[0]);
  }
}

flotilla::v1::CmosState Cmos::save() const {
  absl::MutexLock lock(&mu_);
  flotilla::v1::CmosState state;
  state.set_ram(std::string(ram_.begin(), ram_.end()));
  state.set_index(index_);
  state.set_clock_offset_seconds(offset_seconds_);
  return state;
}

void Cmos::restore(const flotilla::v1::CmosState& state) {
  absl::MutexLock lock(&mu_);
  ram_.fill(0);
  std::copy_n(state.ram().begin(), std::min(state.ram().size(), ram_.size()), ram_.begin());
  index_ = static_cast<uint8_t>(state.index() & 0x7f);
  offset_seconds_ = state.clock_offset_seconds();
}

}  // namespace flotilla::vmm
