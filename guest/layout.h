// The guest's fixed memory map, selectors, vectors and limits, shared by the assembly and the
// C sources (so only #defines here). guest/README.md explains each choice.
#pragma once

// Physical memory (identity-mapped: virtual == physical everywhere).
#define GUEST_IMAGE_BASE 0x100000       // the ELF is linked here (1 MiB; linker.ld)
#define AP_TRAMPOLINE_ADDR 0x8000       // real-mode AP start code, copied here before the SIPI
#define WORKLOAD_REGION_BASE 0x4000000  // counter/dirty regions start at 64 MiB
#define VIRTIO_HEAP_BASE 0x1000000      // virtio rings and buffers (blk, blk-bench, net): 16 MiB on
#define IDENTITY_MAP_LIMIT 0x100000000  // the boot page tables map the first 4 GiB

// CPUs: at most this many CPUs (the BSP included) are started; further APs stop at once.
#define MAX_CPUS 16
#define KERNEL_STACK_SIZE 4096   // per CPU: CPL0 handlers only (TSS.RSP0)
#define AP_USER_STACK_SIZE 4096  // per AP: the AP's CPL3 spin loop
#define BSP_USER_STACK_SIZE 65536

// GDT selectors. User data precedes user code (the order SYSRET would need).
#define SEL_KERNEL_CODE 0x08
#define SEL_KERNEL_DATA 0x10
#define SEL_USER_DATA 0x1b  // GDT entry 3, RPL 3
#define SEL_USER_CODE 0x23  // GDT entry 4, RPL 3
#define GDT_FIXED_ENTRIES 5
#define SEL_TSS_BASE 0x28  // then 16 bytes (two entries) per CPU
#define GDT_ENTRIES (GDT_FIXED_ENTRIES + 2 * MAX_CPUS)

// RFLAGS for CPL3: IOPL=3, IF=1, and reserved bit 1. IOPL=3 grants CPL3 port I/O on hardware;
// PVM drops it, and the TSS I/O bitmap grants the ports instead (descriptors.c). So CPL3 code
// never relies on IOPL for cli/sti.
#define RFLAGS_USER 0x3202

// Interrupt vectors.
#define VECTOR_PIC_BASE 0x20  // the masked 8259 PICs are remapped here (only spurious IRQs)
#define VECTOR_TIMER 0x40     // LAPIC timer
#define VECTOR_SPURIOUS 0xff  // LAPIC spurious vector
// virtio-mmio interrupts (virtio.irq=1): IOAPIC pin (GSI) N is routed to VECTOR_VIRTIO_BASE + N.
#define VECTOR_VIRTIO_BASE 0x50
#define VIRTIO_IRQ_LINES 24  // the pins of one IOAPIC
// The CPL3 -> CPL0 service gate: `int $3` (the breakpoint vector, with a DPL 3 gate), service
// number in RAX. Why vector 3: under PVM, a CPL3 `int $N` reaches the guest's IDT only for
// N = 3 (the host's own int3 gate has DPL 3); KVM's emulator cannot emulate other `int $N` in
// long mode (#UD), and the host takes 0x80 for its ia32 system calls (#UD too).
#define VECTOR_SERVICE 3

// Services of the VECTOR_SERVICE gate (in RAX).
#define SERVICE_HALT_FOREVER 0  // cli; hlt forever (the end after an exit request)
#define SERVICE_IDLE_FOREVER 1  // sti; hlt forever (the idle workload)
// Sleep until an interrupt unless *RDI != RSI (checked with interrupts off, so a wake-up that
// raced with the caller's last look is not lost), then return to CPL3.
#define SERVICE_WAIT_INTERRUPT 2

// Local APIC (xAPIC MMIO).
#define LAPIC_BASE 0xfee00000
#define LAPIC_EOI 0xb0

// I/O APIC (MMIO), programmed from CPL3 in virtio's interrupt mode.
#define IOAPIC_BASE 0xfec00000
