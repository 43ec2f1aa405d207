// IOAPIC programming (see ioapic.h): an index register (IOREGSEL) selects a 32-bit register
// that the data window (IOWIN) then reads or writes.
#include "ioapic.h"

#include "io.h"
#include "layout.h"

#define IOAPIC_IOREGSEL 0x00
#define IOAPIC_IOWIN 0x10
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_REDIRECTION 0x10  // entry N: low half at 0x10 + 2N, high half at 0x11 + 2N

// Low half of a redirection entry: vector in bits 0-7; delivery mode 000 (fixed), destination
// mode 0 (physical), polarity 0 (active high), trigger 0 (edge) and mask 0 are all zero bits.
#define REDIRECTION_MASKED (1u << 16)

static uint32_t ioapicRead(uint32_t reg) {
  mmioWrite32(IOAPIC_BASE + IOAPIC_IOREGSEL, reg);
  return mmioRead32(IOAPIC_BASE + IOAPIC_IOWIN);
}

static void ioapicWrite(uint32_t reg, uint32_t value) {
  mmioWrite32(IOAPIC_BASE + IOAPIC_IOREGSEL, reg);
  mmioWrite32(IOAPIC_BASE + IOAPIC_IOWIN, value);
}

uint32_t ioapicPins(void) {
  // Bits 16-23: the index of the highest redirection entry.
  return ((ioapicRead(IOAPIC_REG_VERSION) >> 16) & 0xff) + 1;
}

void ioapicRouteEdge(uint32_t pin, uint8_t vector, uint8_t apic_id) {
  const uint32_t reg = IOAPIC_REG_REDIRECTION + 2 * pin;
  // Masked while the destination changes, so that no interrupt goes to a half-written entry.
  ioapicWrite(reg, REDIRECTION_MASKED | vector);
  ioapicWrite(reg + 1, (uint32_t)apic_id << 24);  // destination APIC ID: bits 56-63
  ioapicWrite(reg, vector);
}
