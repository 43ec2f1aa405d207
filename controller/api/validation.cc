// Request validation (see validation.h).
#include "controller/api/validation.h"

#include <set>

#include "common/ids.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::controller {

namespace {
constexpr uint64_t kMiB = 1ull << 20;
constexpr uint32_t kMaxVcpus = 256;
}  // namespace

absl::Status validateVmRequest(const v1::CreateVmClusterRequest& request) {
  RETURN_IF_ERROR(validateName("vm", request.name()));
  const v1::VmSpec& spec = request.spec();
  if (spec.vcpus() == 0 || spec.vcpus() > kMaxVcpus) {
    return absl::InvalidArgumentError(fmt::format("vm {}: spec.vcpus is {}: give 1 to {}",
                                                  request.name(), spec.vcpus(), kMaxVcpus));
  }
  if (spec.memory_bytes() < 16 * kMiB || spec.memory_bytes() % kMiB != 0) {
    return absl::InvalidArgumentError(
        fmt::format("vm {}: spec.memory_bytes is {}: give a whole number of MiB, at least 16 MiB",
                    request.name(), spec.memory_bytes()));
  }
  if (spec.boot().kernel().empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "vm {}: spec.boot.kernel is empty: give the path of the guest kernel on the hosts",
        request.name()));
  }
  std::set<std::string> volumes;
  for (const v1::DiskSpec& disk : spec.disks()) {
    if (disk.pool().empty() || disk.volume().empty()) {
      return absl::InvalidArgumentError(
          fmt::format("vm {}: every disk needs a pool and a volume (POOL/VOLUME)", request.name()));
    }
    if (!volumes.insert(disk.pool() + "/" + disk.volume()).second) {
      return absl::InvalidArgumentError(fmt::format("vm {}: volume {}/{} is given twice",
                                                    request.name(), disk.pool(), disk.volume()));
    }
  }
  for (const v1::NicSpec& nic : spec.nics()) {
    if (nic.network().empty()) {
      return absl::InvalidArgumentError(
          fmt::format("vm {}: a NIC without a network: give --nic NETWORK", request.name()));
    }
  }
  if (!request.placement().affinity_group().empty() &&
      request.placement().affinity_group() == request.placement().anti_affinity_group()) {
    return absl::InvalidArgumentError(
        fmt::format("vm {}: affinity and anti-affinity group are both '{}': a VM cannot be in both",
                    request.name(), request.placement().affinity_group()));
  }
  return absl::OkStatus();
}

absl::Status validateNetwork(const v1::NetworkRecord& network) {
  RETURN_IF_ERROR(validateName("network", network.meta().name()));
  if (network.vlan() < 1 || network.vlan() > 4094) {
    return absl::InvalidArgumentError(
        fmt::format("network {}: vlan {} is out of range: give 1 to 4094", network.meta().name(),
                    network.vlan()));
  }
  return absl::OkStatus();
}

absl::Status validatePool(const v1::PoolRecord& pool) {
  RETURN_IF_ERROR(validateName("pool", pool.meta().name()));
  if (pool.type() == v1::POOL_TYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        fmt::format("pool {}: no type: give dir, iscsi or drbd", pool.meta().name()));
  }
  if (pool.type() == v1::POOL_TYPE_DIR && pool.shared()) {
    return absl::InvalidArgumentError(fmt::format(
        "pool {}: a dir pool is local to each host and cannot be shared", pool.meta().name()));
  }
  if (!pool.manager_host().empty()) RETURN_IF_ERROR(validateName("host", pool.manager_host()));
  return absl::OkStatus();
}

absl::Status validateVolumeRequest(const v1::CreateVolumeRequest& request) {
  RETURN_IF_ERROR(validateName("pool", request.pool()));
  RETURN_IF_ERROR(validateName("volume", request.name()));
  if (request.size_bytes() < kMiB || request.size_bytes() % 512 != 0) {
    return absl::InvalidArgumentError(
        fmt::format("volume {}/{}: size {} bytes: give at least 1 MiB, a multiple of 512",
                    request.pool(), request.name(), request.size_bytes()));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::controller
