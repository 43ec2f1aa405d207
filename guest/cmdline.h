// The guest's command line: whitespace-separated key=value words (README.md lists the keys).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum Workload {
  WORKLOAD_IDLE,
  WORKLOAD_SELFTEST,
  WORKLOAD_COMPUTE,
  WORKLOAD_COUNTER,
  WORKLOAD_DIRTY,
};

struct GuestConfig {
  enum Workload workload;
  const char* workload_name;
  uint64_t cpus;         // selftest: CPUs expected (the BSP included); 0 = count who starts
  uint64_t iterations;   // compute: 0 = run forever
  uint64_t counter_mib;  // counter: region size
  uint64_t dirty_mib;    // dirty: region size
  uint64_t rate_mbps;    // dirty: pace, in MB/s (10^6 bytes per second)
  uint64_t duration_s;   // dirty: 0 = run forever
};

// Parses `cmdline` into `config`. On failure returns false with the reason in `why`.
bool parseCommandLine(const char* cmdline, struct GuestConfig* config, char* why, size_t why_size);
