// KVM structures and ioctl numbers that <linux/kvm.h> gets wrong in C++ on Debian 12.
// Linux 6.1's uapi headers declare flexible array members with __DECLARE_FLEX_ARRAY, which
// puts an empty struct before the array. In C that struct has size 0; in C++ it has size 1,
// so the structures grow, their arrays move, and every ioctl number computed from their size
// changes: the kernel then rejects the call (EINVAL). (Newer kernels fixed the macro for
// C++.) These are the kernel's C layouts and numbers, checked against the values a C
// compiler computes.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace flotilla::vmm::abi {

// struct kvm_msr_list: followed by `nmsrs` uint32_t indices.
struct MsrListHeader {
  uint32_t nmsrs;
};
// struct kvm_msrs: followed by `nmsrs` struct kvm_msr_entry.
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
// struct kvm_cpuid2: followed by `nent` struct kvm_cpuid_entry2.
struct Cpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
// struct kvm_xsave without its (empty) flexible tail.
struct Xsave {
  uint32_t region[1024];
};

static_assert(sizeof(MsrListHeader) == 4 && sizeof(MsrsHeader) == 8 && sizeof(Cpuid2Header) == 8 &&
              sizeof(Xsave) == 4096);

inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, Cpuid2Header);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, Cpuid2Header);
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, Xsave);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, Xsave);
inline constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, Xsave);

// The values gcc computes from <linux/kvm.h> in C.
static_assert(kGetMsrIndexList == 0xc004ae02);
static_assert(kGetSupportedCpuid == 0xc008ae05);
static_assert(kGetMsrs == 0xc008ae88);
static_assert(kSetMsrs == 0x4008ae89);
static_assert(kSetCpuid2 == 0x4008ae90);
static_assert(kGetXsave == 0x9000aea4);
static_assert(kSetXsave == 0x5000aea5);
static_assert(kGetXsave2 == 0x9000aecf);

// Structures without a flexible array are the same in C++: the dirty log's ioctls come from
// <linux/kvm.h> as they are. Checked here so that a header change cannot slip by.
static_assert(sizeof(kvm_dirty_log) == 16 && sizeof(kvm_clear_dirty_log) == 24 &&
              sizeof(kvm_enable_cap) == 104);
static_assert(KVM_GET_DIRTY_LOG == 0x4010ae42);
static_assert(KVM_CLEAR_DIRTY_LOG == 0xc018aec0);
static_assert(KVM_ENABLE_CAP == 0x4068aea3);

}  // namespace flotilla::vmm::abi
