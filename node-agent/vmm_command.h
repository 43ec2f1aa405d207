// The flotilla-vmm command line for one of the agent's VMs: a pure function of the VM's spec
// and what the agent prepared for it (disk options, tap descriptors, paths), so that it is
// unit-tested without starting anything.
#pragma once

#include <string>
#include <vector>

#include "flotilla/v1/types.pb.h"

namespace flotilla::agent {

struct VmmNicArg {
  int child_fd = -1;  // the tap's descriptor number in the VMM
  std::string mac{};
  bool offload = true;
};

struct VmmCommand {
  std::string binary;
  std::string name;
  flotilla::v1::VmSpec spec;
  std::vector<std::string> disk_options;  // "path=..." / "iscsi=...", in the spec's order
  std::vector<VmmNicArg> nics;
  std::string api_socket;
  std::string serial_path;
  std::string log_path;
  std::string incoming;               // "tcp:HOST:PORT" for a migration target; empty: boot
  std::string migration_token;        // with incoming
  std::string migration_status_path;  // --migration-status (empty: none)
};

std::vector<std::string> vmmArgv(const VmmCommand& command);

}  // namespace flotilla::agent
