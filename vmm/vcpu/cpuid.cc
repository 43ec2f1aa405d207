// CPU models (see cpuid.h). Bit positions are from the Intel SDM (vol. 2A, CPUID) and AMD's
// APM (vol. 3, appendix E); the psABI levels from the x86-64 System V ABI, section 3.1.1.
#include "vmm/vcpu/cpuid.h"

#include <algorithm>
#include <bit>

#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::vmm {
namespace {

constexpr uint32_t bit(unsigned n) {
  return uint32_t{1} << n;
}

// A feature: where it is (leaf, subleaf, register) and its bit.
enum class Reg { kEax, kEbx, kEcx, kEdx };
struct Feature {
  const char* name;
  uint32_t leaf;
  uint32_t subleaf;
  Reg reg;
  unsigned bit;
};

// Features of the baselines. Leaf 1 and 0x80000001 also carry bits that KVM provides
// whatever the host CPU (x2APIC, TSC deadline, hypervisor): those are in kVirtual.
constexpr Feature kBaselineV1[] = {
    {"fpu", 1, 0, Reg::kEdx, 0},
    {"vme", 1, 0, Reg::kEdx, 1},
    {"de", 1, 0, Reg::kEdx, 2},
    {"pse", 1, 0, Reg::kEdx, 3},
    {"tsc", 1, 0, Reg::kEdx, 4},
    {"msr", 1, 0, Reg::kEdx, 5},
    {"pae", 1, 0, Reg::kEdx, 6},
    {"mce", 1, 0, Reg::kEdx, 7},
    {"cx8", 1, 0, Reg::kEdx, 8},
    {"apic", 1, 0, Reg::kEdx, 9},
    {"sep", 1, 0, Reg::kEdx, 11},
    {"mtrr", 1, 0, Reg::kEdx, 12},
    {"pge", 1, 0, Reg::kEdx, 13},
    {"mca", 1, 0, Reg::kEdx, 14},
    {"cmov", 1, 0, Reg::kEdx, 15},
    {"pat", 1, 0, Reg::kEdx, 16},
    {"pse36", 1, 0, Reg::kEdx, 17},
    {"clflush", 1, 0, Reg::kEdx, 19},
    {"mmx", 1, 0, Reg::kEdx, 23},
    {"fxsr", 1, 0, Reg::kEdx, 24},
    {"sse", 1, 0, Reg::kEdx, 25},
    {"sse2", 1, 0, Reg::kEdx, 26},
    {"syscall", 0x80000001, 0, Reg::kEdx, 11},
    {"nx", 0x80000001, 0, Reg::kEdx, 20},
    {"lm", 0x80000001, 0, Reg::kEdx, 29},
};
constexpr Feature kBaselineV2[] = {
    {"sse3", 1, 0, Reg::kEcx, 0},
    {"ssse3", 1, 0, Reg::kEcx, 9},
    {"cx16", 1, 0, Reg::kEcx, 13},
    {"sse4.1", 1, 0, Reg::kEcx, 19},
    {"sse4.2", 1, 0, Reg::kEcx, 20},
    {"popcnt", 1, 0, Reg::kEcx, 23},
    {"lahf_lm", 0x80000001, 0, Reg::kEcx, 0},
};
constexpr Feature kBaselineV3[] = {
    {"fma", 1, 0, Reg::kEcx, 12},         {"movbe", 1, 0, Reg::kEcx, 22},
    {"xsave", 1, 0, Reg::kEcx, 26},       {"avx", 1, 0, Reg::kEcx, 28},
    {"f16c", 1, 0, Reg::kEcx, 29},        {"bmi1", 7, 0, Reg::kEbx, 3},
    {"avx2", 7, 0, Reg::kEbx, 5},         {"bmi2", 7, 0, Reg::kEbx, 8},
    {"abm", 0x80000001, 0, Reg::kEcx, 5},
};
// Emulated by KVM on any host; kept in every model when KVM offers them.
constexpr Feature kVirtual[] = {
    {"x2apic", 1, 0, Reg::kEcx, 21},
    {"tsc_deadline", 1, 0, Reg::kEcx, 24},
};
// kvmclock and the paravirtual features that migrate safely (leaf 0x40000001 EAX).
constexpr uint32_t kKvmBaselineFeatures = bit(0) /*CLOCKSOURCE*/ | bit(1) /*NOP_IO_DELAY*/ |
                                          bit(3) /*CLOCKSOURCE2*/ | bit(5) /*STEAL_TIME*/ |
                                          bit(6) /*PV_EOI*/ | bit(7) /*PV_UNHALT*/ |
                                          bit(24) /*CLOCKSOURCE_STABLE_BIT*/;

struct Model {
  const char* name;
  int level;  // 0: host passthrough
};
constexpr Model kModels[] = {{"host", 0}, {"x86-64-v2", 2}, {"x86-64-v3", 3}};

const Model* findModel(std::string_view name) {
  for (const Model& model : kModels) {
    if (name == model.name) return &model;
  }
  return nullptr;
}

uint32_t& regOf(kvm_cpuid_entry2& entry, Reg reg) {
  switch (reg) {
    case Reg::kEax:
      return entry.eax;
    case Reg::kEbx:
      return entry.ebx;
    case Reg::kEcx:
      return entry.ecx;
    case Reg::kEdx:
      return entry.edx;
  }
  return entry.eax;
}

kvm_cpuid_entry2* findEntry(std::vector<kvm_cpuid_entry2>& table, uint32_t leaf, uint32_t subleaf) {
  for (kvm_cpuid_entry2& entry : table) {
    bool indexed = entry.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    if (entry.function == leaf && (!indexed || entry.index == subleaf)) return &entry;
  }
  return nullptr;
}

bool has(std::vector<kvm_cpuid_entry2>& table, const Feature& feature) {
  kvm_cpuid_entry2* entry = findEntry(table, feature.leaf, feature.subleaf);
  return entry != nullptr && (regOf(*entry, feature.reg) & bit(feature.bit)) != 0;
}

template <size_t N>
void collect(const Feature (&features)[N], std::vector<const Feature*>& out) {
  for (const Feature& feature : features) out.push_back(&feature);
}

// The features a model's level requires (and allows).
std::vector<const Feature*> baseline(int level) {
  std::vector<const Feature*> features;
  collect(kBaselineV1, features);
  if (level >= 2) collect(kBaselineV2, features);
  if (level >= 3) collect(kBaselineV3, features);
  return features;
}

// Hides every feature bit the baseline does not list, in the leaves that carry features.
void maskToBaseline(std::vector<kvm_cpuid_entry2>& table, int level) {
  std::vector<const Feature*> allowed = baseline(level);
  collect(kVirtual, allowed);
  auto allowedMask = [&](uint32_t leaf, uint32_t subleaf, Reg reg) {
    uint32_t mask = 0;
    for (const Feature* feature : allowed) {
      if (feature->leaf == leaf && feature->subleaf == subleaf && feature->reg == reg) {
        mask |= bit(feature->bit);
      }
    }
    return mask;
  };
  for (kvm_cpuid_entry2& entry : table) {
    switch (entry.function) {
      case 1:
        entry.ecx &= allowedMask(1, 0, Reg::kEcx);
        entry.edx &= allowedMask(1, 0, Reg::kEdx);
        break;
      case 6:  // thermal and power management: nothing for a guest to rely on
        entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
        break;
      case 7:
        if (entry.index == 0) {
          entry.eax = 0;  // no subleaf beyond 0
          entry.ebx &= allowedMask(7, 0, Reg::kEbx);
          entry.ecx = entry.edx = 0;
        } else {
          entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
        }
        break;
      case 0xd:
        // XSAVE state components: x87, SSE and (v3) AVX only; no XSAVEOPT/XSAVEC/XSAVES.
        if (level < 3) {
          entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
        } else if (entry.index == 0) {
          entry.eax &= 0x7;
          entry.edx = 0;
          entry.ebx = entry.ecx = 576 + 256;  // legacy area + header, then the AVX state
        } else if (entry.index == 1) {
          entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
        } else if (entry.index > 2) {
          entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
        }
        break;
      case 0x40000001:
        entry.eax &= kKvmBaselineFeatures;
        break;
      case 0x80000001:
        entry.ecx &= allowedMask(0x80000001, 0, Reg::kEcx);
        entry.edx &= allowedMask(0x80000001, 0, Reg::kEdx);
        break;
      case 0x80000008:
        entry.ebx = 0;  // AMD extended features (IBPB, WBNOINVD, ...)
        break;
      default:
        break;
    }
  }
}

// Per-vCPU identity: every vCPU is one core of a single socket, its APIC id its index.
void setTopology(std::vector<kvm_cpuid_entry2>& table, uint32_t index, uint32_t count) {
  const uint32_t core_bits = static_cast<uint32_t>(std::bit_width(std::max(count, 1u) - 1));
  for (kvm_cpuid_entry2& entry : table) {
    switch (entry.function) {
      case 1:
        entry.ebx = (index << 24) | (std::min(count, 255u) << 16) | (8u << 8);  // clflush 64 B
        if (count > 1) {
          entry.edx |= bit(28);  // HTT: EBX[23:16] is meaningful
        } else {
          entry.edx &= ~bit(28);
        }
        entry.ecx |= bit(31);  // running on a hypervisor
        break;
      case 0xb:
      case 0x1f:
        // x2APIC topology: level 0 SMT (1 thread per core), level 1 core, then none.
        entry.edx = index;
        if (entry.index == 0) {
          entry.eax = 0;
          entry.ebx = 1;
          entry.ecx = (1u << 8) | 0;
        } else if (entry.index == 1) {
          entry.eax = core_bits;
          entry.ebx = count;
          entry.ecx = (2u << 8) | 1;
        } else {
          entry.eax = entry.ebx = 0;
          entry.ecx = entry.index;
        }
        break;
      case 0x8000001e:  // AMD: extended APIC id, core id, node
        entry.eax = index;
        entry.ebx = index & 0xff;
        entry.ecx = 0;
        break;
      default:
        break;
    }
  }
}

}  // namespace

