// The TSC frequency: from kvmclock when the hypervisor offers it, else measured against the
// 8254 PIT (1.193182 MHz), from CPL3.
//
// kvmclock: the guest writes the address of a pvclock_vcpu_time_info structure into MSR
// 0x4b564d01 (MSR_KVM_SYSTEM_TIME_NEW) with bit 0 set; the hypervisor keeps it filled with
// the factors that turn TSC ticks into nanoseconds: ns = ((ticks << shift) * mul) >> 32
// (a negative shift shifts right). So ticks per second = 10^9 * 2^32 / (mul << shift).
//
// Channel 2 is loaded with 0xffff in mode 0 and its count is read back (latch command, then
// low and high byte) at the start and again once it has counted down by about 10 ms; the TSC
// is read right before each latch, so the exit latencies of both readings cancel out. The
// gate of channel 2 is raised through port 0x61 as on hardware, but nothing depends on that
// port: QEMU's microvm has no port 0x61 at all, and KVM's in-kernel PIT counts channel 2
// whatever its gate (only the mode-1/5 trigger uses the gate). Three measurements, take the
// median: a host preemption between a TSC read and its latch spoils only one.
#include "tsc.h"

#include "io.h"

#define PIT_HZ 1193182
#define PIT_CHANNEL2 0x42
#define PIT_COMMAND 0x43
#define PIT_CH2_MODE0_LOHI 0xb0  // channel 2, access low then high byte, mode 0, binary
#define PIT_CH2_LATCH 0x80       // counter latch command for channel 2
#define PORT_SYSTEM_CONTROL_B 0x61
#define CONTROL_B_GATE2 0x01              // gate of channel 2
#define CONTROL_B_SPEAKER 0x02            // speaker data: kept off
#define CALIBRATION_TICKS (PIT_HZ / 100)  // 10 ms of PIT time
// Give up when the count has not moved after this many TSC ticks (1 s even at 10 GHz): there
// is no PIT behind the ports (reads return 0xff).
#define GIVE_UP_TSC_TICKS 10000000000ull
#define MEASUREMENTS 3

uint64_t tsc_khz;

#define KVM_CPUID_SIGNATURE 0x40000000
#define KVM_CPUID_FEATURES 0x40000001
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01

// The layout KVM fills (Linux's struct pvclock_vcpu_time_info).
struct PvclockTimeInfo {
  uint32_t version;  // odd while the hypervisor updates the structure
  uint32_t pad0;
  uint64_t tsc_timestamp;
  uint64_t system_time;
  uint32_t tsc_to_system_mul;
  int8_t tsc_shift;
  uint8_t flags;
  uint8_t pad[2];
} __attribute__((packed, aligned(32)));
_Static_assert(sizeof(struct PvclockTimeInfo) == 32, "pvclock_vcpu_time_info layout");

static volatile struct PvclockTimeInfo pvclock;
static int pvclock_on;

int enableKvmclock(void) {
  uint32_t eax, ebx, ecx, edx;
  cpuid(KVM_CPUID_SIGNATURE, &eax, &ebx, &ecx, &edx);
  // "KVMKVMKVM\0\0\0" in EBX, ECX, EDX.
  if (ebx != 0x4b4d564b || ecx != 0x564b4d56 || edx != 0x4d || eax < KVM_CPUID_FEATURES) return 0;
  cpuid(KVM_CPUID_FEATURES, &eax, &ebx, &ecx, &edx);
  if (!(eax & KVM_FEATURE_CLOCKSOURCE2)) return 0;
  // Identity-mapped: the structure's virtual address is its physical address.
  uint64_t value = (uint64_t)&pvclock | 1;
  __asm__ volatile("wrmsr" ::"c"(MSR_KVM_SYSTEM_TIME_NEW), "a"((uint32_t)value),
                   "d"((uint32_t)(value >> 32)));
  pvclock_on = 1;
  return 1;
}

// kHz from kvmclock's factors, or 0 when kvmclock is off or not filled in.
static uint64_t kvmclockKhz(void) {
  if (!pvclock_on) return 0;
  uint32_t version, mul;
  int8_t shift;
  do {
    version = pvclock.version;
    __asm__ volatile("" ::: "memory");
    mul = pvclock.tsc_to_system_mul;
    shift = pvclock.tsc_shift;
    __asm__ volatile("" ::: "memory");
  } while ((version & 1) || version != pvclock.version);
  if (mul == 0 || shift > 31 || shift < -31) return 0;
  // kHz = 10^6 * 2^32 / (mul * 2^shift): 10^6 * 2^32 fits in 64 bits with room for 2^20.
  const uint64_t numerator = 1000000ull << 32;
  if (shift >= 0) return numerator / ((uint64_t)mul << shift);
  return (numerator << (-shift > 20 ? 20 : -shift)) / mul >> (-shift > 20 ? -shift - 20 : 0);
}

static uint16_t readChannel2(void) {
  outb(PIT_COMMAND, PIT_CH2_LATCH);
  uint8_t low = inb(PIT_CHANNEL2);
  uint8_t high = inb(PIT_CHANNEL2);
  return (uint16_t)(low | (high << 8));
}

// One measurement in kHz, or 0 when the PIT does not count.
static uint64_t measureOnce(void) {
  outb(PIT_COMMAND, PIT_CH2_MODE0_LOHI);
  outb(PIT_CHANNEL2, 0xff);
  outb(PIT_CHANNEL2, 0xff);
  const uint64_t start_tsc = rdtsc();
  const uint16_t start_count = readChannel2();
  for (;;) {
    const uint64_t now_tsc = rdtsc();
    const uint16_t now_count = readChannel2();
    const uint16_t pit_ticks = (uint16_t)(start_count - now_count);  // counts down
    if (pit_ticks >= CALIBRATION_TICKS) {
      return (now_tsc - start_tsc) * PIT_HZ / pit_ticks / 1000;
    }
    if (now_tsc - start_tsc > GIVE_UP_TSC_TICKS) return 0;
  }
}

uint64_t calibrateTsc(void) {
  uint64_t khz_from_kvmclock = kvmclockKhz();
  if (khz_from_kvmclock != 0) {
    tsc_khz = khz_from_kvmclock;
    return tsc_khz;
  }
  uint8_t control = inb(PORT_SYSTEM_CONTROL_B);
  outb(PORT_SYSTEM_CONTROL_B, (uint8_t)((control & ~CONTROL_B_SPEAKER) | CONTROL_B_GATE2));
  uint64_t khz[MEASUREMENTS];
  for (int i = 0; i < MEASUREMENTS; ++i) {
    khz[i] = measureOnce();
    if (khz[i] == 0) return 0;
  }
  // Median of three.
  uint64_t a = khz[0], b = khz[1], c = khz[2];
  uint64_t median = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
  tsc_khz = median;
  return median;
}

void delayMicroseconds(uint64_t us) {
  uint64_t end = rdtsc() + microsecondsToTsc(us);
  while (rdtsc() < end) cpuRelax();
}
