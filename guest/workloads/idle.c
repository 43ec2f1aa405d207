// idle: nothing but `sti; hlt` at CPL0 (through the service gate), forever. The VM then costs
// nothing, which is what migration and lifecycle tests of an idle VM want.
#include "guest.h"
#include "workloads/workloads.h"

void runIdle(const struct GuestConfig* config) {
  (void)config;
  idleForever();
}
