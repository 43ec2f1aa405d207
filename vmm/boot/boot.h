// Booting a kernel: detect its format, load it, its initrd and its command line into guest
// memory, and write everything its boot protocol expects (boot_params or hvm_start_info, the
// e820 memory map, an MP table listing every vCPU, a GDT and identity-mapped page tables).
// Supported: bzImage (Linux x86 boot protocol, 64-bit entry), uncompressed vmlinux ELF
// (64-bit entry with boot_params), and PVH ELF (XEN_ELFNOTE_PHYS32_ENTRY, 32-bit entry with
// hvm_start_info). The image, initrd and command line are untrusted input.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/boot/layout.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {

enum class KernelFormat { kBzImage, kElf, kPvh };

const char* kernelFormatName(KernelFormat format);  // "bzImage", "ELF", "PVH ELF"

struct BootConfig {
  std::span<const uint8_t> kernel;  // the whole image file
  std::span<const uint8_t> initrd;  // empty: none
  std::string cmdline;
  uint32_t vcpus = 1;  // listed in the MP table (APIC ids 0 .. vcpus-1)
  // An ELF with a PVH note boots through its PVH entry unless this is false (then as a
  // vmlinux through its 64-bit entry).
  bool prefer_pvh = true;
};

// The state the boot vCPU starts in. All segments are flat (base 0, limit 4 GiB, DPL 0), their
// descriptors are in the GDT at `gdt_base` (x86_setup.h):
//   0x08  32-bit code: type 0xb (execute/read, accessed), S=1, P=1, D=1, L=0, G=1
//   0x10  64-bit code: type 0xb, S=1, P=1, D=0, L=1, G=1   (Linux's __BOOT_CS)
//   0x18  data:        type 0x3 (read/write, accessed), S=1, P=1, B=1, G=1 (__BOOT_DS)
//   0x20  TSS:         type 0xb (busy), S=0, P=1, base 0, limit 0x67, G=0 (16 bytes in long mode)
// The VMM loads CS with `code_selector`, DS/ES/FS/GS/SS with `data_selector`, TR with
// `tss_selector` (each with the hidden fields above), LDTR unusable, the IDT empty (base
// layout::kIdt, limit 0), RFLAGS = 0x2 (interrupts off), then:
//   kLong64:      CR0 = PE|PG (ET may be set too), CR4 = PAE, EFER = LME|LMA, CR3 = `cr3`;
//                 RIP, RSP, RSI (boot_params) as below, other GPRs zero.
//   kProtected32: CR0 = PE (paging off), CR4 = 0, EFER = 0; RIP, RSP, RBX (start info) as
//                 below, other GPRs zero.
struct BootEntry {
  enum class Mode {
    kLong64,       // 64-bit mode, paging on with `cr3` (identity map of the first 4 GiB)
    kProtected32,  // 32-bit protected mode, paging off (PVH)
  };
  Mode mode = Mode::kLong64;
  uint64_t rip = 0;
  uint64_t rsp = 0;  // layout::kBootStack; neither protocol needs one, but it is valid
  uint64_t rsi = 0;  // Linux 64-bit entry: address of boot_params (layout::kBootParams)
  uint64_t rbx = 0;  // PVH entry: address of hvm_start_info (layout::kPvhStartInfo)
  uint64_t cr3 = 0;  // kLong64: the PML4 of the identity mapping (layout::kPml4); else 0
  GuestAddress gdt_base;
  uint16_t gdt_limit = 0;
  uint16_t code_selector = 0;  // index into the GDT * 8: 0x10 for kLong64, 0x08 for kProtected32
  uint16_t data_selector = 0;  // 0x18
  uint16_t tss_selector = 0;   // 0x20
  GuestAddress idt_base;       // layout::kIdt
  uint16_t idt_limit = 0;      // 0: an empty IDT
};

struct E820Entry {
  uint64_t addr = 0;
  uint64_t size = 0;
  uint32_t type = 0;  // kE820Ram, kE820Reserved

  friend bool operator==(const E820Entry&, const E820Entry&) = default;
};
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

struct BootInfo {
  KernelFormat format = KernelFormat::kElf;
  BootEntry entry;
  std::vector<E820Entry> e820;  // as given to the guest
  GuestAddress kernel_start;    // where the kernel was loaded
  GuestAddress kernel_end;
  GuestAddress initrd_start;  // 0 when there is none
  uint64_t initrd_size = 0;
  GuestAddress cmdline_address;
};

// Loads and prepares everything for booting `config.kernel` in `memory`. Errors name what is
// wrong with which input, e.g. "kernel image is neither a bzImage nor an ELF (it starts with
// 7f 45 4c 46 02 ...)", "the initrd (64 MiB) does not fit below the kernel's limit of ...".
absl::StatusOr<BootInfo> prepareBoot(const GuestMemory& memory, const BootConfig& config);

}  // namespace flotilla::vmm
