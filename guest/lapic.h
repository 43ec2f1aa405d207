// The local APIC in xAPIC mode, programmed from CPL3 through its MMIO page at 0xfee00000
// (mapped with the User bit by the boot page tables). Every access is a VM exit.
#pragma once

#include <stdint.h>

// Software-enables this CPU's LAPIC (spurious vector VECTOR_SPURIOUS) and accepts all
// interrupt priorities.
void lapicEnable(void);

// This CPU's local APIC ID (the destination for IOAPIC routes to it).
uint8_t lapicId(void);

// Periodic timer on VECTOR_TIMER: divide by 16, `initial_count` bus cycles per period.
void lapicStartPeriodicTimer(uint32_t initial_count);
void lapicStopTimer(void);

// INIT, then SIPI twice (vector = trampoline page number), to all CPUs but this one.
void lapicStartOtherCpus(uint64_t trampoline_paddr);

// Timer interrupts counted by timer_interrupt (vectors.S).
extern volatile uint64_t lapic_timer_ticks;
