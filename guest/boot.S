/* Boot: the PVH ELF note, the 32-bit PVH entry of the BSP and the 32-bit entry of the APs
 * (reached from trampoline.S), the switch to long mode, the boot page tables and the GDT.
 * Everything here runs at CPL0, which PVM emulates instruction by instruction: no loops. */
#include "layout.h"

#define CR0_PE 0x00000001
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define COM1_PORT 0x3f8

/* Page-table entry bits. User (US) is set at every level so that CPL3 code, which runs all
 * workloads, can touch all of memory, including the local APIC page. */
#define PTE_P 0x01
#define PTE_RW 0x02
#define PTE_US 0x04
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_PS 0x80 /* in a page directory: a 2 MiB page */
#define PTE_TABLE (PTE_P | PTE_RW | PTE_US)
#define MMIO_HOLE_START 0xc0000000 /* from here on, 2 MiB pages are uncached (APIC, IOAPIC) */

/* XEN_ELFNOTE_PHYS32_ENTRY (type 18): the 32-bit physical entry point, the way QEMU and
 * Linux find a PVH entry. The section must be 4-byte aligned: QEMU pads the note name to the
 * PT_NOTE segment's alignment, so a larger alignment would make it read the wrong bytes. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4          /* namesz: "Xen\0" */
    .long 4          /* descsz */
    .long 18         /* type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start32
    .balign 4

/* Long mode from 32-bit protected mode with paging off: PAE, the identity page tables,
 * EFER.LME, then paging (which activates long mode in compatibility mode), our GDT, and a far
 * jump to a 64-bit code segment. */
.macro ENTER_LONG_MODE target
    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $(CR0_PG | CR0_PE), %eax
    mov %eax, %cr0
    lgdt gdt_pointer
    ljmp $SEL_KERNEL_CODE, $\target
.endm

    .section .text.boot, "ax"
    .code32

/* PVH entry (BSP): protected mode, paging off, flat CS/DS/ES/SS, interrupts off, no stack,
 * EBX = physical address of struct hvm_start_info. */
    .globl pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, boot_start_info
    /* The first line, at the first instructions: the start-time benchmark measures from the
     * VMM's process start to this line. One string I/O instruction is one exit for the whole
     * line; the UART needs no setup to transmit. */
    mov $boot_line, %esi
    mov $(boot_line_end - boot_line), %ecx
    mov $COM1_PORT, %dx
    rep outsb
    ENTER_LONG_MODE bsp_start64

/* AP entry from the trampoline: protected mode with the trampoline's flat GDT. */
    .globl ap_start32
ap_start32:
    mov $SEL_KERNEL_DATA, %ax /* the trampoline GDT's flat data segment has this selector too */
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    ENTER_LONG_MODE ap_start64

    .code64
.macro LOAD_DATA_SEGMENTS
    mov $SEL_KERNEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
.endm

bsp_start64:
    LOAD_DATA_SEGMENTS
    lea kernel_stacks + KERNEL_STACK_SIZE(%rip), %rsp /* CPU 0's kernel stack */
    mov boot_start_info(%rip), %rdi
    call kernelMain /* does not return: it drops to CPL3 */
    jmp halt_forever

ap_start64:
    LOAD_DATA_SEGMENTS
    /* Claim a CPU index before touching any stack: indexes are handed out in start order. */
    mov $1, %eax
    lock xadd %eax, ap_next_index(%rip)
    cmp $MAX_CPUS, %eax
    jae halt_forever /* more CPUs than we have stacks for: this one stays stopped */
    mov %eax, %edi
    lea 1(%rax), %rax
    imul $KERNEL_STACK_SIZE, %rax
    lea kernel_stacks(%rip), %rsp
    add %rax, %rsp
    call apKernelMain /* does not return */

halt_forever:
    cli
    hlt
    jmp halt_forever

    .section .data
    .balign 8
    .globl boot_start_info
boot_start_info:
    .quad 0 /* physical address of struct hvm_start_info, from EBX */
ap_next_index:
    .long 1 /* index of the next AP to start; the BSP is 0 */

/* The GDT: fixed entries, then one 16-byte TSS descriptor per CPU (filled in by
 * descriptors.c). */
    .balign 16
    .globl gdt
gdt:
    .quad 0
    .quad 0x00af9a000000ffff /* 0x08 kernel code: 64-bit (L), DPL 0 */
    .quad 0x00cf92000000ffff /* 0x10 kernel data: flat, DPL 0 (also used in 32-bit code) */
    .quad 0x00cff2000000ffff /* 0x18 user data: flat, DPL 3 */
    .quad 0x00affa000000ffff /* 0x20 user code: 64-bit (L), DPL 3 */
    .fill 2 * MAX_CPUS, 8, 0 /* TSS descriptors */
gdt_end:
    .balign 8
    .word 0
gdt_pointer:
    .word gdt_end - gdt - 1
    .quad gdt /* lgdt in 32-bit code reads only the low 4 bytes: gdt is below 4 GiB */

/* Identity page tables for the first 4 GiB with 2 MiB pages, built by the assembler so that
 * no CPL0 loop has to fill them (CPL0 is slow under PVM). */
    .section .data.page_tables, "aw"
    .balign 4096
boot_pml4:
    .quad boot_pdpt + PTE_TABLE
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd + 0x0000 + PTE_TABLE
    .quad boot_pd + 0x1000 + PTE_TABLE
    .quad boot_pd + 0x2000 + PTE_TABLE
    .quad boot_pd + 0x3000 + PTE_TABLE
    .fill 508, 8, 0
boot_pd:
    .set page, 0
    .rept 2048
    .if page >= MMIO_HOLE_START
    .quad page + (PTE_P | PTE_RW | PTE_US | PTE_PS | PTE_PWT | PTE_PCD)
    .else
    .quad page + (PTE_P | PTE_RW | PTE_US | PTE_PS)
    .endif
    .set page, page + 0x200000
    .endr

    .section .note.GNU-stack, "", @progbits

    .section .rodata
boot_line:
    .ascii "flotilla-guest: boot\n"
boot_line_end:
