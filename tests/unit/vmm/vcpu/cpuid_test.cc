// Tests of the CPU models over a synthetic KVM_GET_SUPPORTED_CPUID table shaped like a recent
// Intel host's (AVX-512, PKRU, kvmclock): what each model keeps and hides, the checks of a
// host against a model, and the per-vCPU topology every model gets. Bit positions from the
// Intel SDM vol. 2A (CPUID) and AMD's APM vol. 3.
#include "vmm/vcpu/cpuid.h"

#include <cstring>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::vmm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint32_t bit(unsigned n) {
  return uint32_t{1} << n;
}
uint32_t bits(std::initializer_list<unsigned> positions) {
  uint32_t value = 0;
  for (unsigned n : positions) value |= bit(n);
  return value;
}

// Leaf 1 ECX.
constexpr unsigned kSse3 = 0, kPclmulqdq = 1, kSsse3 = 9, kFma = 12, kCx16 = 13, kPcid = 17,
                   kSse41 = 19, kSse42 = 20, kX2apic = 21, kMovbe = 22, kPopcnt = 23,
                   kTscDeadline = 24, kAes = 25, kXsave = 26, kAvx = 28, kF16c = 29, kRdrand = 30,
                   kHypervisor = 31;
// Leaf 1 EDX: fpu ... sse2 as KVM reports them (0x178bfbff), HTT being bit 28.
constexpr uint32_t kLeaf1Edx = 0x178bfbff;
constexpr unsigned kHtt = 28;
// Leaf 7.0 EBX.
constexpr unsigned kFsgsbase = 0, kBmi1 = 3, kAvx2 = 5, kSmep = 7, kBmi2 = 8, kErms = 9,
                   kAvx512f = 16, kRdseed = 18, kAdx = 19, kSmap = 20, kSha = 29;
// Leaf 0x80000001.
constexpr unsigned kLahfLm = 0, kAbm = 5, kPrefetchw = 8;                           // ECX
constexpr unsigned kSyscall = 11, kNx = 20, kPdpe1gb = 26, kRdtscp = 27, kLm = 29;  // EDX

kvm_cpuid_entry2 entry(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx,
                       uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  // KVM flags the leaves whose subleaf matters.
  if (function == 7 || function == 0xb || function == 0xd || function == 0x1f) {
    e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  }
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

constexpr uint32_t kLeaf1EcxHost = bit(kSse3) | bit(kPclmulqdq) | bit(kSsse3) | bit(kFma) |
                                   bit(kCx16) | bit(kPcid) | bit(kSse41) | bit(kSse42) |
                                   bit(kX2apic) | bit(kMovbe) | bit(kPopcnt) | bit(kTscDeadline) |
                                   bit(kAes) | bit(kXsave) | bit(kAvx) | bit(kF16c) | bit(kRdrand);
constexpr uint32_t kLeaf7EbxHost = bit(kFsgsbase) | bit(kBmi1) | bit(kAvx2) | bit(kSmep) |
                                   bit(kBmi2) | bit(kErms) | bit(kAvx512f) | bit(kRdseed) |
                                   bit(kAdx) | bit(kSmap) | bit(kSha);
// kvmclock, NOP_IO_DELAY, CLOCKSOURCE2, ASYNC_PF, STEAL_TIME, PV_EOI, PV_UNHALT, PV_TLB_FLUSH,
// ASYNC_PF_VMEXIT, PV_SEND_IPI, POLL_CONTROL, PV_SCHED_YIELD, ASYNC_PF_INT, MSI_EXT_DEST_ID,
// CLOCKSOURCE_STABLE_BIT.
const uint32_t kKvmFeaturesHost = bits({0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 24});
const uint32_t kKvmFeaturesBaseline = bits({0, 1, 3, 5, 6, 7, 24});

std::vector<kvm_cpuid_entry2> supportedTable() {
  return {
      entry(0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69),  // "GenuineIntel"
      entry(1, 0, 0x000906ea, 0x0a100800, kLeaf1EcxHost, kLeaf1Edx),
      entry(6, 0, bit(2), 0, 0, 0),  // ARAT
      entry(7, 0, 1, kLeaf7EbxHost, bits({2, 3, 9}), bits({10, 26, 29})),
      entry(7, 1, bit(4), 0, 0, 0),  // AVX-VNNI
      entry(0xb, 0, 1, 2, 0x100, 5),
      entry(0xb, 1, 4, 8, 0x201, 5),
      entry(0xb, 2, 0, 0, 2, 5),
      entry(0xd, 0, 0x2e7, 0xa88, 0xa88, 0),  // x87 SSE AVX opmask ZMM_Hi256 Hi16_ZMM PKRU
      entry(0xd, 1, 0xf, 0, 0, 0),            // XSAVEOPT XSAVEC XGETBV1 XSAVES
      entry(0xd, 2, 256, 576, 0, 0),          // AVX state: 256 bytes at 576
      entry(0xd, 5, 64, 1088, 0, 0),          // opmask state
      entry(0x1f, 0, 1, 2, 0x100, 5),
      entry(0x1f, 1, 4, 8, 0x201, 5),
      entry(0x1f, 2, 0, 0, 2, 5),
      entry(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),  // "KVMKVMKVM"
      entry(0x40000001, 0, kKvmFeaturesHost, 0, 0, 0),
      entry(0x80000000, 0, 0x80000008, 0, 0, 0),
      entry(0x80000001, 0, 0, 0, bit(kLahfLm) | bit(kAbm) | bit(kPrefetchw),
            bit(kSyscall) | bit(kNx) | bit(kPdpe1gb) | bit(kRdtscp) | bit(kLm)),
      entry(0x80000008, 0, 0x3027, bit(9), 0, 0),  // 39/48 address bits; WBNOINVD
      entry(0x8000001e, 0, 7, 0x0103, 0x0100, 0),
  };
}

const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& table, uint32_t function,
                             uint32_t index = 0) {
  for (const kvm_cpuid_entry2& e : table) {
    if (e.function == function && e.index == index) return e;
  }
  ADD_FAILURE() << "no CPUID leaf " << std::hex << function << "." << index;
  static const kvm_cpuid_entry2 missing{};
  return missing;
}

std::vector<kvm_cpuid_entry2> build(const std::vector<kvm_cpuid_entry2>& supported,
                                    std::string_view model, uint32_t index = 0,
                                    uint32_t count = 1) {
  auto table = buildCpuid(supported, model, index, count);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? *table : std::vector<kvm_cpuid_entry2>{};
}

// Leaf 1 EDX of the v1 baseline: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov
// pat pse36 clflush mmx fxsr sse sse2.
const uint32_t kBaselineV1Edx =
    bits({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 23, 24, 25, 26});

TEST(CpuModelTest, NamesTheThreeModels) {
  EXPECT_THAT(cpuModelNames(), ElementsAre("host", "x86-64-v2", "x86-64-v3"));
}

TEST(CpuModelTest, HostKeepsEverythingButTopologyAndTheHypervisorBit) {
  const std::vector<kvm_cpuid_entry2> supported = supportedTable();
  const std::vector<kvm_cpuid_entry2> table = build(supported, "host");
  ASSERT_EQ(table.size(), supported.size());
  for (size_t i = 0; i < table.size(); ++i) {
    const kvm_cpuid_entry2& got = table[i];
    const kvm_cpuid_entry2& want = supported[i];
    EXPECT_EQ(got.function, want.function);
    EXPECT_EQ(got.index, want.index);
    EXPECT_EQ(got.flags, want.flags);
    if (got.function == 1 || got.function == 0xb || got.function == 0x1f ||
        got.function == 0x8000001e) {
      continue;  // topology, checked below
    }
    SCOPED_TRACE(::testing::Message() << "leaf " << std::hex << got.function << "." << got.index);
    EXPECT_EQ(got.eax, want.eax);
    EXPECT_EQ(got.ebx, want.ebx);
    EXPECT_EQ(got.ecx, want.ecx);
    EXPECT_EQ(got.edx, want.edx);
  }
  const kvm_cpuid_entry2& leaf1 = find(table, 1);
  EXPECT_EQ(leaf1.eax, 0x000906eau);
  EXPECT_EQ(leaf1.ecx, kLeaf1EcxHost | bit(kHypervisor));
  EXPECT_EQ(leaf1.edx, kLeaf1Edx & ~bit(kHtt)) << "one vCPU: no HTT";
  EXPECT_EQ(find(table, 7).ebx & bit(kAvx512f), bit(kAvx512f));
  EXPECT_EQ(find(table, 0x40000001).eax, kKvmFeaturesHost);
}

TEST(CpuModelTest, V2KeepsTheV2BaselineAndHidesAvxXsaveAndTheRest) {
  const std::vector<kvm_cpuid_entry2> table = build(supportedTable(), "x86-64-v2");
  const kvm_cpuid_entry2& leaf1 = find(table, 1);
  EXPECT_EQ(leaf1.ecx, bits({kSse3, kSsse3, kCx16, kSse41, kSse42, kPopcnt, kX2apic, kTscDeadline,
                             kHypervisor}));
  EXPECT_EQ(leaf1.ecx & bits({kFma, kMovbe, kXsave, kAvx, kF16c, kAes, kPclmulqdq, kPcid, kRdrand}),
            0u);
  EXPECT_EQ(leaf1.edx, kBaselineV1Edx);
  EXPECT_EQ(leaf1.eax, 0x000906eau) << "family, model and stepping stay the host's";

  const kvm_cpuid_entry2& leaf7 = find(table, 7, 0);
  EXPECT_EQ(leaf7.eax, 0u) << "no subleaf beyond 0";
  EXPECT_EQ(leaf7.ebx, 0u) << "no AVX2, BMI, ...";
  EXPECT_EQ(leaf7.ecx, 0u);
  EXPECT_EQ(leaf7.edx, 0u);
  EXPECT_EQ(find(table, 7, 1).eax, 0u);
  for (uint32_t subleaf : {0u, 1u, 2u, 5u}) {
    const kvm_cpuid_entry2& xsave = find(table, 0xd, subleaf);
    EXPECT_EQ(xsave.eax | xsave.ebx | xsave.ecx | xsave.edx, 0u) << "leaf 0xd." << subleaf;
  }
  EXPECT_EQ(find(table, 6).eax, 0u);

  const kvm_cpuid_entry2& extended = find(table, 0x80000001);
  EXPECT_EQ(extended.ecx, bit(kLahfLm));
  EXPECT_EQ(extended.edx, bits({kSyscall, kNx, kLm}));
  EXPECT_EQ(find(table, 0x80000008).eax, 0x3027u) << "address sizes stay";
  EXPECT_EQ(find(table, 0x80000008).ebx, 0u);
  EXPECT_EQ(find(table, 0).eax, 0x1fu);
  EXPECT_EQ(find(table, 0x80000000).eax, 0x80000008u);
}

TEST(CpuModelTest, V3AddsAvx2BmiFmaAndXsaveOfX87SseAvxOnly) {
  const std::vector<kvm_cpuid_entry2> table = build(supportedTable(), "x86-64-v3");
  const kvm_cpuid_entry2& leaf1 = find(table, 1);
  EXPECT_EQ(leaf1.ecx, bits({kSse3, kSsse3, kFma, kCx16, kSse41, kSse42, kX2apic, kMovbe, kPopcnt,
                             kTscDeadline, kXsave, kAvx, kF16c, kHypervisor}));
  EXPECT_EQ(leaf1.edx, kBaselineV1Edx);

  const kvm_cpuid_entry2& leaf7 = find(table, 7, 0);
  EXPECT_EQ(leaf7.ebx, bits({kBmi1, kAvx2, kBmi2})) << "no AVX-512, SMEP, ERMS, ...";
  EXPECT_EQ(leaf7.eax | leaf7.ecx | leaf7.edx, 0u);
  EXPECT_EQ(find(table, 7, 1).eax, 0u);

  const kvm_cpuid_entry2& xsave0 = find(table, 0xd, 0);
  EXPECT_EQ(xsave0.eax, 0x7u) << "x87, SSE, AVX";
  EXPECT_EQ(xsave0.edx, 0u);
  EXPECT_EQ(xsave0.ebx, 576u + 256u) << "legacy area and header, then AVX";
  EXPECT_EQ(xsave0.ecx, 576u + 256u);
  const kvm_cpuid_entry2& xsave1 = find(table, 0xd, 1);
  EXPECT_EQ(xsave1.eax | xsave1.ebx | xsave1.ecx | xsave1.edx, 0u) << "no XSAVEOPT/C/S";
  const kvm_cpuid_entry2& avx = find(table, 0xd, 2);
  EXPECT_EQ(avx.eax, 256u);
  EXPECT_EQ(avx.ebx, 576u);
  const kvm_cpuid_entry2& opmask = find(table, 0xd, 5);
  EXPECT_EQ(opmask.eax | opmask.ebx | opmask.ecx | opmask.edx, 0u);

  const kvm_cpuid_entry2& extended = find(table, 0x80000001);
  EXPECT_EQ(extended.ecx, bits({kLahfLm, kAbm}));
  EXPECT_EQ(extended.edx, bits({kSyscall, kNx, kLm}));
}

