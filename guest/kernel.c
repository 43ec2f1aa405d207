// CPL0 setup: copy the boot structures, quiet the legacy PICs, load IDT and TSS, then drop to
// CPL3 for good. PVM emulates every CPL0 instruction (about 1 M/s), so this stays short and
// loop-free apart from small bounded copies; interrupt handlers live in vectors.S.
#include "kernel.h"

#include "boot_info.h"
#include "descriptors.h"
#include "guest.h"
#include "io.h"
#include "layout.h"
#include "print.h"
#include "serial.h"
#include "tsc.h"

#define PIC1_COMMAND 0x20
#define PIC1_DATA 0x21
#define PIC2_COMMAND 0xa0
#define PIC2_DATA 0xa1
#define PIC_ICW1_INIT_ICW4 0x11
#define PIC_ICW4_8086 0x01
#define PAGE_FAULT_VECTOR 14

volatile uint32_t cpus_started = 1;  // the BSP

static char bsp_user_stack[BSP_USER_STACK_SIZE] __attribute__((aligned(16)));
static char ap_user_stacks[MAX_CPUS][AP_USER_STACK_SIZE] __attribute__((aligned(16)));

void enterUserMode(uint64_t entry, uint64_t stack_top, uint64_t argument)
    __attribute__((noreturn));  // vectors.S
void kernelMain(uint64_t start_info_paddr);
void apKernelMain(uint32_t cpu);
void exceptionHandler(const struct ExceptionFrame* frame);

// Firmware leaves the 8259s delivering on vectors 0x08-0x0f (and SeaBIOS keeps the PIT's
// IRQ 0 running), which would collide with CPU exceptions. Re-initialize them onto
// VECTOR_PIC_BASE..+15 and mask every line: the guest uses only the LAPIC. A VMM without PICs
// ignores these writes.
static void quietLegacyPics(void) {
  outb(PIC1_COMMAND, PIC_ICW1_INIT_ICW4);
  outb(PIC2_COMMAND, PIC_ICW1_INIT_ICW4);
  outb(PIC1_DATA, VECTOR_PIC_BASE);  // ICW2: vector base
  outb(PIC2_DATA, VECTOR_PIC_BASE + 8);
  outb(PIC1_DATA, 0x04);  // ICW3: the slave is on IRQ 2
  outb(PIC2_DATA, 0x02);  // ICW3: slave identity 2
  outb(PIC1_DATA, PIC_ICW4_8086);
  outb(PIC2_DATA, PIC_ICW4_8086);
  outb(PIC1_DATA, 0xff);  // mask all lines
  outb(PIC2_DATA, 0xff);
}

void kernelMain(uint64_t start_info_paddr) {
  copyBootInfo(start_info_paddr);
  quietLegacyPics();
  enableKvmclock();
  buildIdt();
  loadIdt();
  loadTss(0);
  enterUserMode((uint64_t)userMain, (uint64_t)bsp_user_stack + sizeof(bsp_user_stack), 0);
}

void apKernelMain(uint32_t cpu) {
  loadTss(cpu);
  loadIdt();
  __atomic_fetch_add(&cpus_started, 1, __ATOMIC_SEQ_CST);
  enterUserMode((uint64_t)apUserMain, (uint64_t)ap_user_stacks[cpu] + AP_USER_STACK_SIZE, cpu);
}

// Reports the exception and ends the guest with GUEST_EXIT_EXCEPTION. Runs at CPL0 on the
// kernel stack; an exception while reporting one only halts.
void exceptionHandler(const struct ExceptionFrame* frame) {
  static volatile int reporting;
  if (__atomic_exchange_n(&reporting, 1, __ATOMIC_SEQ_CST) != 0) {
    for (;;) __asm__ volatile("cli; hlt");
  }
  if (serialMidLine()) serialWrite("\n", 1);
  // The protocol's fields first; cs (its low bits are the CPL), rflags and, for a page fault,
  // the faulting address (CR2) follow as extra diagnostics.
  char extra[64] = "";
  if (frame->vector == PAGE_FAULT_VECTOR) {
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    format(extra, sizeof(extra), " cr2=0x%lx", cr2);
  }
  report("error exception vector=%lu error=0x%lx rip=0x%lx cpu=%u cs=0x%lx rflags=0x%lx%s",
         frame->vector, frame->error_code, frame->rip, currentCpu(), frame->cs, frame->rflags,
         extra);
  exitGuest(GUEST_EXIT_EXCEPTION);
}
