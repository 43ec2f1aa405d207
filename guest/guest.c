// The exit path and the halts (see guest.h). `hlt` faults at CPL3, so halting goes through the
// VECTOR_SERVICE gate (vectors.S), whose handler runs `hlt` at CPL0.
#include "guest.h"

#include "io.h"
#include "layout.h"

#define DEBUG_EXIT_PORT 0xf4

static inline uint64_t currentPrivilegeLevel(void) {
  uint64_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  return cs & 3;
}

// `int $3` spelled as bytes: the assembler would emit the one-byte int3 (0xcc), which
// debuggers (and KVM's software-breakpoint support) take for their own breakpoints.
_Static_assert(VECTOR_SERVICE == 3, "the encoding below is int $3");
__attribute__((noreturn)) static void callGate(uint64_t service) {
  __asm__ volatile(".byte 0xcd, 0x03" : : "a"(service) : "memory");
  __builtin_unreachable();
}

void exitGuest(enum GuestExit code) {
  outl(DEBUG_EXIT_PORT, (uint32_t)code);
  if (currentPrivilegeLevel() == 0) {
    for (;;) __asm__ volatile("cli; hlt");
  }
  haltForever();
}

void haltForever(void) {
  callGate(SERVICE_HALT_FOREVER);
}

void idleForever(void) {
  callGate(SERVICE_IDLE_FOREVER);
}