std::vector<std::string> cpuModelNames() {
  std::vector<std::string> names;
  for (const Model& model : kModels) names.emplace_back(model.name);
  return names;
}

absl::Status checkCpuModel(const std::vector<kvm_cpuid_entry2>& supported, std::string_view model) {
  const Model* found = findModel(model);
  if (found == nullptr) {
    return absl::InvalidArgumentError(fmt::format("unknown CPU model '{}': use one of {}", model,
                                                  fmt::join(cpuModelNames(), ", ")));
  }
  std::vector<kvm_cpuid_entry2> table = supported;
  std::vector<std::string> missing;
  for (const Feature* feature : baseline(found->level)) {
    if (!has(table, *feature)) missing.emplace_back(feature->name);
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("this host cannot run CPU model {}: it lacks {}; choose an older model", model,
                    fmt::join(missing, ", ")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> buildCpuid(
    const std::vector<kvm_cpuid_entry2>& supported, std::string_view model, uint32_t index,
    uint32_t count) {
  absl::Status check = checkCpuModel(supported, model);
  if (!check.ok()) return check;
  std::vector<kvm_cpuid_entry2> table = supported;
  int level = findModel(model)->level;
  if (level > 0) maskToBaseline(table, level);
  setTopology(table, index, count);
  return table;
}

}  // namespace flotilla::vmm
