// Writing the MP tables (see mptable.h).
#include "vmm/boot/mptable.h"

#include <cstring>
#include <vector>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/boot/layout.h"

namespace flotilla::vmm::mptable {
namespace {

// A family 6 CPU with an FPU and a local APIC: Linux only looks at the APIC bit.
constexpr uint32_t kCpuSignature = 0x600;
constexpr uint32_t kFeatureFpu = 1 << 0;
constexpr uint32_t kFeatureApic = 1 << 9;
constexpr uint8_t kIsaBusId = 0;

uint8_t checksum(const uint8_t* bytes, size_t size) {
  uint8_t sum = 0;
  for (size_t i = 0; i < size; ++i) sum = static_cast<uint8_t>(sum + bytes[i]);
  return static_cast<uint8_t>(-sum);
}

// Appends the bytes of `entry` to `table`.
template <typename T>
void append(std::vector<uint8_t>& table, const T& entry) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&entry);
  table.insert(table.end(), bytes, bytes + sizeof(T));
}

}  // namespace

absl::Status writeMpTable(const GuestMemory& memory, GuestAddress address, uint32_t vcpus) {
  if (vcpus == 0 || vcpus > kMaxVcpus) {
    return absl::InvalidArgumentError(fmt::format(
        "the MP table cannot list {} vCPUs: give the VM between 1 and {}", vcpus, kMaxVcpus));
  }
  if (address.raw() % 16 != 0 || address.raw() + tableSize(vcpus) > (uint64_t{1} << 32)) {
    return absl::InvalidArgumentError(fmt::format(
        "the MP floating pointer must be 16-byte aligned below 4 GiB, not at {}", address));
  }
  const GuestAddress config_address = address + sizeof(FloatingPointer);
  const uint8_t io_apic_id = static_cast<uint8_t>(vcpus);

  std::vector<uint8_t> table;
  table.reserve(configTableSize(vcpus));
  ConfigHeader header = {};
  std::memcpy(header.signature, "PCMP", 4);
  header.base_length = static_cast<uint16_t>(configTableSize(vcpus));
  header.spec_revision = kSpecRevision;
  std::memcpy(header.oem_id, "FLOTILLA", 8);
  std::memcpy(header.product_id, "FLOTILLA VMM", 12);
  header.entry_count =
      static_cast<uint16_t>(vcpus + 2 + kIoInterruptEntries + kLocalInterruptEntries);
  header.local_apic_address = static_cast<uint32_t>(layout::kLocalApic.raw());
  append(table, header);

  for (uint32_t cpu = 0; cpu < vcpus; ++cpu) {
    ProcessorEntry processor = {};
    processor.type = kProcessor;
    processor.local_apic_id = static_cast<uint8_t>(cpu);
    processor.local_apic_version = kLocalApicVersion;
    processor.cpu_flags = static_cast<uint8_t>(kCpuEnabled | (cpu == 0 ? kCpuBootProcessor : 0));
    processor.cpu_signature = kCpuSignature;
    processor.feature_flags = kFeatureFpu | kFeatureApic;
    append(table, processor);
  }
  BusEntry bus = {};
  bus.type = kBus;
  bus.bus_id = kIsaBusId;
  std::memcpy(bus.bus_type, "ISA   ", 6);
  append(table, bus);

  IoApicEntry io_apic = {};
  io_apic.type = kIoApic;
  io_apic.id = io_apic_id;
  io_apic.version = kIoApicVersion;
  io_apic.flags = kIoApicUsable;
  io_apic.address = static_cast<uint32_t>(layout::kIoApic.raw());
  append(table, io_apic);

  for (uint8_t irq = 0; irq < kIsaIrqs; ++irq) {
    if (irq == 2) continue;  // the cascade: its input carries IRQ 0
    append(table, InterruptEntry{kIoInterrupt, kInt, 0, kIsaBusId, irq, io_apic_id,
                                 ioApicPinForIsaIrq(irq)});
  }
  // The 8259's output on every local APIC's LINT0 (virtual wire mode), NMI on LINT1.
  append(table, InterruptEntry{kLocalInterrupt, kExtInt, 0, kIsaBusId, 0, kAllLocalApics, 0});
  append(table, InterruptEntry{kLocalInterrupt, kNmi, 0, kIsaBusId, 0, kAllLocalApics, 1});

  table[offsetof(ConfigHeader, checksum)] = checksum(table.data(), table.size());

  FloatingPointer pointer = {};
  std::memcpy(pointer.signature, "_MP_", 4);
  pointer.config_table = static_cast<uint32_t>(config_address.raw());
  pointer.length = 1;
  pointer.spec_revision = kSpecRevision;
  pointer.checksum = checksum(reinterpret_cast<const uint8_t*>(&pointer), sizeof(pointer));

  RETURN_IF_ERROR(memory.writeObject(address, pointer));
  return memory.write(config_address, table);
}

}  // namespace flotilla::vmm::mptable
