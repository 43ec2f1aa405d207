// Single x86 instructions the guest needs, as inline functions. Port I/O works at CPL3 because
// of IOPL=3 and the TSS I/O bitmap (descriptors.c); rdtsc works at CPL3 because CR4.TSD is
// clear.
#pragma once

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value) {
  __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t value) {
  __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port) {
  uint8_t value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

// rdtsc is not ordered against earlier loads; good enough for pacing and gap measurement.
static inline uint64_t rdtsc(void) {
  uint32_t low, high;
  __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
  return ((uint64_t)high << 32) | low;
}

static inline void cpuid(uint32_t leaf, uint32_t* eax, uint32_t* ebx, uint32_t* ecx,
                         uint32_t* edx) {
  __asm__ volatile("cpuid" : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(*edx) : "a"(leaf), "c"(0));
}

static inline void cpuRelax(void) {
  __asm__ volatile("pause" ::: "memory");
}

// Memory-mapped registers: volatile 32-bit accesses, never merged or split by the compiler.
static inline uint32_t mmioRead32(uint64_t address) {
  return *(volatile uint32_t*)address;
}

static inline void mmioWrite32(uint64_t address, uint32_t value) {
  *(volatile uint32_t*)address = value;
}

static inline uint8_t mmioRead8(uint64_t address) {
  return *(volatile uint8_t*)address;
}

static inline uint16_t mmioRead16(uint64_t address) {
  return *(volatile uint16_t*)address;
}

static inline void mmioWrite8(uint64_t address, uint8_t value) {
  *(volatile uint8_t*)address = value;
}

// Ordering for memory shared with a device (virtio rings), on x86 where the device is another
// CPU of a coherent system (a VMM thread): loads are not reordered with loads, nor stores with
// stores, so those two need only the compiler's cooperation; a store followed by a load of
// another location can be reordered by the CPU and needs mfence.
static inline void compilerBarrier(void) {
  __asm__ volatile("" ::: "memory");
}

static inline void fullBarrier(void) {
  __asm__ volatile("mfence" ::: "memory");
}
