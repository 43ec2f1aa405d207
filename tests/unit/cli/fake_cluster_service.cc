// The in-memory ClusterService of clusterctl's unit tests: setting up and the unary RPCs (see
// fake_cluster_service.h; Watch and the server are in fake_cluster_watch.cc).
#include "tests/unit/cli/fake_cluster_service.h"

#include <algorithm>

#include "fmt/format.h"

namespace flotilla::cli::testing {
namespace {

grpc::Status notFound(std::string_view kind, std::string_view name) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND, fmt::format("{} {} not found", kind, name));
}

}  // namespace

#define FAKE_ENTER(method, request) \
  absl::MutexLock lock(&mu_);       \
  if (auto failure = enter(method, request)) return *failure

// --- Setting up.

void FakeClusterService::addHost(const v1::Host& host) {
  absl::MutexLock lock(&mu_);
  hosts_[host.name()] = host;
  publishHost(host.name());
}

void FakeClusterService::addVm(const v1::Vm& vm) {
  absl::MutexLock lock(&mu_);
  vms_[vm.name()] = vm;
  publishVm(vm.name());
}

void FakeClusterService::addNetwork(const v1::NetworkRecord& network) {
  absl::MutexLock lock(&mu_);
  networks_[network.meta().name()] = network;
}

void FakeClusterService::addPool(const v1::PoolRecord& pool) {
  absl::MutexLock lock(&mu_);
  pools_[pool.meta().name()] = pool;
}

void FakeClusterService::addVolume(const v1::VolumeRecord& volume) {
  absl::MutexLock lock(&mu_);
  volumes_[volume.pool() + "/" + volume.meta().name()] = volume;
}

void FakeClusterService::addMigration(const v1::MigrationRecord& migration) {
  absl::MutexLock lock(&mu_);
  migrations_[migration.meta().name()] = migration;
  publishMigration(migration.meta().name());
}

void FakeClusterService::addDrain(const v1::DrainRecord& drain) {
  absl::MutexLock lock(&mu_);
  drains_[drain.meta().name()] = drain;
  publishDrain(drain.meta().name());
}

void FakeClusterService::addEvent(const v1::Event& event) {
  absl::MutexLock lock(&mu_);
  events_.push_back(event);
  publishEvent(event);
}

void FakeClusterService::setPlan(const v1::RebalancePlan& plan) {
  absl::MutexLock lock(&mu_);
  plan_ = plan;
}

void FakeClusterService::setLeader(const std::string& leader) {
  absl::MutexLock lock(&mu_);
  leader_ = leader;
}

void FakeClusterService::failAll(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (status.ok()) {
    failure_.reset();
  } else {
    failure_ = status;
  }
}

void FakeClusterService::breakWatchAfter(int events) {
  absl::MutexLock lock(&mu_);
  break_watch_after_ = events;
}

void FakeClusterService::disableWatch() {
  absl::MutexLock lock(&mu_);
  watch_disabled_ = true;
}

void FakeClusterService::breakWatches() {
  absl::MutexLock lock(&mu_);
  ++watch_generation_;
}

void FakeClusterService::compactLog() {
  absl::MutexLock lock(&mu_);
  compacted_revision_ = revision_;
}

void FakeClusterService::failMethod(const std::string& method, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (status.ok()) {
    method_failures_.erase(method);
  } else {
    method_failures_[method] = status;
  }
}

void FakeClusterService::setConsoleLog(const std::string& vm, const std::string& data) {
  absl::MutexLock lock(&mu_);
  console_logs_[vm] = data;
}

void FakeClusterService::removeHost(const std::string& name) {
  absl::MutexLock lock(&mu_);
  hosts_.erase(name);
  publishHost(name);
}

void FakeClusterService::removeVm(const std::string& name) {
  absl::MutexLock lock(&mu_);
  vms_.erase(name);
  publishVm(name);
}

void FakeClusterService::removeMigration(const std::string& name) {
  absl::MutexLock lock(&mu_);
  migrations_.erase(name);
  publishMigration(name);
}

void FakeClusterService::removeDrain(const std::string& name) {
  absl::MutexLock lock(&mu_);
  drains_.erase(name);
  publishDrain(name);
}

