// PoolStorage: the storage pools of one host by name, as the VM manager sees them (VmStorage):
// each volume's --disk option, and the DRBD steps around a VMM's life (primary, secondary,
// dual-primary during a migration) for volumes of DRBD pools; nothing for other pools.
// HostPlumbing owns one, built from the configuration; unit tests build one over fakes.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "node-agent/host_resources.h"
#include "storage/drbd_pool.h"
#include "storage/pool.h"

namespace flotilla::agent {

class PoolStorage final : public VmStorage {
 public:
  void add(std::unique_ptr<storage::VolumePool> pool);
  // A DRBD pool: also reachable through drbdPool().
  void add(std::unique_ptr<storage::DrbdPool> pool);

  storage::VolumePool* pool(std::string_view name) const;
  storage::DrbdPool* drbdPool(std::string_view name) const;
  std::vector<std::string> names() const;

  absl::StatusOr<std::string> diskOption(std::string_view pool, std::string_view volume) override;
  absl::Status activate(std::string_view pool, std::string_view volume) override;
  absl::Status deactivate(std::string_view pool, std::string_view volume) override;
  absl::Status shareForMigration(std::string_view pool, std::string_view volume,
                                 bool shared) override;

 private:
  absl::StatusOr<storage::VolumePool*> find(std::string_view pool) const;

  std::map<std::string, std::unique_ptr<storage::VolumePool>, std::less<>> pools_;
  std::map<std::string, storage::DrbdPool*, std::less<>> drbd_pools_;
};

}  // namespace flotilla::agent
