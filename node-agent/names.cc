// VM names, spec checks and NICs (see names.h).
#include "node-agent/names.h"

#include <cstdint>
#include <set>

#include "common/status.h"
#include "fmt/format.h"
#include "network/mac_allocation.h"

namespace flotilla::agent {

absl::Status validateVmName(std::string_view name) {
  bool valid = !name.empty() && name.size() <= 63 && name.front() != '-' && name.back() != '-';
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) valid = false;
  }
  if (valid) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format(
      "VM name '{}' is not valid: use 1 to 63 lower-case letters, digits and '-', not starting "
      "or ending with '-'",
      name));
}

absl::Status validateVmSpec(std::string_view name, const flotilla::v1::VmSpec& spec) {
  RETURN_IF_ERROR(validateVmName(name));
  if (spec.vcpus() == 0 || spec.vcpus() > 255) {
    return absl::InvalidArgumentError(
        fmt::format("VM '{}': vcpus must be 1 to 255, not {}", name, spec.vcpus()));
  }
  if (spec.memory_bytes() < (uint64_t{16} << 20) || spec.memory_bytes() % 4096 != 0) {
    return absl::InvalidArgumentError(
        fmt::format("VM '{}': memory_bytes must be a multiple of 4096 and at least 16 MiB, not {}",
                    name, spec.memory_bytes()));
  }
  if (spec.boot().kernel().empty()) {
    return absl::InvalidArgumentError(fmt::format("VM '{}': boot.kernel is empty", name));
  }
  return absl::OkStatus();
}

std::string tapName(std::string_view vm_uid, int nic_index) {
  // FNV-1a, 64 bits: stable across builds and hosts (std::hash is not).
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : vm_uid) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  return fmt::format("fv{:010x}{}", hash & 0xffffffffffULL, nic_index);
}

absl::Status addNics(
    flotilla::v1::AgentVm& vm,
    const google::protobuf::RepeatedPtrField<flotilla::v1::NetworkBinding>& networks,
    const google::protobuf::RepeatedPtrField<std::string>& macs) {
  const std::string& name = vm.name();
  std::set<std::string> macs_used;
  for (int i = 0; i < vm.spec().nics_size(); ++i) {
    const flotilla::v1::NicSpec& nic = vm.spec().nics(i);
    const flotilla::v1::NetworkBinding* binding = nullptr;
    for (const auto& candidate : networks) {
      if (candidate.name() == nic.network()) binding = &candidate;
    }
    if (binding == nullptr) {
      return absl::InvalidArgumentError(fmt::format(
          "VM '{}' NIC {} is on network '{}', which the request does not bind to a VLAN: add "
          "it to `networks`",
          name, i, nic.network()));
    }
    if (binding->vlan() == 0 || binding->vlan() > 4094) {
      return absl::InvalidArgumentError(fmt::format("network '{}': VLAN {} is out of range 1-4094",
                                                    binding->name(), binding->vlan()));
    }
    std::string mac = i < macs.size() ? macs.Get(i) : nic.mac();
    if (mac.empty()) {
      ASSIGN_OR_RETURN(network::MacAddress allocated,
                       network::allocateMac(fmt::format("{}/{}", vm.uid(), i),
                                            [&](const network::MacAddress& candidate) {
                                              return macs_used.contains(candidate.toString());
                                            }));
      mac = allocated.toString();
    } else {
      auto parsed = network::MacAddress::parse(mac);
      if (!parsed.ok()) return annotate(parsed.status(), fmt::format("VM '{}' NIC {}", name, i));
      mac = parsed->toString();
    }
    macs_used.insert(mac);
    flotilla::v1::AgentNic* agent_nic = vm.add_nics();
    agent_nic->set_network(nic.network());
    agent_nic->set_vlan(binding->vlan());
    agent_nic->set_mac(mac);
    agent_nic->set_tap(tapName(vm.uid(), i));
    agent_nic->set_port(agent_nic->tap());
  }
  return absl::OkStatus();
}

}  // namespace flotilla::agent
