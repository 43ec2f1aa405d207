// Descriptor tables (see descriptors.h). The fixed GDT entries are in boot.S; this file adds
// the TSS descriptors and builds the IDT. Intel SDM vol. 3, "Task management" and "Interrupt
// and exception handling" give the formats.
#include "descriptors.h"

#include "layout.h"

// The 64-bit TSS: RSP0, the stack the CPU switches to on an interrupt at CPL3, and an I/O
// permission bitmap that allows CPL3 every port below IO_BITMAP_PORTS.
//
// Why a bitmap when RFLAGS.IOPL is 3: on hardware IOPL=3 suffices, but PVM never puts a
// guest's IOPL into the real RFLAGS (its switcher masks it off), so CPL3 port I/O raises a
// real #GP, and KVM's emulator then decides from the guest TSS's I/O bitmap, as the SDM says
// for CPL > IOPL. Zero bits grant access; the byte after the bitmap must be 0xff.
#define IO_BITMAP_PORTS 0x400  // COM1 0x3f8, debug exit 0xf4, PIT 0x40-0x43, port 0x61, ...
struct Tss {
  uint32_t reserved0;
  uint64_t rsp[3];
  uint64_t reserved1;
  uint64_t ist[7];
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iomap_base;  // offset of io_bitmap
  uint8_t io_bitmap[IO_BITMAP_PORTS / 8];
  uint8_t io_bitmap_end;  // 0xff
} __attribute__((packed));
_Static_assert(sizeof(struct Tss) == 104 + IO_BITMAP_PORTS / 8 + 1, "64-bit TSS layout");

struct IdtGate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attributes;
  uint16_t offset_middle;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct IdtGate) == 16, "64-bit IDT gate layout");

struct __attribute__((packed)) TablePointer {
  uint16_t limit;
  uint64_t base;
};

#define GATE_INTERRUPT_DPL0 0x8e  // present, 64-bit interrupt gate (clears IF), DPL 0
#define GATE_INTERRUPT_DPL3 0xee  // the same, callable with `int` from CPL3
#define TSS_AVAILABLE_PRESENT 0x89
#define PIC_VECTORS 16

extern uint64_t gdt[GDT_ENTRIES];           // boot.S
extern const uint64_t exception_stubs[32];  // vectors.S
extern char kernel_stacks[MAX_CPUS][KERNEL_STACK_SIZE];
void timer_interrupt(void);
void spurious_interrupt(void);
void service_gate(void);
extern const uint64_t virtio_irq_stubs[VIRTIO_IRQ_LINES];  // vectors.S

char kernel_stacks[MAX_CPUS][KERNEL_STACK_SIZE] __attribute__((aligned(16)));
static struct Tss tss[MAX_CPUS];
static struct IdtGate idt[256] __attribute__((aligned(16)));

static void setGate(uint32_t vector, uint64_t handler, uint8_t type_attributes) {
  struct IdtGate* gate = &idt[vector];
  gate->offset_low = (uint16_t)handler;
  gate->selector = SEL_KERNEL_CODE;
  gate->ist = 0;
  gate->type_attributes = type_attributes;
  gate->offset_middle = (uint16_t)(handler >> 16);
  gate->offset_high = (uint32_t)(handler >> 32);
  gate->reserved = 0;
}

void buildIdt(void) {
  // Only the vectors that can occur get a gate; any other one raises #GP with the vector in
  // the error code ((vector << 3) | 2), which the exception handler reports.
  for (uint32_t vector = 0; vector < 32; ++vector) {
    setGate(vector, exception_stubs[vector], GATE_INTERRUPT_DPL0);
  }
  setGate(VECTOR_SERVICE, (uint64_t)service_gate, GATE_INTERRUPT_DPL3);
  for (uint32_t i = 0; i < PIC_VECTORS; ++i) {
    setGate(VECTOR_PIC_BASE + i, (uint64_t)spurious_interrupt, GATE_INTERRUPT_DPL0);
  }
  setGate(VECTOR_TIMER, (uint64_t)timer_interrupt, GATE_INTERRUPT_DPL0);
  for (uint32_t pin = 0; pin < VIRTIO_IRQ_LINES; ++pin) {
    setGate(VECTOR_VIRTIO_BASE + pin, virtio_irq_stubs[pin], GATE_INTERRUPT_DPL0);
  }
  setGate(VECTOR_SPURIOUS, (uint64_t)spurious_interrupt, GATE_INTERRUPT_DPL0);
}

void loadIdt(void) {
  struct TablePointer pointer = {sizeof(idt) - 1, (uint64_t)idt};
  __asm__ volatile("lidt %0" : : "m"(pointer));
}

uint64_t kernelStackTop(uint32_t cpu) {
  return (uint64_t)kernel_stacks[cpu] + KERNEL_STACK_SIZE;
}

void loadTss(uint32_t cpu) {
  struct Tss* task = &tss[cpu];
  task->rsp[0] = kernelStackTop(cpu);
  task->iomap_base = __builtin_offsetof(struct Tss, io_bitmap);
  task->io_bitmap_end = 0xff;  // io_bitmap itself is zero (.bss): every port allowed
  uint64_t base = (uint64_t)task;
  uint64_t limit = sizeof(struct Tss) - 1;
  uint32_t entry = GDT_FIXED_ENTRIES + 2 * cpu;
  gdt[entry] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
               ((uint64_t)TSS_AVAILABLE_PRESENT << 40) | (((limit >> 16) & 0xf) << 48) |
               (((base >> 24) & 0xff) << 56);
  gdt[entry + 1] = base >> 32;
  uint16_t selector = (uint16_t)(SEL_TSS_BASE + 16 * cpu);
  __asm__ volatile("ltr %0" : : "r"(selector) : "memory");
}

uint32_t currentCpu(void) {
  uint16_t selector;
  __asm__ volatile("str %0" : "=r"(selector));
  return selector < SEL_TSS_BASE ? 0 : (uint32_t)(selector - SEL_TSS_BASE) / 16;
}
