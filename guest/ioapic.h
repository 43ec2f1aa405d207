// The I/O APIC (Intel 82093AA datasheet): routes a device's interrupt pin (GSI) to a vector of
// one CPU's local APIC. Programmed from CPL3 through its MMIO window at IOAPIC_BASE.
#pragma once

#include <stdint.h>

// Redirection entries of the IOAPIC (pins), from its version register.
uint32_t ioapicPins(void);

// Routes `pin` to `vector` on the CPU whose local APIC ID is `apic_id`: fixed delivery,
// physical destination, edge-triggered, active high, unmasked.
void ioapicRouteEdge(uint32_t pin, uint8_t vector, uint8_t apic_id);
