/* Interrupt and exception entry points (all CPL0, so all tiny: PVM emulates CPL0 code one
 * instruction at a time), the CPL3 -> CPL0 service gate, and the drop to CPL3. */
#include "layout.h"

    .text
    .code64

/* Exceptions 0-31: push a zero error code where the CPU pushes none, then the vector, and
 * join exception_common. exception_stubs[] holds their addresses for the IDT. */
.macro EXCEPTION_STUB vector
    .balign 16
exception_stub_\vector:
    .if (\vector == 8 || (\vector >= 10 && \vector <= 14) || \vector == 17 || \vector == 21 || \vector == 29 || \vector == 30)
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp exception_common
.endm

.altmacro /* so that %vector passes the value of `vector`, not its name */
.set vector, 0
.rept 32
    EXCEPTION_STUB %vector
    .set vector, vector + 1
.endr

/* Saves the general registers (struct ExceptionFrame in kernel.h) and reports the
 * exception; kernel.c's exceptionHandler() ends the guest and never returns. */
exception_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    call exceptionHandler
1:  cli
    hlt
    jmp 1b

    .section .rodata
    .balign 8
    .globl exception_stubs
exception_stubs:
.macro EXCEPTION_STUB_ADDRESS vector
    .quad exception_stub_\vector
.endm
.set vector, 0
.rept 32
    EXCEPTION_STUB_ADDRESS %vector
    .set vector, vector + 1
.endr
.noaltmacro
    .text

/* LAPIC timer: count the tick and acknowledge it. The EOI register is above 2 GiB, so its
 * address does not fit a sign-extended 32-bit displacement: go through a register. */
    .globl timer_interrupt
timer_interrupt:
    push %rax
    lock incq lapic_timer_ticks(%rip)
    mov $(LAPIC_BASE + LAPIC_EOI), %eax
    movl $0, (%rax)
    pop %rax
    iretq

/* virtio-mmio interrupts (virtio.irq=1), one stub per IOAPIC pin: count the interrupt in
 * virtio_irq_counts[pin] and acknowledge it at the LAPIC. Reading InterruptStatus and writing
 * InterruptACK is left to the CPL3 driver (virtio.c), which sees the count change: PVM emulates
 * CPL0, so handlers stay a few instructions long. The IOAPIC entries are edge-triggered, so no
 * IOAPIC EOI is due. */
.macro VIRTIO_IRQ_STUB pin
    .balign 16
virtio_irq_stub_\pin:
    push %rax
    lock incq virtio_irq_counts + 8 * \pin (%rip)
    mov $(LAPIC_BASE + LAPIC_EOI), %eax
    movl $0, (%rax)
    pop %rax
    iretq
.endm

.altmacro
.set pin, 0
.rept VIRTIO_IRQ_LINES
    VIRTIO_IRQ_STUB %pin
    .set pin, pin + 1
.endr

    .section .rodata
    .balign 8
    .globl virtio_irq_stubs
virtio_irq_stubs:
.macro VIRTIO_IRQ_STUB_ADDRESS pin
    .quad virtio_irq_stub_\pin
.endm
.set pin, 0
.rept VIRTIO_IRQ_LINES
    VIRTIO_IRQ_STUB_ADDRESS %pin
    .set pin, pin + 1
.endr
.noaltmacro

    .bss
    .balign 8
    .globl virtio_irq_counts
virtio_irq_counts:
    .skip 8 * VIRTIO_IRQ_LINES
    .text

/* LAPIC spurious interrupts and spurious IRQ 7/15 of the masked 8259s: no EOI is due. */
    .globl spurious_interrupt
spurious_interrupt:
    iretq

/* The service gate (VECTOR_SERVICE, DPL 3, so `int $3` works from CPL3), RAX = service:
 * SERVICE_HALT_FOREVER stops the CPU with interrupts off (the end of the guest when the VMM has
 * no debug-exit device); SERVICE_IDLE_FOREVER halts with interrupts on (the idle workload);
 * SERVICE_WAIT_INTERRUPT halts until the next interrupt unless the 64-bit counter at RDI no
 * longer holds RSI, then returns. The gate is an interrupt gate, so IF is clear while the
 * counter is compared, and `sti; hlt` opens the window only once hlt has begun (the sti
 * shadow): an interrupt that comes after the comparison wakes the hlt instead of being lost.
 * Anything else is a real breakpoint (a stray int3): reported like any other exception. */
    .globl service_gate
service_gate:
    cmp $SERVICE_HALT_FOREVER, %rax
    je 1f
    cmp $SERVICE_IDLE_FOREVER, %rax
    je 2f
    cmp $SERVICE_WAIT_INTERRUPT, %rax
    je 3f
    pushq $0
    pushq $VECTOR_SERVICE
    jmp exception_common
1:  cli
    hlt
    jmp 1b
2:  sti
    hlt
    jmp 2b
3:  cmp %rsi, (%rdi)
    jne 4f
    sti
    hlt
4:  iretq

/* enterUserMode(entry, stack_top, argument): iretq to `entry(argument)` at CPL3 with IOPL=3
 * and IF=1. The stack is set up as if `entry` had been called (RSP = 8 mod 16). */
    .globl enterUserMode
enterUserMode:
    sub $8, %rsi
    pushq $SEL_USER_DATA
    pushq %rsi
    pushq $RFLAGS_USER
    pushq $SEL_USER_CODE
    pushq %rdi
    mov %rdx, %rdi
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    iretq

    .section .note.GNU-stack, "", @progbits
