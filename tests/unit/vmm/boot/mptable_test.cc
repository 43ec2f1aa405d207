// Tests of the MP tables: found where Linux scans, checksums valid, one processor per vCPU,
// the I/O APIC and the ISA interrupt routing as documented in mptable.h.
#include "vmm/boot/mptable.h"

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_images.h"
#include "vmm/boot/layout.h"

namespace flotilla::vmm::mptable {
namespace {

using ::testing::HasSubstr;
using vmm::testing::kMiB;

uint8_t sum(const std::vector<uint8_t>& bytes) {
  uint8_t total = 0;
  for (uint8_t b : bytes) total = static_cast<uint8_t>(total + b);
  return total;
}

// What a guest parsing the table (as Linux's mpparse.c does) finds.
struct ParsedTable {
  std::vector<ProcessorEntry> processors;
  std::vector<BusEntry> buses;
  std::vector<IoApicEntry> io_apics;
  std::vector<InterruptEntry> io_interrupts;
  std::vector<InterruptEntry> local_interrupts;
};

class MpTableTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  GuestMemory memory_ = vmm::testing::testMemory(16 * kMiB);

  std::vector<uint8_t> read(GuestAddress at, uint64_t size) {
    std::vector<uint8_t> bytes(size);
    EXPECT_TRUE(memory_.read(at, bytes).ok());
    return bytes;
  }

