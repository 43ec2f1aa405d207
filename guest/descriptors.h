// GDT TSS descriptors, per-CPU TSSs and the IDT. CPL0 only.
#pragma once

#include <stdint.h>

// The BSP fills the IDT once; each CPU then loads it.
void buildIdt(void);
void loadIdt(void);

// Sets up CPU `cpu`'s TSS (RSP0 = its kernel stack) and loads it into TR.
void loadTss(uint32_t cpu);

// This CPU's index (0 = BSP), from the TSS selector in TR; 0 before loadTss().
uint32_t currentCpu(void);

// The top of CPU `cpu`'s kernel stack.
uint64_t kernelStackTop(uint32_t cpu);
