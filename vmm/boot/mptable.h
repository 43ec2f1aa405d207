// The Intel MultiProcessor Specification 1.4 tables (chapter 4): a floating pointer and a
// configuration table listing every vCPU's local APIC, an ISA bus, the I/O APIC and the ISA
// interrupt routing. Without ACPI, this is how Linux finds the other vCPUs and the I/O APIC.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::mptable {

// APIC ids are 8 bits, 0xff means "all", and the I/O APIC takes the id after the last vCPU.
inline constexpr uint32_t kMaxVcpus = 254;
inline constexpr uint8_t kLocalApicVersion = 0x14;  // what KVM's local APIC reports
inline constexpr uint8_t kIoApicVersion = 0x11;     // 82093AA, as KVM's I/O APIC
inline constexpr uint8_t kIsaIrqs = 16;
inline constexpr uint8_t kSpecRevision = 4;  // MP spec 1.4

enum EntryType : uint8_t {
  kProcessor = 0,
  kBus = 1,
  kIoApic = 2,
  kIoInterrupt = 3,
  kLocalInterrupt = 4,
};
enum InterruptType : uint8_t { kInt = 0, kNmi = 1, kSmi = 2, kExtInt = 3 };
inline constexpr uint8_t kCpuEnabled = 1 << 0;
inline constexpr uint8_t kCpuBootProcessor = 1 << 1;
inline constexpr uint8_t kIoApicUsable = 1 << 0;
inline constexpr uint8_t kAllLocalApics = 0xff;

struct __attribute__((packed)) FloatingPointer {
  char signature[4];  // "_MP_"
  uint32_t config_table;
  uint8_t length;  // in 16-byte paragraphs: 1
  uint8_t spec_revision;
  uint8_t checksum;  // all 16 bytes sum to 0
  uint8_t feature1;  // 0: a configuration table is present
  uint8_t feature2;  // bit 7 (IMCR present) clear: virtual wire mode
  uint8_t feature3[3];
};
static_assert(sizeof(FloatingPointer) == 16);

struct __attribute__((packed)) ConfigHeader {
  char signature[4];      // "PCMP"
  uint16_t base_length;   // header and all entries
  uint8_t spec_revision;  // 4
  uint8_t checksum;       // all base_length bytes sum to 0
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t local_apic_address;
  uint16_t extended_length;
  uint8_t extended_checksum;
  uint8_t reserved;
};
static_assert(sizeof(ConfigHeader) == 44);

struct __attribute__((packed)) ProcessorEntry {
  uint8_t type;  // kProcessor
  uint8_t local_apic_id;
  uint8_t local_apic_version;
  uint8_t cpu_flags;  // kCpuEnabled | kCpuBootProcessor
  uint32_t cpu_signature;
  uint32_t feature_flags;
  uint32_t reserved[2];
};
static_assert(sizeof(ProcessorEntry) == 20);

struct __attribute__((packed)) BusEntry {
  uint8_t type;  // kBus
  uint8_t bus_id;
  char bus_type[6];  // "ISA   "
};
static_assert(sizeof(BusEntry) == 8);

struct __attribute__((packed)) IoApicEntry {
  uint8_t type;  // kIoApic
  uint8_t id;
  uint8_t version;
  uint8_t flags;  // kIoApicUsable
  uint32_t address;
};
static_assert(sizeof(IoApicEntry) == 8);

// I/O interrupt assignment (type kIoInterrupt) and local interrupt assignment
// (kLocalInterrupt) share one layout.
struct __attribute__((packed)) InterruptEntry {
  uint8_t type;
  uint8_t interrupt_type;  // InterruptType
  uint16_t flags;          // 0: polarity and trigger conform to the bus (ISA: high, edge)
  uint8_t source_bus_id;
  uint8_t source_bus_irq;
  uint8_t destination_apic_id;  // I/O APIC id, or local APIC id / kAllLocalApics
  uint8_t destination_pin;      // I/O APIC input, or LINT0/LINT1
};
static_assert(sizeof(InterruptEntry) == 8);

// The I/O APIC input ISA `irq` is wired to: IRQ 0 (the PIT) on input 2, as on PCs and in
// KVM's default routing; the others on the input of their number. IRQ 2 (the cascade from
// the second 8259) has no entry: its input carries IRQ 0.
inline uint8_t ioApicPinForIsaIrq(uint8_t irq) {
  return irq == 0 ? 2 : irq;
}

// Every ISA IRQ but the cascade (see ioApicPinForIsaIrq), and LINT0 ExtINT, LINT1 NMI.
inline constexpr uint32_t kIoInterruptEntries = kIsaIrqs - 1;
inline constexpr uint32_t kLocalInterruptEntries = 2;

// Bytes of the configuration table (header and entries) for `vcpus` vCPUs.
constexpr uint64_t configTableSize(uint32_t vcpus) {
  return sizeof(ConfigHeader) + uint64_t{vcpus} * sizeof(ProcessorEntry) + sizeof(BusEntry) +
         sizeof(IoApicEntry) +
         (kIoInterruptEntries + kLocalInterruptEntries) * sizeof(InterruptEntry);
}

// Bytes the floating pointer and the configuration table take together.
constexpr uint64_t tableSize(uint32_t vcpus) {
  return sizeof(FloatingPointer) + configTableSize(vcpus);
}

// Writes the floating pointer at `address` (16-byte aligned) and the configuration table
// right after it. vcpus must be 1..kMaxVcpus.
absl::Status writeMpTable(const GuestMemory& memory, GuestAddress address, uint32_t vcpus);

}  // namespace flotilla::vmm::mptable
