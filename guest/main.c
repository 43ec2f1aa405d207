// The CPL3 main of the BSP: console, command line, TSC calibration, the `ready` line, then the
// chosen workload.
#include "boot_info.h"
#include "cmdline.h"
#include "guest.h"
#include "kernel.h"
#include "layout.h"
#include "print.h"
#include "serial.h"
#include "tsc.h"
#include "workloads/workloads.h"

// The counter and dirty regions must lie in RAM at WORKLOAD_REGION_BASE.
static bool checkRegion(const struct GuestConfig* config, char* why, size_t why_size) {
  const char* key;
  uint64_t mib;
  if (config->workload == WORKLOAD_COUNTER) {
    key = "counter_mib";
    mib = config->counter_mib;
  } else if (config->workload == WORKLOAD_DIRTY) {
    key = "dirty_mib";
    mib = config->dirty_mib;
  } else {
    return true;
  }
  if (rangeIsRam(WORKLOAD_REGION_BASE, mib << 20)) return true;
  format(why, why_size,
         "%s=%lu does not fit in RAM: the region starts at %lu MiB and RAM is %lu MiB", key, mib,
         (uint64_t)WORKLOAD_REGION_BASE >> 20, ramMib());
  return false;
}

void userMain(void) {
  serialInit();
  if (boot_info.error != 0) {
    report("error bad boot info: %s", boot_info.error);
    exitGuest(GUEST_EXIT_BAD_COMMAND_LINE);
  }
  struct GuestConfig config;
  char why[256];
  if (!parseCommandLine(boot_info.cmdline, &config, why, sizeof(why)) ||
      !checkRegion(&config, why, sizeof(why))) {
    report("error bad command line: %s", why);
    exitGuest(GUEST_EXIT_BAD_COMMAND_LINE);
  }
  if (calibrateTsc() == 0) {
    report("error cannot calibrate the TSC: PIT channel 2 (ports 0x42/0x43) does not count");
    exitGuest(GUEST_EXIT_CHECK_FAILED);
  }
  report("ready workload=%s cpus=%u tsc_khz=%lu mem_mib=%lu", config.workload_name, cpus_started,
         tsc_khz, ramMib());
  switch (config.workload) {
    case WORKLOAD_IDLE:
      runIdle(&config);
    case WORKLOAD_SELFTEST:
      runSelftest(&config);
    case WORKLOAD_COMPUTE:
      runCompute(&config);
    case WORKLOAD_COUNTER:
      runCounter(&config);
    case WORKLOAD_DIRTY:
      runDirty(&config);
    case WORKLOAD_BLK:
      runBlk(&config);
    case WORKLOAD_BLK_BENCH:
      runBlkBench(&config);
    case WORKLOAD_NET:
      runNet(&config);
  }
  exitGuest(GUEST_EXIT_CHECK_FAILED);  // cannot happen: parseCommandLine knows every workload
}
