// dirty: dirties one byte per page of a region at WORKLOAD_REGION_BASE at a paced rate, and
// measures the longest gap between two consecutive TSC readings of its loop: a VM pause (a
// migration's stop-and-copy, a snapshot) shows up as such a gap.
#include <stdint.h>

#include "guest.h"
#include "io.h"
#include "layout.h"
#include "print.h"
#include "tsc.h"
#include "workloads/workloads.h"

// Pages dirtied between two TSC readings at most, so that the gap measurement stays fine.
#define MAX_PAGES_PER_STEP 16
// Gaps longer than this (pauses) earn no pacing credit: after a pause the guest resumes at the
// requested rate instead of catching up in a burst.
#define MAX_CREDITED_GAP_US 10000

void runDirty(const struct GuestConfig* config) {
  volatile uint8_t* region = (volatile uint8_t*)WORKLOAD_REGION_BASE;
  const uint64_t pages = config->dirty_mib * PAGES_PER_MIB;
  const uint64_t max_credited_gap = microsecondsToTsc(MAX_CREDITED_GAP_US);
  const uint64_t duration = config->duration_s * tscPerSecond();  // 0: forever

  // Touch every page once before the clock starts: the first write to a page makes the host
  // allocate and map it, which must not count as a pause of the VM.
  for (uint64_t i = 0; i < pages; ++i) region[i * WORKLOAD_PAGE_SIZE] = 0;

  uint64_t elapsed = 0;  // TSC ticks since the start
  uint64_t credit = 0;   // ticks of running time that pace the dirtying
  uint64_t max_gap = 0;
  uint64_t dirtied = 0;  // pages, in total
  uint64_t passes = 0;
  uint64_t page = 0;
  uint64_t last = rdtsc();
  struct RateLimiter progress = rateLimiterStart(last, tscPerSecond());
  for (;;) {
    const uint64_t now = rdtsc();
    const uint64_t gap = now > last ? now - last : 0;  // the TSC may step back after a restore
    last = now;
    if (gap > max_gap) max_gap = gap;
    elapsed += gap;
    credit += gap < max_credited_gap ? gap : max_credited_gap;

    // rate_mbps MB/s is rate_mbps bytes per microsecond.
    const uint64_t allowed = tscToMicroseconds(credit) * config->rate_mbps / WORKLOAD_PAGE_SIZE;
    for (int step = 0; step < MAX_PAGES_PER_STEP && dirtied < allowed; ++step) {
      region[page * WORKLOAD_PAGE_SIZE]++;
      ++dirtied;
      if (++page == pages) {
        page = 0;
        ++passes;
      }
    }
    if (dirtied >= allowed) cpuRelax();

    if (duration != 0 && elapsed >= duration) {
      report("result dirty passes=%lu max_pause_us=%lu", passes, tscToMicroseconds(max_gap));
      exitGuest(GUEST_EXIT_SUCCESS);
    }
    if (rateLimiterDue(&progress, now)) {
      report("dirty pass=%lu max_pause_us=%lu", passes, tscToMicroseconds(max_gap));
      // Our own serial output takes milliseconds of VM exits: not a pause of the VM.
      const uint64_t after = rdtsc();
      elapsed += after > now ? after - now : 0;
      last = after;
    }
  }
}
