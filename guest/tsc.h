// Time from the TSC, calibrated once at boot against PIT channel 2 (all at CPL3).
#pragma once

#include <stdint.h>

// At CPL0, before anything else reads the TSC: turns on kvmclock when the hypervisor offers it
// (KVM's CPUID leaves, CLOCKSOURCE2), so that calibrateTsc() can take the TSC frequency from
// it. Returns 1 when kvmclock is on.
int enableKvmclock(void);

// The TSC frequency: from kvmclock when enableKvmclock() turned it on (the hypervisor's exact
// value), else measured against PIT channel 2 (ports 0x42/0x43), which a vCPU preempted
// during the measurement can skew. Returns 0 when neither works.
uint64_t calibrateTsc(void);

// The calibrated frequency, for the conversions below (set by calibrateTsc()).
extern uint64_t tsc_khz;

static inline uint64_t tscPerSecond(void) {
  return tsc_khz * 1000;
}
static inline uint64_t tscToMicroseconds(uint64_t ticks) {
  return ticks * 1000 / tsc_khz;
}
static inline uint64_t microsecondsToTsc(uint64_t us) {
  return us * tsc_khz / 1000;
}

// Spins (at CPL3) for `us` microseconds of TSC time.
void delayMicroseconds(uint64_t us);

// "At most once per period" for progress lines: due when `period` TSC ticks passed since the
// last time it was due, or when the TSC went backwards (a restore onto another host may do
// that), so that a jump never silences the guest.
struct RateLimiter {
  uint64_t next;
  uint64_t period;
};

static inline struct RateLimiter rateLimiterStart(uint64_t now, uint64_t period) {
  struct RateLimiter limiter = {now + period, period};
  return limiter;
}

static inline int rateLimiterDue(struct RateLimiter* limiter, uint64_t now) {
  if (now < limiter->next && now + limiter->period >= limiter->next) return 0;
  limiter->next = now + limiter->period;
  return 1;
}
