// counter: byte 0 of every page of a region at WORKLOAD_REGION_BASE counts the passes over the
// region (modulo 256). Before incrementing a page in pass p its counter must read p, so
// memory that a snapshot/restore or a migration lost or rolled back is caught at once: the
// destination must hold all counters equal except for one step (QEMU's migration test checks
// the same pattern from outside).
#include <stdint.h>

#include "guest.h"
#include "io.h"
#include "layout.h"
#include "print.h"
#include "tsc.h"
#include "workloads/workloads.h"

void runCounter(const struct GuestConfig* config) {
  volatile uint8_t* region = (volatile uint8_t*)WORKLOAD_REGION_BASE;
  const uint64_t pages = config->counter_mib * PAGES_PER_MIB;
  // Start from zero whatever the memory held (a warm reboot keeps RAM).
  for (uint64_t page = 0; page < pages; ++page) region[page * WORKLOAD_PAGE_SIZE] = 0;

  // Serial output costs a VM exit per byte: one progress line per second at most.
  struct RateLimiter progress = rateLimiterStart(rdtsc(), tscPerSecond());
  for (uint64_t pass = 0;; ++pass) {
    const uint8_t expected = (uint8_t)pass;
    for (uint64_t page = 0; page < pages; ++page) {
      volatile uint8_t* counter = region + page * WORKLOAD_PAGE_SIZE;
      const uint8_t found = *counter;
      if (found != expected) {
        report("error counter mismatch page=%lu expected=%u found=%u", page, expected, found);
        exitGuest(GUEST_EXIT_CHECK_FAILED);
      }
      *counter = (uint8_t)(found + 1);
    }
    if (rateLimiterDue(&progress, rdtsc())) report("counter pass=%lu", pass + 1);
  }
}
