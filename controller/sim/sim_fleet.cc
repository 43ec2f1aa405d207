// The simulated hosts and what they share (see sim_fleet.h).
#include "controller/sim/sim_fleet.h"

#include "fmt/format.h"

namespace flotilla::sim {
namespace {

flotilla::v1::Volume makeVolume(std::string_view pool, std::string_view name, uint64_t size,
                                uint64_t allocated) {
  flotilla::v1::Volume volume;
  volume.set_pool(std::string(pool));
  volume.set_name(std::string(name));
  volume.set_size_bytes(size);
  volume.set_allocated_bytes(allocated);
  return volume;
}

absl::Status volumeNotFound(std::string_view pool, std::string_view name) {
  return absl::NotFoundError(fmt::format("volume '{}' does not exist in pool '{}'", name, pool));
}

}  // namespace

absl::StatusOr<flotilla::v1::Volume> VolumeStore::create(std::string_view pool,
                                                         std::string_view name,
                                                         uint64_t size_bytes) {
  if (name.empty() || size_bytes == 0) {
    return absl::InvalidArgumentError(
        fmt::format("pool '{}': a volume needs a name and a size above 0 (got '{}', {} bytes)",
                    pool, name, size_bytes));
  }
  absl::MutexLock lock(&mu_);
  Pool& volumes = pools_[std::string(pool)];
  if (volumes.contains(name)) {
    return absl::AlreadyExistsError(
        fmt::format("volume '{}' already exists in pool '{}': delete it first or pick another name",
                    name, pool));
  }
  flotilla::v1::Volume volume = makeVolume(pool, name, size_bytes, 0);
  volumes.emplace(std::string(name), volume);
  return volume;
}

absl::StatusOr<flotilla::v1::Volume> VolumeStore::resize(std::string_view pool,
                                                         std::string_view name,
                                                         uint64_t size_bytes) {
  absl::MutexLock lock(&mu_);
  auto pool_it = pools_.find(pool);
  if (pool_it == pools_.end() || !pool_it->second.contains(name)) {
    return volumeNotFound(pool, name);
  }
  flotilla::v1::Volume& volume = pool_it->second.find(name)->second;
  if (size_bytes < volume.size_bytes()) {
    return absl::FailedPreconditionError(
        fmt::format("volume '{}' in pool '{}' has {} bytes: shrinking it to {} would lose data",
                    name, pool, volume.size_bytes(), size_bytes));
  }
  volume.set_size_bytes(size_bytes);
  return volume;
}

absl::StatusOr<flotilla::v1::Volume> VolumeStore::clone(std::string_view pool,
                                                        std::string_view source,
                                                        std::string_view target) {
  absl::MutexLock lock(&mu_);
  Pool& volumes = pools_[std::string(pool)];
  auto it = volumes.find(source);
  if (it == volumes.end()) return volumeNotFound(pool, source);
  if (target.empty() || volumes.contains(target)) {
    return absl::AlreadyExistsError(
        fmt::format("pool '{}': cannot clone '{}' into '{}': the target exists or has no name",
                    pool, source, target));
  }
  flotilla::v1::Volume volume =
      makeVolume(pool, target, it->second.size_bytes(), it->second.allocated_bytes());
  volumes.emplace(std::string(target), volume);
  return volume;
}

absl::Status VolumeStore::remove(std::string_view pool, std::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = pools_.find(pool);
  if (it != pools_.end()) {
    auto volume = it->second.find(name);
    if (volume != it->second.end()) it->second.erase(volume);
  }
  return absl::OkStatus();
}

std::vector<flotilla::v1::Volume> VolumeStore::list(std::string_view pool) {
  absl::MutexLock lock(&mu_);
  std::vector<flotilla::v1::Volume> volumes;
  auto it = pools_.find(pool);
  if (it == pools_.end()) return volumes;
  for (const auto& [name, volume] : it->second) volumes.push_back(volume);
  return volumes;
}

SimFleet::SimFleet(SimulatorOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : systemClock()),
      migrations_(clock_, options_.migration_duration) {
  hosts_.reserve(static_cast<size_t>(options_.hosts));
  for (int i = 0; i < options_.hosts; ++i) {
    const HostShape& shape = options_.shapes[static_cast<size_t>(i) % options_.shapes.size()];
    hosts_.push_back(std::make_unique<SimHost>(
        *this, hostName(options_.prefix, options_.first_index + i), shape));
    by_name_.emplace(hosts_.back()->name(), hosts_.back().get());
  }
}

SimHost* SimFleet::host(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::string SimFleet::describeHosts() const {
  if (hosts_.size() == 1) return hosts_.front()->name();
  return fmt::format("{} to {}", hosts_.front()->name(), hosts_.back()->name());
}

void SimFleet::failNextMigration(std::string_view vm) {
  absl::MutexLock lock(&mu_);
  fail_next_.insert(std::string(vm));
}

bool SimFleet::takeInjectedFailure(std::string_view vm) {
  absl::MutexLock lock(&mu_);
  auto it = fail_next_.find(vm);
  if (it == fail_next_.end()) return false;
  fail_next_.erase(it);
  return true;
}

void SimFleet::setAddresses(std::string agent_address, std::string migration_address) {
  absl::MutexLock lock(&mu_);
  agent_address_ = std::move(agent_address);
  migration_address_ = std::move(migration_address);
}

std::string SimFleet::agentAddress() const {
  absl::MutexLock lock(&mu_);
  return agent_address_;
}

std::string SimFleet::migrationAddress() const {
  absl::MutexLock lock(&mu_);
  return migration_address_;
}

std::vector<std::string> SimFleet::hostsOf(std::string_view vm) const {
  std::vector<std::string> found;
  for (const auto& host : hosts_) {
    if (host->hasVm(vm)) found.push_back(host->name());
  }
  return found;
}

}  // namespace flotilla::sim
