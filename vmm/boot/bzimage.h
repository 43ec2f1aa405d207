// bzImage kernels (Linux x86 boot protocol, Documentation/arch/x86/boot.rst): the setup header
// at 0x1f1, the protected-mode kernel after the setup sectors, loaded at its preferred address
// and entered through the 64-bit entry point (load address + 0x200). The image is untrusted.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "vmm/boot/linux_boot_params.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm {

// The oldest protocol whose header says whether the kernel has a 64-bit entry point
// (xloadflags, Linux 3.8).
inline constexpr uint16_t kMinBzImageProtocol = 0x020c;

struct BzImage {
  linux_boot::SetupHeader header;  // as in the image (zero past the image's own header)
  // The image's setup header bytes from 0x1f1, at most sizeof(SetupHeader): what goes into
  // the zero page.
  std::span<const uint8_t> header_bytes;
  std::span<const uint8_t> kernel;  // the protected-mode kernel: everything after the setup
  GuestAddress load_address;
  // Bytes from load_address the kernel needs before it reads the memory map: its size or
  // init_size (room to decompress in place), whichever is larger.
  uint64_t footprint = 0;
  GuestAddress entry64;         // load_address + 0x200
  uint32_t cmdline_max = 0;     // cmdline_size: the longest command line, without the NUL
  uint64_t initrd_end_max = 0;  // initrd_addr_max + 1: the initrd must end at or below
};

// Whether the image has the boot sector flag and a "HdrS" setup header.
bool looksLikeBzImage(std::span<const uint8_t> image);

// Parses and checks a bzImage for a 64-bit boot in `memory`.
absl::StatusOr<BzImage> parseBzImage(std::span<const uint8_t> image, const GuestMemory& memory);

// Copies the protected-mode kernel to its load address.
absl::Status loadBzImage(const GuestMemory& memory, const BzImage& image);

}  // namespace flotilla::vmm
