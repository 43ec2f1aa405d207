// The storage pools of one host (see pool_storage.h).
#include "node-agent/pool_storage.h"

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::agent {

void PoolStorage::add(std::unique_ptr<storage::VolumePool> pool) {
  std::string name(pool->name());
  drbd_pools_.erase(name);
  pools_[name] = std::move(pool);
}

void PoolStorage::add(std::unique_ptr<storage::DrbdPool> pool) {
  std::string name(pool->name());
  storage::DrbdPool* drbd = pool.get();
  pools_[name] = std::move(pool);
  drbd_pools_[name] = drbd;
}

storage::VolumePool* PoolStorage::pool(std::string_view name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? nullptr : it->second.get();
}

storage::DrbdPool* PoolStorage::drbdPool(std::string_view name) const {
  auto it = drbd_pools_.find(name);
  return it == drbd_pools_.end() ? nullptr : it->second;
}

std::vector<std::string> PoolStorage::names() const {
  std::vector<std::string> names;
  for (const auto& [name, pool] : pools_) names.push_back(name);
  return names;
}

absl::StatusOr<storage::VolumePool*> PoolStorage::find(std::string_view pool_name) const {
  storage::VolumePool* found = pool(pool_name);
  if (found != nullptr) return found;
  std::string known;
  for (const auto& [name, ignored] : pools_) known += (known.empty() ? "" : ", ") + name;
  return absl::NotFoundError(fmt::format("pool '{}' is not configured on this host (its pools: {})",
                                         pool_name, known.empty() ? "none" : known));
}

absl::StatusOr<std::string> PoolStorage::diskOption(std::string_view pool_name,
                                                    std::string_view volume) {
  ASSIGN_OR_RETURN(storage::VolumePool * found, find(pool_name));
  return found->diskOption(volume);
}

// A pool that is not a DRBD pool of this host needs no step. That includes a pool no longer
// configured: the disk option recorded for the VM decides then, as before these steps.
absl::Status PoolStorage::activate(std::string_view pool_name, std::string_view volume) {
  storage::DrbdPool* drbd = drbdPool(pool_name);
  return drbd == nullptr ? absl::OkStatus() : drbd->promote(volume);
}

// Undoing steps succeed when there is nothing to undo (a volume removed): they run on the way
// out of a VM, which must not get stuck on them.
absl::Status PoolStorage::deactivate(std::string_view pool_name, std::string_view volume) {
  storage::DrbdPool* drbd = drbdPool(pool_name);
  if (drbd == nullptr) return absl::OkStatus();
  absl::Status status = drbd->demote(volume);
  return absl::IsNotFound(status) ? absl::OkStatus() : status;
}

absl::Status PoolStorage::shareForMigration(std::string_view pool_name, std::string_view volume,
                                            bool shared) {
  storage::DrbdPool* drbd = drbdPool(pool_name);
  if (drbd == nullptr) return absl::OkStatus();
  absl::Status status = drbd->allowTwoPrimaries(volume, shared);
  return !shared && absl::IsNotFound(status) ? absl::OkStatus() : status;
}

}  // namespace flotilla::agent
