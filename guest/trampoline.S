/* The AP trampoline: real-mode code that application processors start in after the SIPI.
 * The BSP copies the bytes between ap_trampoline_start and ap_trampoline_end to
 * AP_TRAMPOLINE_ADDR (page-aligned, below 1 MiB: the SIPI vector is the page number) before
 * sending the SIPI. The AP starts with CS = AP_TRAMPOLINE_ADDR >> 4, IP = 0, so addresses
 * here are offsets from ap_trampoline_start. Real mode is emulated under PVM: keep it short. */
#include "layout.h"

    .section .rodata, "a"
    .code16
    .globl ap_trampoline_start
ap_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl trampoline_gdt_pointer - ap_trampoline_start
    mov %cr0, %eax
    or $1, %eax /* CR0.PE */
    mov %eax, %cr0
    ljmpl $0x08, $ap_start32 /* boot.S: 32-bit code in the kernel image, above 1 MiB */

    .balign 8
trampoline_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff /* 0x08: flat 32-bit code */
    .quad 0x00cf92000000ffff /* 0x10: flat data (same selector as the kernel's data) */
trampoline_gdt_end:
trampoline_gdt_pointer:
    .word trampoline_gdt_end - trampoline_gdt - 1
    .long AP_TRAMPOLINE_ADDR + (trampoline_gdt - ap_trampoline_start)
    .globl ap_trampoline_end
ap_trampoline_end:

    .section .note.GNU-stack, "", @progbits
