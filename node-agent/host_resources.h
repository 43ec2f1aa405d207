// What the agent's VM manager needs from the host, as interfaces: the NICs' taps and Open
// vSwitch ports, the disks' volumes, and the VMs' cgroups. The agent's implementations
// (host_network.h, host_storage.h, host_cgroups.h) drive OVS, the storage pools and the
// cgroup filesystem; unit tests substitute fakes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "flotilla/v1/agent.pb.h"

namespace flotilla::agent {

struct VmIdentity {
  std::string name;
  std::string uid;
};

class VmNetwork {
 public:
  virtual ~VmNetwork() = default;
  // Makes the NIC's tap (persistent, named nic.tap()) and its port on the integration bridge
  // (access port of nic.vlan(), tagged with the VM's identity); idempotent.
  virtual absl::Status plug(const flotilla::v1::AgentNic& nic, const VmIdentity& vm) = 0;
  // A descriptor of the NIC's tap for the VMM (IFF_VNET_HDR).
  virtual absl::StatusOr<UniqueFd> openTap(const flotilla::v1::AgentNic& nic) = 0;
  // Removes the port and the tap; idempotent.
  virtual absl::Status unplug(const flotilla::v1::AgentNic& nic) = 0;
};

class VmStorage {
 public:
  virtual ~VmStorage() = default;
  // The VMM's --disk option for the volume ("path=..." or "iscsi=..."); errors name the pool
  // and the volume.
  virtual absl::StatusOr<std::string> diskOption(std::string_view pool,
                                                 std::string_view volume) = 0;

  // Around a VMM's life on this host (docs/storage.md "DRBD pools"). Only DRBD volumes need
  // them; for other pools they do nothing. Each is idempotent; errors name the pool, the
  // volume and the host.
  // Before a VMM opens the volume here (DRBD: this node becomes primary).
  virtual absl::Status activate(std::string_view /*pool*/, std::string_view /*volume*/) {
    return absl::OkStatus();
  }
  // After the VMM that had it open exited (DRBD: secondary).
  virtual absl::Status deactivate(std::string_view /*pool*/, std::string_view /*volume*/) {
    return absl::OkStatus();
  }
  // While a live migration moves the VM, a VMM on the other host may open the volume too
  // (DRBD: allow-two-primaries yes; no again when the migration ended).
  virtual absl::Status shareForMigration(std::string_view /*pool*/, std::string_view /*volume*/,
                                         bool /*shared*/) {
    return absl::OkStatus();
  }
};

struct CgroupUsageSample {
  uint64_t cpu_time_ns = 0;
  uint64_t memory_bytes = 0;
};

class VmCgroups {
 public:
  virtual ~VmCgroups() = default;
  // Creates (or updates) the VM's group: CPU quota of `vcpus` cores, memory limit
  // `memory_limit_bytes` (guest memory plus the VMM's overhead).
  virtual absl::Status create(std::string_view vm, uint32_t vcpus, uint64_t memory_limit_bytes) = 0;
  virtual absl::Status addProcess(std::string_view vm, int pid) = 0;
  virtual absl::StatusOr<CgroupUsageSample> usage(std::string_view vm) = 0;
  // Removes the group; idempotent. Fails while processes remain in it.
  virtual absl::Status remove(std::string_view vm) = 0;
};

}  // namespace flotilla::agent
