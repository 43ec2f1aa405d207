// The workloads, one file each; all run at CPL3 after the `ready` line and never return.
#pragma once

#include "cmdline.h"

// Physical base of the counter and dirty regions (README.md, "Memory map").
#define WORKLOAD_PAGE_SIZE 4096
#define PAGES_PER_MIB 256

__attribute__((noreturn)) void runIdle(const struct GuestConfig* config);
__attribute__((noreturn)) void runSelftest(const struct GuestConfig* config);
__attribute__((noreturn)) void runCompute(const struct GuestConfig* config);
__attribute__((noreturn)) void runCounter(const struct GuestConfig* config);
__attribute__((noreturn)) void runDirty(const struct GuestConfig* config);
__attribute__((noreturn)) void runBlk(const struct GuestConfig* config);
__attribute__((noreturn)) void runBlkBench(const struct GuestConfig* config);
__attribute__((noreturn)) void runNet(const struct GuestConfig* config);

// Starts the other CPUs (smp.c) and waits for them: until `expected` CPUs run (the BSP
// included) or 2 s pass, or, with `expected` 0, for 300 ms. Returns the CPUs running.
uint32_t startOtherCpus(uint32_t expected);