void FakeClusterService::scriptMigration(std::vector<v1::MigrationRecord> states) {
  absl::MutexLock lock(&mu_);
  migration_script_.assign(states.begin(), states.end());
}

void FakeClusterService::scriptDrain(std::vector<v1::DrainRecord> states) {
  absl::MutexLock lock(&mu_);
  drain_script_.assign(states.begin(), states.end());
}

std::vector<std::string> FakeClusterService::calls() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> methods;
  for (const auto& [method, request] : requests_) methods.push_back(method);
  return methods;
}

int FakeClusterService::callCount(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(std::count_if(requests_.begin(), requests_.end(),
                                        [&](const auto& call) { return call.first == method; }));
}

void FakeClusterService::waitDelivered(int count) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return delivered_ >= count; };
  mu_.Await(absl::Condition(&enough));
}

// --- ClusterService.

grpc::Status FakeClusterService::GetClusterInfo(grpc::ServerContext*,
                                                const v1::GetClusterInfoRequest* request,
                                                v1::ClusterInfo* info) {
  FAKE_ENTER("GetClusterInfo", *request);
  info->set_replica(replica_);
  info->set_leader(leader_);
  info->add_etcd_endpoints("127.0.0.1:2379");
  info->set_revision(revision_);
  info->set_version("0.1.0");
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListHosts(grpc::ServerContext*,
                                           const v1::ListHostsRequest* request,
                                           v1::ListHostsResponse* response) {
  FAKE_ENTER("ListHosts", *request);
  for (const auto& [name, host] : hosts_) *response->add_hosts() = host;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::GetHost(grpc::ServerContext*, const v1::NameRequest* request,
                                         v1::Host* host) {
  FAKE_ENTER("GetHost", *request);
  auto it = hosts_.find(request->name());
  if (it == hosts_.end()) return notFound("host", request->name());
  *host = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::CordonHost(grpc::ServerContext*,
                                            const v1::CordonHostRequest* request, v1::Host* host) {
  FAKE_ENTER("CordonHost", *request);
  auto it = hosts_.find(request->name());
  if (it == hosts_.end()) return notFound("host", request->name());
  it->second.mutable_record()->set_cordoned(true);
  it->second.mutable_record()->set_cordon_reason(request->reason());
  publishHost(request->name());
  *host = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::UncordonHost(grpc::ServerContext*, const v1::NameRequest* request,
                                              v1::Host* host) {
  FAKE_ENTER("UncordonHost", *request);
  auto it = hosts_.find(request->name());
  if (it == hosts_.end()) return notFound("host", request->name());
  it->second.mutable_record()->set_cordoned(false);
  it->second.mutable_record()->clear_cordon_reason();
  publishHost(request->name());
  *host = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::SetHostLabels(grpc::ServerContext*,
                                               const v1::SetLabelsRequest* request,
                                               v1::Host* host) {
  FAKE_ENTER("SetHostLabels", *request);
  auto it = hosts_.find(request->name());
  if (it == hosts_.end()) return notFound("host", request->name());
  auto& labels = *it->second.mutable_record()->mutable_meta()->mutable_labels();
  for (const auto& [key, value] : request->set()) labels[key] = value;
  for (const std::string& key : request->remove()) labels.erase(key);
  publishHost(request->name());
  *host = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::DrainHost(grpc::ServerContext*,
                                           const v1::DrainHostRequest* request,
                                           v1::DrainRecord* drain) {
  FAKE_ENTER("DrainHost", *request);
  auto host = hosts_.find(request->name());
  if (host == hosts_.end()) return notFound("host", request->name());
  if (auto it = drains_.find(request->name());
      it != drains_.end() && it->second.phase() == v1::DRAIN_PHASE_RUNNING) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        fmt::format("host {} is already being drained", request->name()));
  }
  host->second.mutable_record()->set_cordoned(true);
  v1::DrainRecord record;
  record.mutable_meta()->set_name(request->name());
  record.set_phase(v1::DRAIN_PHASE_RUNNING);
  record.set_allow_cold(request->allow_cold());
  for (const auto& [name, vm] : vms_) {
    if (vm.status().host() != request->name()) continue;
    v1::DrainVm* entry = record.add_vms();
    entry->set_vm(name);
    entry->set_state(v1::DrainVm::STATE_WAITING);
  }
  drains_[request->name()] = record;
  scripted_drain_ = request->name();
  publishDrain(request->name());
  *drain = record;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::UndrainHost(grpc::ServerContext*, const v1::NameRequest* request,
                                             v1::Host* host) {
  FAKE_ENTER("UndrainHost", *request);
  auto it = hosts_.find(request->name());
  if (it == hosts_.end()) return notFound("host", request->name());
  if (auto drain = drains_.find(request->name()); drain != drains_.end()) {
    drain->second.set_phase(v1::DRAIN_PHASE_CANCELLED);
    publishDrain(request->name());
  }
  it->second.mutable_record()->set_cordoned(false);
  *host = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::GetDrain(grpc::ServerContext*, const v1::NameRequest* request,
                                          v1::DrainRecord* drain) {
  FAKE_ENTER("GetDrain", *request);
  auto it = drains_.find(request->name());
  if (it == drains_.end()) return notFound("drain", request->name());
  *drain = it->second;
  v1::WatchEvent event;
  event.set_name(request->name());
  *event.mutable_drain() = *drain;
  delivered(event);
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListDrains(grpc::ServerContext*, const v1::ListRequest* request,
                                            v1::ListDrainsResponse* response) {
  FAKE_ENTER("ListDrains", *request);
  for (const auto& [name, drain] : drains_) *response->add_drains() = drain;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::CreateVm(grpc::ServerContext*,
                                          const v1::CreateVmClusterRequest* request, v1::Vm* vm) {
  FAKE_ENTER("CreateVm", *request);
  if (vms_.count(request->name()) != 0) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        fmt::format("vm {} already exists", request->name()));
  }
  if (request->spec().memory_bytes() < (uint64_t{1} << 20)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "spec.memory_bytes: at least 1M is needed");
  }
  v1::Vm created;
  created.set_name(request->name());
  created.mutable_record()->mutable_meta()->set_name(request->name());
  *created.mutable_record()->mutable_meta()->mutable_labels() = request->labels();
  *created.mutable_record()->mutable_spec() = request->spec();
  *created.mutable_record()->mutable_placement() = request->placement();
  created.mutable_record()->set_want_running(request->start());
  created.mutable_status()->set_state(v1::VM_STATE_PENDING);
  vms_[request->name()] = created;
  publishVm(request->name());
  *vm = created;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::GetVm(grpc::ServerContext*, const v1::NameRequest* request,
                                       v1::Vm* vm) {
  FAKE_ENTER("GetVm", *request);
  auto it = vms_.find(request->name());
  if (it == vms_.end()) return notFound("vm", request->name());
  *vm = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListVms(grpc::ServerContext*, const v1::ListVmsRequest* request,
                                         v1::ListVmsResponse* response) {
  FAKE_ENTER("ListVms", *request);
  for (const auto& [name, vm] : vms_) {
    if (!request->host().empty() && vm.status().host() != request->host()) continue;
    *response->add_vms() = vm;
  }
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::vmAction(const std::string& method, const v1::NameRequest& request,
                                          v1::Vm* vm, bool want_running) {
  FAKE_ENTER(method, request);
  auto it = vms_.find(request.name());
  if (it == vms_.end()) return notFound("vm", request.name());
  it->second.mutable_record()->set_want_running(want_running);
  publishVm(request.name());
  *vm = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::StartVm(grpc::ServerContext*, const v1::NameRequest* request,
                                         v1::Vm* vm) {
  return vmAction("StartVm", *request, vm, true);
}

grpc::Status FakeClusterService::StopVm(grpc::ServerContext*, const v1::NameRequest* request,
                                        v1::Vm* vm) {
  return vmAction("StopVm", *request, vm, false);
}

grpc::Status FakeClusterService::RestartVm(grpc::ServerContext*, const v1::NameRequest* request,
                                           v1::Vm* vm) {
  return vmAction("RestartVm", *request, vm, true);
}

grpc::Status FakeClusterService::DeleteVm(grpc::ServerContext*, const v1::NameRequest* request,
                                          v1::DeleteResponse*) {
  FAKE_ENTER("DeleteVm", *request);
  if (vms_.erase(request->name()) == 0) return notFound("vm", request->name());
  publishVm(request->name());
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::MigrateVm(grpc::ServerContext*,
                                           const v1::MigrateVmRequest* request,
                                           v1::MigrationRecord* migration) {
  FAKE_ENTER("MigrateVm", *request);
  auto vm = vms_.find(request->name());
  if (vm == vms_.end()) return notFound("vm", request->name());
  if (!vm->second.status().migration().empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        fmt::format("vm {} is being migrated already ({})", request->name(),
                                    vm->second.status().migration()));
  }
  v1::MigrationRecord record;
  const std::string name = fmt::format("{}-{}", request->name(), ++migration_count_);
  record.mutable_meta()->set_name(name);
  record.set_vm(request->name());
  record.set_source(vm->second.status().host());
  record.set_target(request->target());
  record.set_mode(request->mode());
  record.set_phase(v1::MIGRATION_PHASE_PENDING);
  record.set_downtime_limit_ms(request->downtime_limit_ms());
  migrations_[name] = record;
  scripted_migration_ = name;
  publishMigration(name);
  *migration = record;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::GetVmConsoleLog(grpc::ServerContext*,
                                                 const v1::VmConsoleLogRequest* request,
                                                 v1::VmConsoleLog* log) {
  FAKE_ENTER("GetVmConsoleLog", *request);
  auto vm = vms_.find(request->name());
  if (vm == vms_.end()) return notFound("vm", request->name());
  if (vm->second.status().host().empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        fmt::format("vm {} runs on no host: start it first", request->name()));
  }
  const std::string& data = console_logs_[request->name()];
  const size_t offset = std::min<size_t>(request->offset(), data.size());
  const size_t limit = request->max_bytes() == 0 ? size_t{64} << 10 : request->max_bytes();
  log->set_data(data.substr(offset, limit));
  log->set_next_offset(offset + log->data().size());
  log->set_host(vm->second.status().host());
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::CreateNetwork(grpc::ServerContext*,
                                               const v1::NetworkRecord* request,
                                               v1::NetworkRecord* network) {
  FAKE_ENTER("CreateNetwork", *request);
  const std::string& name = request->meta().name();
  if (networks_.count(name) != 0) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        fmt::format("network {} already exists", name));
  }
  for (const auto& [other, record] : networks_) {
    if (record.vlan() == request->vlan()) {
      return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                          fmt::format("vlan {} is used by network {}", request->vlan(), other));
    }
  }
  networks_[name] = *request;
  *network = *request;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListNetworks(grpc::ServerContext*, const v1::ListRequest* request,
                                              v1::ListNetworksResponse* response) {
  FAKE_ENTER("ListNetworks", *request);
  for (const auto& [name, network] : networks_) *response->add_networks() = network;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::DeleteNetwork(grpc::ServerContext*, const v1::NameRequest* request,
                                               v1::DeleteResponse*) {
  FAKE_ENTER("DeleteNetwork", *request);
  if (networks_.count(request->name()) == 0) return notFound("network", request->name());
  for (const auto& [name, vm] : vms_) {
    for (const v1::NicSpec& nic : vm.record().spec().nics()) {
      if (nic.network() == request->name()) {
        return grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            fmt::format("network {} is used by vm {}: delete the VM first", request->name(), name));
      }
    }
  }
  networks_.erase(request->name());
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::CreatePool(grpc::ServerContext*, const v1::PoolRecord* request,
                                            v1::PoolRecord* pool) {
  FAKE_ENTER("CreatePool", *request);
  if (pools_.count(request->meta().name()) != 0) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        fmt::format("pool {} already exists", request->meta().name()));
  }
  pools_[request->meta().name()] = *request;
  *pool = *request;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListPools(grpc::ServerContext*, const v1::ListRequest* request,
                                           v1::ListPoolsResponse* response) {
  FAKE_ENTER("ListPools", *request);
  for (const auto& [name, pool] : pools_) *response->add_pools() = pool;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::DeletePool(grpc::ServerContext*, const v1::NameRequest* request,
                                            v1::DeleteResponse*) {
  FAKE_ENTER("DeletePool", *request);
  if (pools_.erase(request->name()) == 0) return notFound("pool", request->name());
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::CreateVolume(grpc::ServerContext*,
                                              const v1::CreateVolumeRequest* request,
                                              v1::VolumeRecord* volume) {
  FAKE_ENTER("CreateVolume", *request);
  if (pools_.count(request->pool()) == 0) return notFound("pool", request->pool());
  const std::string key = request->pool() + "/" + request->name();
  if (volumes_.count(key) != 0) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS,
                        fmt::format("volume {} already exists", key));
  }
  v1::VolumeRecord record;
  record.mutable_meta()->set_name(request->name());
  record.set_pool(request->pool());
  record.set_size_bytes(request->size_bytes());
  volumes_[key] = record;
  *volume = record;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListVolumes(grpc::ServerContext*,
                                             const v1::ListVolumesClusterRequest* request,
                                             v1::ListVolumesClusterResponse* response) {
  FAKE_ENTER("ListVolumes", *request);
  for (const auto& [key, volume] : volumes_) {
    if (!request->pool().empty() && volume.pool() != request->pool()) continue;
    *response->add_volumes() = volume;
  }
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::DeleteVolume(grpc::ServerContext*,
                                              const v1::VolumeNameRequest* request,
                                              v1::DeleteResponse*) {
  FAKE_ENTER("DeleteVolume", *request);
  const std::string key = request->pool() + "/" + request->name();
  auto it = volumes_.find(key);
  if (it == volumes_.end()) return notFound("volume", key);
  if (!it->second.attached_to().empty()) {
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        fmt::format("volume {} is attached to vm {}", key, it->second.attached_to()));
  }
  volumes_.erase(it);
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListMigrations(grpc::ServerContext*,
                                                const v1::ListRequest* request,
                                                v1::ListMigrationsResponse* response) {
  FAKE_ENTER("ListMigrations", *request);
  for (const auto& [name, migration] : migrations_) *response->add_migrations() = migration;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::GetMigration(grpc::ServerContext*, const v1::NameRequest* request,
                                              v1::MigrationRecord* migration) {
  FAKE_ENTER("GetMigration", *request);
  auto it = migrations_.find(request->name());
  if (it == migrations_.end()) return notFound("migration", request->name());
  *migration = it->second;
  v1::WatchEvent event;
  event.set_name(request->name());
  *event.mutable_migration() = *migration;
  delivered(event);
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::CancelMigration(grpc::ServerContext*,
                                                 const v1::NameRequest* request,
                                                 v1::MigrationRecord* migration) {
  FAKE_ENTER("CancelMigration", *request);
  auto it = migrations_.find(request->name());
  if (it == migrations_.end()) return notFound("migration", request->name());
  if (it->second.phase() == v1::MIGRATION_PHASE_SUCCEEDED) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        fmt::format("migration {} has succeeded already", request->name()));
  }
  it->second.set_cancel_requested(true);
  publishMigration(request->name());
  *migration = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::PlanRebalance(grpc::ServerContext*,
                                               const v1::PlanRebalanceRequest* request,
                                               v1::RebalancePlan* plan) {
  FAKE_ENTER("PlanRebalance", *request);
  *plan = plan_;
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ApplyRebalance(grpc::ServerContext*,
                                                const v1::PlanRebalanceRequest* request,
                                                v1::RebalancePlan* plan) {
  FAKE_ENTER("ApplyRebalance", *request);
  *plan = plan_;
  for (v1::RebalanceMove& move : *plan->mutable_moves()) {
    move.set_migration(fmt::format("{}-rebalance", move.vm()));
  }
  return grpc::Status::OK;
}

grpc::Status FakeClusterService::ListEvents(grpc::ServerContext*,
                                            const v1::ListEventsRequest* request,
                                            v1::ListEventsResponse* response) {
  FAKE_ENTER("ListEvents", *request);
  for (const v1::Event& event : events_) {
    if (!request->object().empty() && event.object() != request->object()) continue;
    *response->add_events() = event;
  }
  const int limit = request->limit() == 0 ? 100 : static_cast<int>(request->limit());
  if (response->events_size() > limit) {
    response->mutable_events()->DeleteSubrange(0, response->events_size() - limit);
  }
  return grpc::Status::OK;
}

}  // namespace flotilla::cli::testing
