// A VM's configuration: what `flotilla-vmm`'s options and YAML file give (options.h), and what
// a snapshot records of it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "vmm/device_config.h"
#include "vmm/devices/console.h"

namespace flotilla::vmm {

struct VmConfig {
  std::string name = "vm";
  uint32_t vcpus = 1;
  uint64_t memory_bytes = uint64_t{512} << 20;
  std::string cpu_model = "host";
  bool hugepages = false;
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  ConsoleConfig console;
  std::vector<DiskConfig> disks;
  std::vector<NicConfig> nics;
  bool rng = false;
  bool balloon = false;
};

// Checks the parts of a configuration that need no host resources; errors carry kExitUsage.
absl::Status validateVmConfig(const VmConfig& config);

}  // namespace flotilla::vmm