TEST(CpuModelTest, BaselinesKeepOnlyMigratableKvmFeatures) {
  for (const char* model : {"x86-64-v2", "x86-64-v3"}) {
    SCOPED_TRACE(model);
    const std::vector<kvm_cpuid_entry2> table = build(supportedTable(), model);
    EXPECT_EQ(find(table, 0x40000001).eax, kKvmFeaturesBaseline);
    const kvm_cpuid_entry2& signature = find(table, 0x40000000);
    EXPECT_EQ(signature.eax, 0x40000001u);
    EXPECT_EQ(signature.ebx, 0x4b4d564bu);
    EXPECT_EQ(signature.ecx, 0x564b4d56u);
    EXPECT_EQ(signature.edx, 0x4du);
  }
}

TEST(CpuModelTest, EveryModelSetsTheHypervisorBit) {
  for (const char* model : {"host", "x86-64-v2", "x86-64-v3"}) {
    EXPECT_EQ(find(build(supportedTable(), model), 1).ecx & bit(kHypervisor), bit(kHypervisor))
        << model;
  }
}

TEST(CpuModelTest, UnknownModelsAreInvalidAndTheErrorListsTheModels) {
  absl::Status status = checkCpuModel(supportedTable(), "pentium");
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("unknown CPU model 'pentium': use one of host, x86-64-v2, x86-64-v3"));
  auto table = buildCpuid(supportedTable(), "X86-64-V2", 0, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(table.status())) << "names are case-sensitive";
  EXPECT_TRUE(absl::IsInvalidArgument(checkCpuModel(supportedTable(), "")));
}

TEST(CpuModelTest, AHostWithoutAvx2CannotRunV3ButCanRunV2) {
  std::vector<kvm_cpuid_entry2> supported = supportedTable();
  for (kvm_cpuid_entry2& e : supported) {
    if (e.function == 7 && e.index == 0) e.ebx &= ~bit(kAvx2);
  }
  absl::Status v3 = checkCpuModel(supported, "x86-64-v3");
  EXPECT_TRUE(absl::IsFailedPrecondition(v3)) << v3;
  EXPECT_THAT(v3.message(), HasSubstr("this host cannot run CPU model x86-64-v3: it lacks avx2; "
                                      "choose an older model"));
  EXPECT_TRUE(absl::IsFailedPrecondition(buildCpuid(supported, "x86-64-v3", 0, 1).status()));
  EXPECT_TRUE(checkCpuModel(supported, "x86-64-v2").ok());
  EXPECT_TRUE(checkCpuModel(supported, "host").ok());
  EXPECT_EQ(find(build(supported, "host"), 7).ebx & bit(kAvx2), 0u);
}

TEST(CpuModelTest, TheErrorListsEveryMissingFeature) {
  std::vector<kvm_cpuid_entry2> supported;
  for (const kvm_cpuid_entry2& e : supportedTable()) {
    if (e.function == 7) continue;  // an old host: no leaf 7 at all
    supported.push_back(e);
  }
  for (kvm_cpuid_entry2& e : supported) {
    if (e.function == 1) e.ecx &= ~(bit(kFma) | bit(kPopcnt));
  }
  absl::Status v3 = checkCpuModel(supported, "x86-64-v3");
  EXPECT_THAT(v3.message(), HasSubstr("it lacks popcnt, fma, bmi1, avx2, bmi2;"));
  absl::Status v2 = checkCpuModel(supported, "x86-64-v2");
  EXPECT_TRUE(absl::IsFailedPrecondition(v2)) << v2;
  EXPECT_THAT(v2.message(), HasSubstr("it lacks popcnt;"));
}

TEST(CpuModelTest, EveryModelNeedsX86_64) {
  std::vector<kvm_cpuid_entry2> supported = supportedTable();
  for (kvm_cpuid_entry2& e : supported) {
    if (e.function == 0x80000001) e.edx &= ~bit(kLm);
  }
  absl::Status host = checkCpuModel(supported, "host");
  EXPECT_TRUE(absl::IsFailedPrecondition(host)) << host;
  EXPECT_THAT(host.message(), HasSubstr("it lacks lm;"));
}

