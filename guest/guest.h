// Ending the guest and halting: the debug-exit port and the CPL3 -> CPL0 service gate.
#pragma once

#include <stdint.h>

// Values written to the debug-exit port; QEMU's isa-debug-exit (and Flotilla's VMM) then exit
// with status (value << 1) | 1.
enum GuestExit {
  GUEST_EXIT_SUCCESS = 0,
  GUEST_EXIT_CHECK_FAILED = 1,      // a workload check failed
  GUEST_EXIT_BAD_COMMAND_LINE = 2,  // bad command line (or unusable boot structures)
  GUEST_EXIT_EXCEPTION = 3,         // a CPU exception
};

// Writes `code` to the debug-exit port, then halts this CPU forever with interrupts disabled
// (what a VMM without the device sees as the end). Works at CPL3 and at CPL0.
__attribute__((noreturn)) void exitGuest(enum GuestExit code);

// CPL3: halts forever with interrupts disabled.
__attribute__((noreturn)) void haltForever(void);

// CPL3: halts forever with interrupts enabled (the idle workload).
__attribute__((noreturn)) void idleForever(void);
