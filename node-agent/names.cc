// VM names and tap names (see names.h).
#include "node-agent/names.h"

#include <cstdint>

#include "fmt/format.h"

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

std::string tapName(std::string_view vm_uid, int nic_index) {
  // FNV-1a, 64 bits: stable across builds and hosts (std::hash is not).
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (char c : vm_uid) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ULL;
  }
  return fmt::format("fv{:010x}{}", hash & 0xffffffffffULL, nic_index);
}

}  // namespace flotilla::agent
