// Tests of the MSR lists: the power-on values a vCPU starts with, and which MSRs a snapshot
// saves (those KVM reports, in restore order with the TSC first).
#include "vmm/vcpu/msrs.h"

#include <algorithm>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Everything msrsToSave knows, in its order (Intel SDM vol. 4; KVM's own from kvm_para.h).
std::vector<uint32_t> allKnown() {
  std::vector<uint32_t> msrs = {
      0x10,       0x174,      0x175,      0x176,      0x1a0,      0x277,      0x2ff,     0xc0000081,
      0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0xc0000103, 0x3b,       0x6e0,     0x11,
      0x12,       0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05};
  for (uint32_t i = 0x200; i <= 0x20f; ++i) msrs.push_back(i);  // variable-range MTRRs
  for (uint32_t i : {0x250u, 0x258u, 0x259u}) msrs.push_back(i);
  for (uint32_t i = 0x268; i <= 0x26f; ++i) msrs.push_back(i);  // fixed-range MTRRs
  return msrs;
}

TEST(MsrsToSaveTest, KeepsItsOrderWithTheTscFirstWhateverKvmsOrder) {
  std::vector<uint32_t> kvm = allKnown();
  std::reverse(kvm.begin(), kvm.end());
  kvm.push_back(0x48);        // SPEC_CTRL: KVM can save it, the list does not want it
  kvm.push_back(0xc0010117);  // an AMD MSR
  const std::vector<uint32_t> saved = msrsToSave(kvm);
  EXPECT_EQ(saved, allKnown());
  ASSERT_FALSE(saved.empty());
  EXPECT_EQ(saved.front(), kMsrIa32Tsc);
}

TEST(MsrsToSaveTest, OnlyMsrsKvmReportsAreSaved) {
  const std::vector<uint32_t> kvm = {0x4b564d01, 0x277, 0x11, 0x6e0, 0x10, 0xc0000082, 0x205};
  EXPECT_THAT(msrsToSave(kvm),
              ElementsAre(0x10u, 0x277u, 0xc0000082u, 0x6e0u, 0x11u, 0x4b564d01u, 0x205u));
  EXPECT_THAT(msrsToSave({0x174, 0x175}), ElementsAre(0x174u, 0x175u)) << "no TSC, none added";
  EXPECT_THAT(msrsToSave({}), IsEmpty());
  EXPECT_THAT(msrsToSave({0x48, 0x1234}), IsEmpty());
  EXPECT_THAT(msrsToSave({0x10, 0x10, 0x3b}), ElementsAre(0x10u, 0x3bu)) << "no duplicates";
}

TEST(BootMsrsTest, FirmwareLikeValuesWithUniqueIndices) {
  const auto& msrs = bootMsrs();
  std::set<uint32_t> seen;
  for (const auto& [index, value] : msrs) {
    EXPECT_TRUE(seen.insert(index).second) << "MSR " << std::hex << index << " twice";
  }
  auto valueOf = [&msrs](uint32_t index) -> uint64_t {
    for (const auto& [i, value] : msrs) {
      if (i == index) return value;
    }
    ADD_FAILURE() << "no boot value for MSR " << std::hex << index;
    return ~uint64_t{0};
  };
  EXPECT_EQ(valueOf(kMsrIa32Tsc), 0u);
  EXPECT_EQ(valueOf(0x1a0), 1u) << "MISC_ENABLE: fast strings";
  EXPECT_EQ(valueOf(0x2ff), 0x806u)
      << "MTRRs enabled (E), fixed ranges off (FE), default type write-back";
  for (uint32_t index :
       {0x174u, 0x175u, 0x176u, 0xc0000081u, 0xc0000082u, 0xc0000083u, 0xc0000084u, 0xc0000102u}) {
    EXPECT_EQ(valueOf(index), 0u) << std::hex << index;
  }
  EXPECT_EQ(msrs.size(), 11u);
  // Every MSR set at boot is one a snapshot saves too (when KVM can).
  const std::vector<uint32_t> known = allKnown();
  for (const auto& [index, value] : msrs) {
    EXPECT_NE(std::find(known.begin(), known.end(), index), known.end()) << std::hex << index;
  }
}

}  // namespace
}  // namespace flotilla::vmm
