// MSR lists (see msrs.h). Indices from the Intel SDM vol. 4 and Linux's
// arch/x86/include/uapi/asm/kvm_para.h for KVM's own.
#include "vmm/vcpu/msrs.h"

#include <algorithm>

namespace flotilla::vmm {
namespace {

constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrPat = 0x277;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
constexpr uint32_t kMsrTscAux = 0xc0000103;
constexpr uint32_t kMsrTscAdjust = 0x3b;
constexpr uint32_t kMsrTscDeadline = 0x6e0;
constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00;
constexpr uint32_t kMsrKvmSystemTimeNew = 0x4b564d01;
constexpr uint32_t kMsrKvmAsyncPfEnable = 0x4b564d02;
constexpr uint32_t kMsrKvmStealTime = 0x4b564d03;
constexpr uint32_t kMsrKvmPvEoiEnable = 0x4b564d04;
constexpr uint32_t kMsrKvmPollControl = 0x4b564d05;
constexpr uint32_t kMsrKvmWallClock = 0x11;
constexpr uint32_t kMsrKvmSystemTime = 0x12;

constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1 << 11;
constexpr uint64_t kMemoryTypeWriteBack = 6;

}  // namespace

const std::vector<std::pair<uint32_t, uint64_t>>& bootMsrs() {
  static const std::vector<std::pair<uint32_t, uint64_t>> msrs = {
      {kMsrSysenterCs, 0},
      {kMsrSysenterEsp, 0},
      {kMsrSysenterEip, 0},
      {kMsrStar, 0},
      {kMsrCstar, 0},
      {kMsrKernelGsBase, 0},
      {kMsrSyscallMask, 0},
      {kMsrLstar, 0},
      {kMsrIa32Tsc, 0},
      {kMsrMiscEnable, kMiscEnableFastString},
      // MTRRs on, all of memory write-back by default (firmware's usual setting).
      {kMsrMtrrDefType, kMtrrEnable | kMemoryTypeWriteBack},
  };
  return msrs;
}

std::vector<uint32_t> msrsToSave(const std::vector<uint32_t>& kvm_msrs) {
  // Variable-range MTRRs (0x200-0x20f) and fixed ranges (0x250, 0x258, 0x259, 0x268-0x26f).
  std::vector<uint32_t> wanted = {kMsrIa32Tsc,
                                  kMsrSysenterCs,
                                  kMsrSysenterEsp,
                                  kMsrSysenterEip,
                                  kMsrMiscEnable,
                                  kMsrPat,
                                  kMsrMtrrDefType,
                                  kMsrStar,
                                  kMsrLstar,
                                  kMsrCstar,
                                  kMsrSyscallMask,
                                  kMsrKernelGsBase,
                                  kMsrTscAux,
                                  kMsrTscAdjust,
                                  kMsrTscDeadline,
                                  kMsrKvmWallClock,
                                  kMsrKvmSystemTime,
                                  kMsrKvmWallClockNew,
                                  kMsrKvmSystemTimeNew,
                                  kMsrKvmAsyncPfEnable,
                                  kMsrKvmStealTime,
                                  kMsrKvmPvEoiEnable,
                                  kMsrKvmPollControl};
  for (uint32_t i = 0x200; i <= 0x20f; ++i) wanted.push_back(i);
  for (uint32_t i : {0x250u, 0x258u, 0x259u}) wanted.push_back(i);
  for (uint32_t i = 0x268; i <= 0x26f; ++i) wanted.push_back(i);
  std::vector<uint32_t> result;
  for (uint32_t index : wanted) {
    if (std::find(kvm_msrs.begin(), kvm_msrs.end(), index) != kvm_msrs.end()) {
      result.push_back(index);
    }
  }
  return result;
}

}  // namespace flotilla::vmm
