// compute: an integer hash loop (FNV-1a style over the iteration index, with a fold of the
// high half), pure CPL3 register work. The checksum is a function of `iterations` only, so a
// test can recompute it:
//   h = 0xcbf29ce484222325; for i in [0, n): h ^= i; h *= 0x100000001b3; h ^= h >> 32
#include <stdint.h>

#include "guest.h"
#include "io.h"
#include "print.h"
#include "tsc.h"
#include "workloads/workloads.h"

#define HASH_OFFSET_BASIS 0xcbf29ce484222325ull
#define HASH_PRIME 0x100000001b3ull
#define CHUNK (1u << 20)  // iterations between two looks at the clock when running forever

static uint64_t hashRange(uint64_t hash, uint64_t first, uint64_t end) {
  for (uint64_t i = first; i < end; ++i) {
    hash ^= i;
    hash *= HASH_PRIME;
    hash ^= hash >> 32;
  }
  return hash;
}

void runCompute(const struct GuestConfig* config) {
  if (config->iterations != 0) {
    uint64_t hash = hashRange(HASH_OFFSET_BASIS, 0, config->iterations);
    report("result compute iterations=%lu checksum=0x%lx", config->iterations, hash);
    exitGuest(GUEST_EXIT_SUCCESS);
  }
  uint64_t hash = HASH_OFFSET_BASIS;
  struct RateLimiter progress = rateLimiterStart(rdtsc(), tscPerSecond());
  for (uint64_t done = 0;; done += CHUNK) {
    hash = hashRange(hash, done, done + CHUNK);
    if (rateLimiterDue(&progress, rdtsc())) {
      report("compute iterations=%lu checksum=0x%lx", done + CHUNK, hash);
    }
  }
}
