// Starting the application processors (from CPL3: the LAPIC page and the trampoline page are
// mapped with the User bit) and what they run once started.
#include <stdint.h>

#include "io.h"
#include "kernel.h"
#include "lapic.h"
#include "layout.h"
#include "lib.h"
#include "tsc.h"
#include "workloads/workloads.h"

#define WAIT_FOR_EXPECTED_US 2000000
#define WAIT_TO_COUNT_US 300000

extern const char ap_trampoline_start[];  // trampoline.S
extern const char ap_trampoline_end[];

uint32_t startOtherCpus(uint32_t expected) {
  // The VMM's boot data below 1 MiB was copied at boot: the trampoline page is free to reuse.
  memcpy((void*)AP_TRAMPOLINE_ADDR, ap_trampoline_start,
         (size_t)(ap_trampoline_end - ap_trampoline_start));
  lapicStartOtherCpus(AP_TRAMPOLINE_ADDR);
  const uint64_t start = rdtsc();
  const uint64_t wait = microsecondsToTsc(expected != 0 ? WAIT_FOR_EXPECTED_US : WAIT_TO_COUNT_US);
  while (rdtsc() - start < wait) {
    if (expected != 0 && __atomic_load_n(&cpus_started, __ATOMIC_SEQ_CST) >= expected) break;
    cpuRelax();
  }
  return __atomic_load_n(&cpus_started, __ATOMIC_SEQ_CST);
}

// An AP at CPL3: spin. It has no work; it exists so that the VMM runs more than one vCPU.
void apUserMain(uint64_t cpu) {
  (void)cpu;
  for (;;) cpuRelax();
}
