// Tests of the boot GDT and the identity page tables: the descriptors decode to the segments
// boot.h promises, and a page walk through guest memory maps every address to itself.
#include "vmm/boot/x86_setup.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_images.h"

namespace flotilla::vmm::x86 {
namespace {

using vmm::testing::kMiB;

class X86SetupTest : public ::testing::Test {
 protected:
  GuestMemory memory_ = vmm::testing::testMemory(16 * kMiB);

  uint64_t entryAt(uint64_t table, uint64_t index) {
    auto entry = memory_.readObject<uint64_t>(GuestAddress(table) + index * 8);
    EXPECT_TRUE(entry.ok());
    return entry.ok() ? *entry : 0;
  }

  // A 4-level walk (Intel SDM 4.5) from cr3; nullopt for a non-present entry.
  std::optional<uint64_t> translate(uint64_t virt) {
    constexpr uint64_t kAddressMask = 0x000f'ffff'ffff'f000;
    const uint64_t pml4e = entryAt(layout::kPml4.raw(), (virt >> 39) & 511);
    if ((pml4e & kPagePresent) == 0) return std::nullopt;
    const uint64_t pdpte = entryAt(pml4e & kAddressMask, (virt >> 30) & 511);
    if ((pdpte & kPagePresent) == 0) return std::nullopt;
    EXPECT_EQ(pdpte & kPageLarge, 0u) << "no 1 GiB pages";
    const uint64_t pde = entryAt(pdpte & kAddressMask, (virt >> 21) & 511);
    if ((pde & kPagePresent) == 0) return std::nullopt;
    EXPECT_NE(pde & kPageLarge, 0u) << "2 MiB pages";
    EXPECT_NE(pde & pdpte & pml4e & kPageWritable, 0u);
    return (pde & 0x000f'ffff'ffe0'0000) | (virt & 0x1f'ffff);
  }
};

TEST_F(X86SetupTest, PageTablesMapTheFirst4GiBToThemselves) {
  ASSERT_TRUE(writeIdentityPageTables(memory_).ok());
  for (uint64_t address : {uint64_t{0}, uint64_t{0x1234567}, 16 * kMiB + 0x200,
                           uint64_t{0xbfffffff}, uint64_t{0xfee00000}, uint64_t{0xffffffff}}) {
    EXPECT_EQ(translate(address), address) << std::hex << address;
  }
  EXPECT_EQ(translate(uint64_t{4} << 30), std::nullopt);
  EXPECT_EQ(translate(uint64_t{1} << 39), std::nullopt);
}

TEST_F(X86SetupTest, GdtHoldsTheDocumentedSegments) {
  ASSERT_TRUE(writeBootGdt(memory_).ok());
  auto descriptor = [&](uint16_t selector) { return entryAt(layout::kGdt.raw(), selector / 8); };
  EXPECT_EQ(descriptor(0), 0u);

  const Segment code64 = decodeDescriptor(descriptor(kCode64Selector));
  EXPECT_EQ(code64.base, 0u);
  EXPECT_EQ(code64.limit, 0xffffffffu);
  EXPECT_EQ(code64.type, 0xb);
  EXPECT_TRUE(code64.s && code64.present && code64.l && code64.g);
  EXPECT_FALSE(code64.db) << "L=1 requires D=0";
  EXPECT_EQ(code64.dpl, 0);

  const Segment code32 = decodeDescriptor(descriptor(kCode32Selector));
  EXPECT_EQ(code32.limit, 0xffffffffu);
  EXPECT_EQ(code32.type, 0xb);
  EXPECT_TRUE(code32.s && code32.present && code32.db && code32.g);
  EXPECT_FALSE(code32.l);

  const Segment data = decodeDescriptor(descriptor(kDataSelector));
  EXPECT_EQ(data.base, 0u);
  EXPECT_EQ(data.limit, 0xffffffffu);
  EXPECT_EQ(data.type, 0x3);
  EXPECT_TRUE(data.s && data.present && data.db && data.g);

  const Segment tss = decodeDescriptor(descriptor(kTssSelector));
  EXPECT_EQ(tss.base, 0u);
  EXPECT_EQ(tss.limit, 0x67u);
  EXPECT_EQ(tss.type, 0xb);
  EXPECT_TRUE(tss.present);
  EXPECT_FALSE(tss.s || tss.g);
  EXPECT_EQ(descriptor(kTssSelector + 8), 0u) << "upper half of the long-mode TSS descriptor";
  EXPECT_EQ(kBootGdtLimit, 6 * 8 - 1);
}

TEST(SegmentDecodeTest, BaseAndByteGranularLimit) {
  // base 0x12345678, limit 0xabcde, G=0, access 0x93.
  const Segment s = decodeDescriptor(0x12'0a'93'345678'bcdeULL);
  EXPECT_EQ(s.base, 0x12345678u);
  EXPECT_EQ(s.limit, 0xabcdeu);
  EXPECT_EQ(s.type, 3);
  EXPECT_FALSE(s.g);
}

}  // namespace
}  // namespace flotilla::vmm::x86
