// Names the agent checks and derives: VM names (DNS labels, as the cluster API requires) and
// tap device names, which must be unique per host, at most 15 characters, and the same for a
// VM on every host (a migration target re-creates the tap under the same name).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace flotilla::agent {

// OK for a DNS label (lower-case letters, digits, '-', at most 63, not starting or ending with
// '-'); InvalidArgument naming the VM and the rule otherwise.
absl::Status validateVmName(std::string_view name);

// "fv" + 10 hex digits of a hash of the VM's uid + the NIC's index ("fv3fa09c1e2b0").
std::string tapName(std::string_view vm_uid, int nic_index);

}  // namespace flotilla::agent
