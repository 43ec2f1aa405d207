// flotilla-vmm's options: from its command line, or from a YAML file (--config) whose keys
// have the same names with '_' for '-'; flags given on the command line win over the file.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/log.h"
#include "vmm/vm.h"

namespace flotilla::vmm {

struct VmmOptions {
  VmConfig vm;
  std::string api_socket;       // empty: no API
  std::string restore;          // a snapshot directory to resume instead of booting
  std::string incoming;         // "HOST:PORT": wait for a migration there instead of booting
  std::string migration_token;  // the one-time token a migration source must present
  // Where the final MigrationStatus of an outgoing migration that succeeded is written
  // (binary protobuf) before the VMM exits: its API goes with it, so a caller that polled
  // MigrateStatus reads the final figures (downtime, bytes) there. Empty: not written.
  std::string migration_status;
  LogOptions log;
  bool help = false;  // --help: print `help_text` and exit 0
  std::string help_text;
};

// Errors carry kExitUsage and name the option or the file, key and line.
absl::StatusOr<VmmOptions> parseVmmOptions(int argc, const char* const* argv);

}  // namespace flotilla::vmm
