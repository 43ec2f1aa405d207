// xAPIC programming (see lapic.h). Register offsets and bits from the Intel SDM, vol. 3,
// chapter "Advanced Programmable Interrupt Controller".
#include "lapic.h"

#include "io.h"
#include "layout.h"
#include "tsc.h"

#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_DIVIDE 0x3e0

#define SVR_APIC_ENABLE 0x100
#define LVT_MASKED 0x10000
#define LVT_TIMER_PERIODIC 0x20000
#define TIMER_DIVIDE_BY_16 0x3
#define ICR_DELIVERY_INIT 0x500
#define ICR_DELIVERY_STARTUP 0x600
#define ICR_LEVEL_ASSERT 0x4000
#define ICR_DELIVERY_PENDING 0x1000
#define ICR_ALL_EXCLUDING_SELF 0xc0000  // destination shorthand 11b

volatile uint64_t lapic_timer_ticks;

static uint32_t lapicRead(uint32_t reg) {
  return mmioRead32(LAPIC_BASE + reg);
}
static void lapicWrite(uint32_t reg, uint32_t value) {
  mmioWrite32(LAPIC_BASE + reg, value);
}

uint8_t lapicId(void) {
  return (uint8_t)(lapicRead(LAPIC_ID) >> 24);  // xAPIC: the ID is in bits 24-31
}

void lapicEnable(void) {
  lapicWrite(LAPIC_TPR, 0);
  lapicWrite(LAPIC_SVR, SVR_APIC_ENABLE | VECTOR_SPURIOUS);
}

void lapicStartPeriodicTimer(uint32_t initial_count) {
  lapicWrite(LAPIC_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
  lapicWrite(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | VECTOR_TIMER);
  lapicWrite(LAPIC_TIMER_INITIAL, initial_count);  // writing the count starts the timer
}

void lapicStopTimer(void) {
  lapicWrite(LAPIC_LVT_TIMER, LVT_MASKED | VECTOR_TIMER);
  lapicWrite(LAPIC_TIMER_INITIAL, 0);  // a zero count stops it
}

static void sendIpi(uint32_t command) {
  lapicWrite(LAPIC_ICR_HIGH, 0);  // destination field: unused with a shorthand
  lapicWrite(LAPIC_ICR_LOW, command);
  // KVM delivers at once; real APICs report the IPI pending for a short while.
  while (lapicRead(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING) cpuRelax();
}

void lapicStartOtherCpus(uint64_t trampoline_paddr) {
  // The universal start-up algorithm (Intel MP spec, appendix B.4): INIT resets the APs into
  // wait-for-SIPI (firmware may have left them halted), then two SIPIs 200 us apart.
  sendIpi(ICR_ALL_EXCLUDING_SELF | ICR_LEVEL_ASSERT | ICR_DELIVERY_INIT);
  delayMicroseconds(10000);
  uint32_t vector = (uint32_t)(trampoline_paddr >> 12);  // the AP starts at vector * 4096
  for (int i = 0; i < 2; ++i) {
    sendIpi(ICR_ALL_EXCLUDING_SELF | ICR_LEVEL_ASSERT | ICR_DELIVERY_STARTUP | vector);
    delayMicroseconds(200);
  }
}
