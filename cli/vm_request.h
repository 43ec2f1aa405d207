// `clusterctl create vm`: the CreateVm request from flags and/or a YAML file (-f), described
// in docs/clusterctl.md "VM files". Flags override the file: scalars replace its values,
// --disk and --nic replace its disks and NICs, --label and --host-label add to its labels.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/cluster.pb.h"

namespace flotilla::cli {

struct VmFlags {
  std::optional<std::string> file;  // -f
  std::optional<std::string> name, memory, kernel, initrd, cmdline, cpu_model, policy, affinity,
      anti_affinity, pin;
  std::optional<uint32_t> vcpus;
  std::vector<std::string> disks, nics, labels, host_labels;
  bool ha = false;
  bool no_start = false;
};

inline constexpr uint32_t kDefaultVcpus = 1;
inline constexpr uint64_t kDefaultMemoryBytes = uint64_t{256} << 20;

// The request, validated as far as clusterctl can (name, vCPUs, memory, kernel); errors are
// usage errors (exit 2) naming the flag or the file, line and key.
absl::StatusOr<v1::CreateVmClusterRequest> buildCreateVmRequest(const VmFlags& flags);

// The -f document alone (no defaults applied).
absl::StatusOr<v1::CreateVmClusterRequest> loadVmFile(const std::string& path);

// --disk POOL/VOLUME[,ro|,readonly]
absl::StatusOr<v1::DiskSpec> parseDiskFlag(std::string_view text);
// --nic NETWORK[,mac=MAC][,offload[=on|off]]
absl::StatusOr<v1::NicSpec> parseNicFlag(std::string_view text);
// KEY=VALUE for `flag` ("--label").
absl::StatusOr<std::pair<std::string, std::string>> parseLabel(std::string_view text,
                                                               std::string_view flag);
// live, live-or-cold, cold (also the proto names, MIGRATION_POLICY_LIVE_OR_COLD).
absl::StatusOr<v1::MigrationPolicy> parseMigrationPolicy(std::string_view text);

}  // namespace flotilla::cli