  // Scans [start, start + length) for the floating pointer like Linux's smp_scan_config.
  std::optional<FloatingPointer> scan(GuestAddress start, uint64_t length) {
    for (uint64_t offset = 0; offset < length; offset += 16) {
      auto pointer = memory_.readObject<FloatingPointer>(start + offset);
      if (pointer.ok() && std::memcmp(pointer->signature, "_MP_", 4) == 0) return *pointer;
    }
    return std::nullopt;
  }
};

TEST_P(MpTableTest, TableIsValidAndListsEveryVcpu) {
  const uint32_t vcpus = GetParam();
  ASSERT_TRUE(writeMpTable(memory_, layout::kEbda, vcpus).ok());

  // Linux looks in the last KiB of base memory (639 KiB).
  std::optional<FloatingPointer> pointer = scan(GuestAddress(639 * 1024), 1024);
  ASSERT_TRUE(pointer.has_value());
  EXPECT_EQ(sum(read(layout::kEbda, sizeof(FloatingPointer))), 0) << "floating pointer checksum";
  EXPECT_EQ(pointer->length, 1);
  EXPECT_EQ(pointer->spec_revision, 4);
  EXPECT_EQ(pointer->feature1, 0) << "a configuration table follows";
  EXPECT_EQ(pointer->config_table, layout::kEbda.raw() + 16);

  const GuestAddress config(pointer->config_table);
  auto header = memory_.readObject<ConfigHeader>(config);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(std::memcmp(header->signature, "PCMP", 4), 0);
  EXPECT_EQ(header->spec_revision, 4);
  EXPECT_EQ(header->local_apic_address, 0xfee00000u);
  EXPECT_EQ(header->base_length, configTableSize(vcpus));
  EXPECT_EQ(sum(read(config, header->base_length)), 0) << "configuration table checksum";
  EXPECT_EQ(tableSize(vcpus), 16 + header->base_length);

  ParsedTable parsed;
  GuestAddress at = config + sizeof(ConfigHeader);
  for (uint16_t i = 0; i < header->entry_count; ++i) {
    const uint8_t type = *memory_.readObject<uint8_t>(at);
    switch (type) {
      case kProcessor:
        parsed.processors.push_back(*memory_.readObject<ProcessorEntry>(at));
        at = at + sizeof(ProcessorEntry);
        break;
      case kBus:
        parsed.buses.push_back(*memory_.readObject<BusEntry>(at));
        at = at + sizeof(BusEntry);
        break;
      case kIoApic:
        parsed.io_apics.push_back(*memory_.readObject<IoApicEntry>(at));
        at = at + sizeof(IoApicEntry);
        break;
      case kIoInterrupt:
        parsed.io_interrupts.push_back(*memory_.readObject<InterruptEntry>(at));
        at = at + sizeof(InterruptEntry);
        break;
      case kLocalInterrupt:
        parsed.local_interrupts.push_back(*memory_.readObject<InterruptEntry>(at));
        at = at + sizeof(InterruptEntry);
        break;
      default:
        FAIL() << "unknown entry type " << int{type};
    }
  }
  EXPECT_EQ(at - config, header->base_length);

  ASSERT_EQ(parsed.processors.size(), vcpus);
  for (uint32_t cpu = 0; cpu < vcpus; ++cpu) {
    const ProcessorEntry& p = parsed.processors[cpu];
    EXPECT_EQ(p.local_apic_id, cpu);
    EXPECT_EQ(p.local_apic_version, kLocalApicVersion);
    EXPECT_EQ(p.cpu_flags, cpu == 0 ? kCpuEnabled | kCpuBootProcessor : kCpuEnabled);
    EXPECT_NE(p.feature_flags & (1u << 9), 0u) << "APIC feature";
  }
  ASSERT_EQ(parsed.buses.size(), 1u);
  EXPECT_EQ(std::memcmp(parsed.buses[0].bus_type, "ISA   ", 6), 0);

  ASSERT_EQ(parsed.io_apics.size(), 1u);
  EXPECT_EQ(parsed.io_apics[0].id, vcpus);
  EXPECT_EQ(parsed.io_apics[0].version, 0x11);
  EXPECT_EQ(parsed.io_apics[0].flags, kIoApicUsable);
  EXPECT_EQ(parsed.io_apics[0].address, 0xfec00000u);

  ASSERT_EQ(parsed.io_interrupts.size(), 15u);
  std::vector<int> seen_irqs;
  for (const InterruptEntry& entry : parsed.io_interrupts) {
    EXPECT_EQ(entry.interrupt_type, kInt);
    EXPECT_EQ(entry.source_bus_id, parsed.buses[0].bus_id);
    EXPECT_EQ(entry.destination_apic_id, vcpus);
    EXPECT_EQ(entry.destination_pin, entry.source_bus_irq == 0 ? 2 : entry.source_bus_irq);
    seen_irqs.push_back(entry.source_bus_irq);
  }
  EXPECT_THAT(seen_irqs, ::testing::ElementsAre(0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));

  ASSERT_EQ(parsed.local_interrupts.size(), 2u);
  EXPECT_EQ(parsed.local_interrupts[0].interrupt_type, kExtInt);
  EXPECT_EQ(parsed.local_interrupts[0].destination_apic_id, 0xff);
  EXPECT_EQ(parsed.local_interrupts[0].destination_pin, 0);
  EXPECT_EQ(parsed.local_interrupts[1].interrupt_type, kNmi);
  EXPECT_EQ(parsed.local_interrupts[1].destination_pin, 1);
}

INSTANTIATE_TEST_SUITE_P(VcpuCounts, MpTableTest, ::testing::Values(1u, 2u, 40u, 41u, 254u));

TEST(MpTableSizeTest, FortyVcpusFitInTheLastKiBOfBaseMemory) {
  EXPECT_LE(layout::kEbda.raw() + tableSize(40), 0xa0000u);
  EXPECT_GT(layout::kEbda.raw() + tableSize(41), 0xa0000u);
  EXPECT_LE(layout::kEbda.raw() + tableSize(kMaxVcpus), 0xf0000u);
}

TEST(MpTableErrorsTest, BadVcpuCounts) {
  GuestMemory memory = vmm::testing::testMemory(4 * kMiB);
  EXPECT_THAT(writeMpTable(memory, layout::kEbda, 0).message(), HasSubstr("cannot list 0 vCPUs"));
  EXPECT_THAT(writeMpTable(memory, layout::kEbda, 255).message(), HasSubstr("between 1 and 254"));
  EXPECT_THAT(writeMpTable(memory, layout::kEbda + 4, 1).message(), HasSubstr("16-byte aligned"));
}

}  // namespace
}  // namespace flotilla::vmm::mptable
