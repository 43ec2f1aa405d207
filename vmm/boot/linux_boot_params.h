// The Linux x86 "zero page": struct boot_params and the setup_header inside it, laid out as in
// arch/x86/include/uapi/asm/bootparam.h (Documentation/arch/x86/boot.rst and zero-page.rst),
// and the function that fills one for the 64-bit boot protocol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/boot/boot.h"
#include "vmm/memory/guest_address.h"

namespace flotilla::vmm::linux_boot {

// Where the setup header sits, both in a bzImage file and in boot_params.
inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;
inline constexpr uint16_t kBootFlag = 0xaa55;         // boot_flag
inline constexpr uint32_t kHeaderMagic = 0x53726448;  // header: "HdrS"
// The protocol version this loader speaks when it writes a header of its own (vmlinux).
inline constexpr uint16_t kLoaderProtocolVersion = 0x020f;
inline constexpr uint8_t kTypeOfLoaderUndefined = 0xff;  // type_of_loader: "undefined"
inline constexpr uint16_t kVidModeNormal = 0xffff;       // vid_mode: "normal VGA"
// loadflags
inline constexpr uint8_t kLoadedHigh = 1 << 0;  // the protected-mode kernel is above 1 MiB
// xloadflags (protocol 2.12+)
inline constexpr uint16_t kXlfKernel64 = 1 << 0;  // 64-bit entry point at load address + 0x200
// Offset of the 64-bit entry point from the start of the protected-mode kernel.
inline constexpr uint64_t kEntry64Offset = 0x200;
inline constexpr size_t kMaxE820Entries = 128;  // E820_MAX_ENTRIES_ZEROPAGE

struct __attribute__((packed)) SetupHeader {
  uint8_t setup_sects;
  uint16_t root_flags;
  uint32_t syssize;
  uint16_t ram_size;
  uint16_t vid_mode;
  uint16_t root_dev;
  uint16_t boot_flag;
  uint16_t jump;
  uint32_t header;
  uint16_t version;
  uint32_t realmode_swtch;
  uint16_t start_sys_seg;
  uint16_t kernel_version;
  uint8_t type_of_loader;
  uint8_t loadflags;
  uint16_t setup_move_size;
  uint32_t code32_start;
  uint32_t ramdisk_image;
  uint32_t ramdisk_size;
  uint32_t bootsect_kludge;
  uint16_t heap_end_ptr;
  uint8_t ext_loader_ver;
  uint8_t ext_loader_type;
  uint32_t cmd_line_ptr;
  uint32_t initrd_addr_max;
  uint32_t kernel_alignment;
  uint8_t relocatable_kernel;
  uint8_t min_alignment;
  uint16_t xloadflags;
  uint32_t cmdline_size;
  uint32_t hardware_subarch;
  uint64_t hardware_subarch_data;
  uint32_t payload_offset;
  uint32_t payload_length;
  uint64_t setup_data;
  uint64_t pref_address;
  uint32_t init_size;
  uint32_t handover_offset;
  uint32_t kernel_info_offset;
};

// Offsets in boot.rst are from the start of the file / zero page, hence the 0x1f1 below.
#define FLOTILLA_SETUP_AT(field, offset) \
  static_assert(offsetof(SetupHeader, field) + kSetupHeaderOffset == (offset), #field)
FLOTILLA_SETUP_AT(setup_sects, 0x1f1);
FLOTILLA_SETUP_AT(syssize, 0x1f4);
FLOTILLA_SETUP_AT(vid_mode, 0x1fa);
FLOTILLA_SETUP_AT(boot_flag, 0x1fe);
FLOTILLA_SETUP_AT(jump, 0x200);
FLOTILLA_SETUP_AT(header, 0x202);
FLOTILLA_SETUP_AT(version, 0x206);
FLOTILLA_SETUP_AT(type_of_loader, 0x210);
FLOTILLA_SETUP_AT(loadflags, 0x211);
FLOTILLA_SETUP_AT(code32_start, 0x214);
FLOTILLA_SETUP_AT(ramdisk_image, 0x218);
FLOTILLA_SETUP_AT(ramdisk_size, 0x21c);
FLOTILLA_SETUP_AT(heap_end_ptr, 0x224);
FLOTILLA_SETUP_AT(cmd_line_ptr, 0x228);
FLOTILLA_SETUP_AT(initrd_addr_max, 0x22c);
FLOTILLA_SETUP_AT(kernel_alignment, 0x230);
FLOTILLA_SETUP_AT(relocatable_kernel, 0x234);
FLOTILLA_SETUP_AT(min_alignment, 0x235);
FLOTILLA_SETUP_AT(xloadflags, 0x236);
FLOTILLA_SETUP_AT(cmdline_size, 0x238);
FLOTILLA_SETUP_AT(hardware_subarch, 0x23c);
FLOTILLA_SETUP_AT(payload_offset, 0x248);
FLOTILLA_SETUP_AT(setup_data, 0x250);
FLOTILLA_SETUP_AT(pref_address, 0x258);
FLOTILLA_SETUP_AT(init_size, 0x260);
FLOTILLA_SETUP_AT(kernel_info_offset, 0x268);
#undef FLOTILLA_SETUP_AT
static_assert(sizeof(SetupHeader) == 0x26c - kSetupHeaderOffset);

struct __attribute__((packed)) BootE820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};
static_assert(sizeof(BootE820Entry) == 20);

// Only the fields a loader writes have names; the rest are byte arrays of the right size.
struct __attribute__((packed)) BootParams {
  uint8_t screen_info[0x40];
  uint8_t apm_bios_info[0x14];
  uint8_t pad2[4];
  uint64_t tboot_addr;
  uint8_t ist_info[0x10];
  uint64_t acpi_rsdp_addr;
  uint8_t pad3[8];
  uint8_t hd0_info[16];
  uint8_t hd1_info[16];
  uint8_t sys_desc_table[0x10];
  uint8_t olpc_ofw_header[0x10];
  uint32_t ext_ramdisk_image;
  uint32_t ext_ramdisk_size;
  uint32_t ext_cmd_line_ptr;
  uint8_t pad4[0x140 - 0xcc];  // includes cc_blob_address (0x13c) of newer kernels
  uint8_t edid_info[0x80];
  uint8_t efi_info[0x20];
  uint32_t alt_mem_k;
  uint32_t scratch;
  uint8_t e820_entries;
  uint8_t eddbuf_entries;
  uint8_t edd_mbr_sig_buf_entries;
  uint8_t kbd_status;
  uint8_t secure_boot;
  uint8_t pad5[2];
  uint8_t sentinel;
  uint8_t pad6[1];
  SetupHeader hdr;
  uint8_t pad7[0x290 - 0x26c];
  uint32_t edd_mbr_sig_buffer[16];
  BootE820Entry e820_table[kMaxE820Entries];
  uint8_t pad8[48];
  uint8_t eddbuf[6 * 82];  // EDDMAXNR struct edd_info
  uint8_t pad9[276];
};
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, edid_info) == 0x140);
static_assert(offsetof(BootParams, alt_mem_k) == 0x1e0);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, sentinel) == 0x1ef);
static_assert(offsetof(BootParams, hdr) == kSetupHeaderOffset);
static_assert(offsetof(BootParams, edd_mbr_sig_buffer) == 0x290);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);
static_assert(offsetof(BootParams, eddbuf) == 0xd00);

struct BootParamsInput {
  // The setup header bytes of a bzImage (from file offset 0x1f1 to the end of its header,
  // at most sizeof(SetupHeader)), copied as they are; empty for a vmlinux, for which a
  // minimal header is made up.
  std::span<const uint8_t> setup_header;
  GuestAddress load_address;  // where the protected-mode kernel was loaded
  GuestAddress cmdline;
  uint32_t cmdline_size = 0;  // vmlinux: written to the made-up header (the NUL excluded)
  GuestAddress initrd;        // 0: none
  uint64_t initrd_size = 0;
  std::vector<E820Entry> e820;
};

// The zero page for the 64-bit entry. Fails if the map has more entries than the zero page
// holds or an address does not fit the 32-bit fields (with their ext_ high halves).
absl::StatusOr<BootParams> makeBootParams(const BootParamsInput& input);

}  // namespace flotilla::vmm::linux_boot
