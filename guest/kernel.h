// The CPL0 part of the guest: boot-time setup of the BSP and the APs, and exception reports.
#pragma once

#include <stdint.h>

// What exception_common (vectors.S) pushed, lowest address first.
struct ExceptionFrame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector, error_code;
  uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU
};

// CPUs that finished their CPL0 setup (the BSP included), incremented with `lock xadd`.
extern volatile uint32_t cpus_started;

// CPL3 entry points the kernel drops to.
__attribute__((noreturn)) void userMain(void);
__attribute__((noreturn)) void apUserMain(uint64_t cpu);