TEST(CpuTopologyTest, EveryVcpuGetsItsApicIdAndTheCount) {
  const std::vector<kvm_cpuid_entry2> supported = supportedTable();
  for (const char* model : {"host", "x86-64-v2", "x86-64-v3"}) {
    for (uint32_t index = 0; index < 4; ++index) {
      SCOPED_TRACE(::testing::Message() << model << " vCPU " << index);
      const std::vector<kvm_cpuid_entry2> table = build(supported, model, index, 4);
      const kvm_cpuid_entry2& leaf1 = find(table, 1);
      EXPECT_EQ(leaf1.ebx, (index << 24) | (4u << 16) | (8u << 8))
          << "APIC id, logical processor count, CLFLUSH size 64 bytes";
      EXPECT_EQ(leaf1.edx & bit(kHtt), bit(kHtt)) << "EBX[23:16] is valid";
      for (uint32_t leaf : {0xbu, 0x1fu}) {
        const kvm_cpuid_entry2& smt = find(table, leaf, 0);
        EXPECT_EQ(smt.eax, 0u);
        EXPECT_EQ(smt.ebx, 1u) << "one thread per core";
        EXPECT_EQ(smt.ecx, 0x100u) << "level 0, type SMT";
        EXPECT_EQ(smt.edx, index) << "x2APIC id";
        const kvm_cpuid_entry2& core = find(table, leaf, 1);
        EXPECT_EQ(core.eax, 2u) << "APIC id bits below the package: 4 cores";
        EXPECT_EQ(core.ebx, 4u);
        EXPECT_EQ(core.ecx, 0x201u) << "level 1, type core";
        EXPECT_EQ(core.edx, index);
        const kvm_cpuid_entry2& end = find(table, leaf, 2);
        EXPECT_EQ(end.eax | end.ebx, 0u);
        EXPECT_EQ(end.ecx, 2u) << "level 2, type invalid: the end";
        EXPECT_EQ(end.edx, index);
      }
      const kvm_cpuid_entry2& amd = find(table, 0x8000001e);
      EXPECT_EQ(amd.eax, index) << "extended APIC id";
      EXPECT_EQ(amd.ebx, index) << "core id, one thread per core";
      EXPECT_EQ(amd.ecx, 0u) << "node 0";
    }
  }
}

TEST(CpuTopologyTest, CoreBitsRoundTheCountUpToAPowerOfTwo) {
  const std::vector<kvm_cpuid_entry2> supported = supportedTable();
  struct Case {
    uint32_t count;
    uint32_t core_bits;
  };
  for (Case c : {Case{1, 0}, Case{2, 1}, Case{3, 2}, Case{4, 2}, Case{5, 3}, Case{8, 3}, Case{9, 4},
                 Case{64, 6}, Case{255, 8}}) {
    const std::vector<kvm_cpuid_entry2> table = build(supported, "host", c.count - 1, c.count);
    EXPECT_EQ(find(table, 0xb, 1).eax, c.core_bits) << c.count << " vCPUs";
    EXPECT_EQ(find(table, 0xb, 1).ebx, c.count);
    EXPECT_EQ(find(table, 1).ebx >> 24, c.count - 1);
  }
}

TEST(CpuTopologyTest, OneVcpuHasNoHttAndManyCapTheLeafOneCount) {
  const std::vector<kvm_cpuid_entry2> supported = supportedTable();
  const kvm_cpuid_entry2 single = find(build(supported, "x86-64-v3", 0, 1), 1);
  EXPECT_EQ(single.edx & bit(kHtt), 0u);
  EXPECT_EQ(single.ebx, (1u << 16) | (8u << 8));
  const kvm_cpuid_entry2 many = find(build(supported, "host", 3, 300), 1);
  EXPECT_EQ((many.ebx >> 16) & 0xff, 255u) << "EBX[23:16] is 8 bits wide";
  EXPECT_EQ(many.ebx >> 24, 3u);
}

TEST(CpuTopologyTest, TheSupportedTableIsLeftAsItWas) {
  const std::vector<kvm_cpuid_entry2> supported = supportedTable();
  build(supported, "x86-64-v2", 2, 4);
  const std::vector<kvm_cpuid_entry2> fresh = supportedTable();
  ASSERT_EQ(supported.size(), fresh.size());
  for (size_t i = 0; i < supported.size(); ++i) {
    EXPECT_EQ(std::memcmp(&supported[i], &fresh[i], sizeof(kvm_cpuid_entry2)), 0) << i;
  }
}

}  // namespace
}  // namespace flotilla::vmm
