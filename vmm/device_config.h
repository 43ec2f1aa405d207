// The virtio devices of a VM as its configuration gives them: `--disk`, `--net`, `--rng`,
// `--balloon` on the command line, the same keys in YAML, and what a snapshot records.
//
//   --disk path=FILE[,readonly][,serial=S]        a raw image file (or block device)
//   --disk iscsi=iscsi://HOST[:PORT]/IQN/LUN[,readonly][,serial=S][,generation=N]
//   --net tap=NAME|fd=N[,mac=52:54:00:12:34:56][,offload=off]
//
// generation=N (iSCSI only) is the VM's generation: the LUN is opened with the persistent
// reservation of that generation (docs/storage.md "Fencing by generation").
//
// Values cannot contain commas. Without mac=, a NIC gets a random locally administered MAC
// (logged); a VM that migrates or is restored keeps the MAC it had.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::vmm {

struct DiskConfig {
  std::string path;   // a raw image file or block device, or
  std::string iscsi;  // an iSCSI LUN URL
  bool read_only = false;
  std::string serial;  // what the guest reads as the disk's id (default: the device id)
  // iSCSI: the VM's generation, which fences older copies of the VM off the LUN (unset: none).
  std::optional<uint64_t> generation;
  // The option text that gives this disk back ("path=/x.img,readonly").
  std::string toOption() const;
};

struct NicConfig {
  std::string tap;  // a tap to attach to (created if missing), or
  int fd = -1;      // a tap descriptor the parent opened
  std::string mac;  // "52:54:00:12:34:56"; empty: random (chosen when the VM is built)
  bool offload = true;
  std::string toOption() const;
};

// Errors name the option text and say what is expected.
absl::StatusOr<DiskConfig> parseDiskOption(std::string_view text);
absl::StatusOr<NicConfig> parseNetOption(std::string_view text);

}  // namespace flotilla::vmm
