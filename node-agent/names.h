// What the agent checks in a VM's spec and derives from it, shared with the agent simulator
// (controller/sim) so that both refuse and name things alike: VM names (DNS labels, as the
// cluster API requires), the spec's shape, and the NICs (networks bound to VLANs, MACs, and tap
// names, which must be unique per host, at most 15 characters, and the same for a VM on every
// host: a migration target re-creates the tap under the same name).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "flotilla/v1/agent.pb.h"

namespace flotilla::agent {

// OK for a DNS label (lower-case letters, digits, '-', at most 63, not starting or ending with
// '-'); InvalidArgument naming the VM and the rule otherwise.
absl::Status validateVmName(std::string_view name);

// The name, 1 to 255 vCPUs, memory a multiple of 4 KiB and at least 16 MiB, a kernel path;
// InvalidArgument naming the VM and the field otherwise.
absl::Status validateVmSpec(std::string_view name, const flotilla::v1::VmSpec& spec);

// "fv" + 10 hex digits of a hash of the VM's uid + the NIC's index ("fv3fa09c1e2b0").
std::string tapName(std::string_view vm_uid, int nic_index);

// Adds `vm.spec()`'s NICs to `vm`: each on its network's VLAN from `networks`, with the MAC
// from `macs` (by index: a migration keeps them), else the spec's, else one allocated from the
// VM's uid; InvalidArgument naming the VM and NIC for an unbound network, a VLAN out of range
// or a bad MAC.
absl::Status addNics(
    flotilla::v1::AgentVm& vm,
    const google::protobuf::RepeatedPtrField<flotilla::v1::NetworkBinding>& networks,
    const google::protobuf::RepeatedPtrField<std::string>& macs);

}  // namespace flotilla::agent
