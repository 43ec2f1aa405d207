// ClusterServiceImpl (see cluster_service.h).
#include "controller/api/cluster_service.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "controller/api/drbd_placement.h"
#include "controller/api/validation.h"
#include "fmt/format.h"

namespace flotilla::controller {
namespace {

constexpr char kVersion[] = "0.7.0";

grpc::Status toGrpc(const absl::Status& status) {
  return toGrpcStatus(status);
}

absl::Status notFound(std::string_view kind, std::string_view name, std::string_view hint) {
  return absl::NotFoundError(
      fmt::format("{} {} does not exist{}{}", kind, name, hint.empty() ? "" : ": ", hint));
}

absl::Status conflict(std::string_view what) {
  return absl::AbortedError(
      fmt::format("{}: changed by someone else meanwhile; read it again and retry", what));
}

int64_t nowMs() {
  return absl::ToUnixMillis(absl::Now());
}

void stampMeta(v1::ObjectMeta& meta, std::string_view name) {
  meta.set_name(std::string(name));
  meta.set_uid(fmt::format("{}-{:x}", name, static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()))));
  meta.mutable_created_at()->set_seconds(absl::ToUnixSeconds(absl::Now()));
}

// Compares that key was not modified since `mod_revision` (0: that it does not exist).
void ifUnchanged(etcd::Txn& txn, const std::string& key, int64_t mod_revision) {
  if (mod_revision == 0) {
    txn.ifVersion(key, etcd::CompareOp::kEqual, 0);
  } else {
    txn.ifModRevision(key, etcd::CompareOp::kEqual, mod_revision);
  }
}

bool volumeShared(const ClusterView& view, const v1::DiskSpec& disk) {
  auto pool = view.pools.find(disk.pool());
  return pool != view.pools.end() && pool->second.shared();
}

// Hosts that reported `pool` and can create volumes in it: its manager, else any ready host
// that reaches it.
const HostView* volumeHost(const ClusterView& view, const v1::PoolRecord& pool) {
  if (!pool.manager_host().empty()) {
    auto host = view.hosts.find(pool.manager_host());
    return host != view.hosts.end() && host->second.ready() ? &host->second : nullptr;
  }
  for (const auto& [name, host] : view.hosts) {
    if (!host.ready()) continue;
    for (const std::string& reported : host.status->inventory().pools()) {
      if (reported == pool.meta().name()) return &host;
    }
  }
  return nullptr;
}

}  // namespace

std::string migrationName(std::string_view vm) {
  std::string prefix(vm.substr(0, 40));
  return fmt::format("{}-m{}", prefix, nowMs());
}

ClusterServiceImpl::ClusterServiceImpl(const ControllerConfig& config, etcd::EtcdClient& etcd,
                                       AgentClients& agents, RebalancePlanner planner)
    : config_(config),
      etcd_(etcd),
      store_(etcd),
      agents_(agents),
      events_(etcd, config.name),
      planner_(std::move(planner)),
      log_(Logger("api")) {}

grpc::Status ClusterServiceImpl::GetClusterInfo(grpc::ServerContext*,
                                                const v1::GetClusterInfoRequest*,
                                                v1::ClusterInfo* info) {
  info->set_replica(config_.name);
  info->set_version(kVersion);
  for (const std::string& endpoint : config_.etcd_endpoints) info->add_etcd_endpoints(endpoint);
  etcd::Election election(etcd_, std::string(kKeyPrefix) + "election");
  auto leader = election.leader();
  if (leader.ok()) {
    info->set_leader(leader->value);
  } else if (!absl::IsNotFound(leader.status())) {
    return toGrpc(leader.status());
  }
  etcd::RangeOptions options;
  options.count_only = true;
  auto range = etcd_.get(std::string(kKeyPrefix) + "election", options);
  if (range.ok()) info->set_revision(range->revision);
  return grpc::Status::OK;
}

absl::StatusOr<bool> ClusterServiceImpl::keyExists(const std::string& key) {
  etcd::RangeOptions options;
  options.count_only = true;
  ASSIGN_OR_RETURN(etcd::RangeResult range, etcd_.get(key, options));
  return range.count > 0;
}

// ---- hosts ----

absl::StatusOr<v1::Host> ClusterServiceImpl::readHost(const std::string& name) {
  ASSIGN_OR_RETURN(auto record, store_.get<v1::HostRecord>(hostKey(name)));
  ASSIGN_OR_RETURN(auto status, store_.get<v1::HostStatus>(hostStatusKey(name)));
  if (!record && !status) {
    return notFound("host", name, "see `clusterctl get hosts` for the hosts that reported");
  }
  v1::Host host;
  host.set_name(name);
  if (record) {
    *host.mutable_record() = record->value;
    host.mutable_record()->mutable_meta()->set_revision(record->mod_revision);
  } else {
    host.mutable_record()->mutable_meta()->set_name(name);
    host.mutable_record()->set_state(v1::HOST_STATE_READY);
  }
  if (status) {
    *host.mutable_status() = status->value;
    host.set_reporting(true);
  }
  return host;
}

grpc::Status ClusterServiceImpl::ListHosts(grpc::ServerContext*, const v1::ListHostsRequest*,
                                           v1::ListHostsResponse* response) {
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  for (const auto& [name, host] : view->hosts) {
    v1::Host* out = response->add_hosts();
    out->set_name(name);
    *out->mutable_record() = host.record;
    if (out->record().meta().name().empty()) {
      out->mutable_record()->mutable_meta()->set_name(name);
      out->mutable_record()->set_state(v1::HOST_STATE_READY);
    }
    if (host.status) {
      *out->mutable_status() = *host.status;
      out->set_reporting(true);
    }
  }
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::GetHost(grpc::ServerContext*, const v1::NameRequest* request,
                                         v1::Host* response) {
  auto host = readHost(request->name());
  if (!host.ok()) return toGrpc(host.status());
  *response = std::move(*host);
  return grpc::Status::OK;
}

absl::StatusOr<v1::Host> ClusterServiceImpl::updateHost(
    const std::string& name, std::string_view what,
    const std::function<void(v1::HostRecord&)>& change) {
  ASSIGN_OR_RETURN(v1::Host host, readHost(name));
  const int64_t revision = host.record().meta().revision();
  v1::HostRecord record = host.record();
  record.mutable_meta()->clear_revision();
  if (revision == 0) stampMeta(*record.mutable_meta(), name);
  change(record);
  etcd::Txn txn;
  ifUnchanged(txn, hostKey(name), revision);
  txn.thenPut(hostKey(name), encodeValue(record));
  ASSIGN_OR_RETURN(etcd::TxnResult result, etcd_.txn(txn));
  if (!result.succeeded) return conflict(fmt::format("{} host {}", what, name));
  *host.mutable_record() = record;
  host.mutable_record()->mutable_meta()->set_revision(result.revision);
  return host;
}

grpc::Status ClusterServiceImpl::CordonHost(grpc::ServerContext*,
                                            const v1::CordonHostRequest* request,
                                            v1::Host* response) {
  auto host = updateHost(request->name(), "cordon", [&](v1::HostRecord& record) {
    record.set_cordoned(true);
    record.set_cordon_reason(request->reason());
  });
  if (!host.ok()) return toGrpc(host.status());
  events_.record(EventLog::make("host", request->name(), v1::Event::SEVERITY_INFO, "Cordoned",
                                request->reason().empty() ? "cordoned" : request->reason()));
  *response = std::move(*host);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::UncordonHost(grpc::ServerContext*, const v1::NameRequest* request,
                                              v1::Host* response) {
  auto drain = store_.get<v1::DrainRecord>(drainKey(request->name()));
  if (!drain.ok()) return toGrpc(drain.status());
  if (*drain && (*drain)->value.phase() == v1::DRAIN_PHASE_RUNNING) {
    return toGrpc(absl::FailedPreconditionError(
        fmt::format("host {} is being drained: `clusterctl host undrain {}` cancels the drain "
                    "and uncordons it",
                    request->name(), request->name())));
  }
  auto host = updateHost(request->name(), "uncordon", [](v1::HostRecord& record) {
    record.set_cordoned(false);
    record.clear_cordon_reason();
  });
  if (!host.ok()) return toGrpc(host.status());
  events_.record(EventLog::make("host", request->name(), v1::Event::SEVERITY_INFO, "Uncordoned",
                                "uncordoned"));
  *response = std::move(*host);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::SetHostLabels(grpc::ServerContext*,
                                               const v1::SetLabelsRequest* request,
                                               v1::Host* response) {
  for (const auto& [key, value] : request->set()) {
    if (key.empty() || key.size() > 63) {
      return toGrpc(absl::InvalidArgumentError(fmt::format(
          "host {}: label key '{}' must have 1 to 63 characters", request->name(), key)));
    }
  }
  auto host = updateHost(request->name(), "label", [&](v1::HostRecord& record) {
    auto& labels = *record.mutable_meta()->mutable_labels();
    for (const auto& [key, value] : request->set()) labels[key] = value;
    for (const std::string& key : request->remove()) labels.erase(key);
  });
  if (!host.ok()) return toGrpc(host.status());
  *response = std::move(*host);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::DrainHost(grpc::ServerContext*,
                                           const v1::DrainHostRequest* request,
                                           v1::DrainRecord* response) {
  const std::string& name = request->name();
  auto host = readHost(name);
  if (!host.ok()) return toGrpc(host.status());
  auto existing = store_.get<v1::DrainRecord>(drainKey(name));
  if (!existing.ok()) return toGrpc(existing.status());
  if (*existing && (*existing)->value.phase() == v1::DRAIN_PHASE_RUNNING) {
    *response = (*existing)->value;  // already draining: the same drain
    return grpc::Status::OK;
  }
  v1::DrainRecord drain;
  stampMeta(*drain.mutable_meta(), name);
  drain.set_phase(v1::DRAIN_PHASE_RUNNING);
  drain.set_allow_cold(request->allow_cold());
  drain.set_created_unix_ms(nowMs());
  v1::HostRecord record = host->record();
  const int64_t host_revision = record.meta().revision();
  record.mutable_meta()->clear_revision();
  if (host_revision == 0) stampMeta(*record.mutable_meta(), name);
  record.set_cordoned(true);
  record.set_cordon_reason("drain");
  etcd::Txn txn;
  ifUnchanged(txn, hostKey(name), host_revision);
  ifUnchanged(txn, drainKey(name), *existing ? (*existing)->mod_revision : 0);
  txn.thenPut(hostKey(name), encodeValue(record));
  txn.thenPut(drainKey(name), encodeValue(drain));
  events_.add(txn, EventLog::make("drain", name, v1::Event::SEVERITY_INFO, "DrainStarted",
                                  fmt::format("drain of host {} started (cold moves {})", name,
                                              request->allow_cold() ? "allowed" : "not allowed")));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("drain host {}", name)));
  *response = drain;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::UndrainHost(grpc::ServerContext*, const v1::NameRequest* request,
                                             v1::Host* response) {
  const std::string& name = request->name();
  auto drain = store_.get<v1::DrainRecord>(drainKey(name));
  if (!drain.ok()) return toGrpc(drain.status());
  auto host = readHost(name);
  if (!host.ok()) return toGrpc(host.status());
  v1::HostRecord record = host->record();
  const int64_t host_revision = record.meta().revision();
  record.mutable_meta()->clear_revision();
  if (host_revision == 0) stampMeta(*record.mutable_meta(), name);
  record.set_cordoned(false);
  record.clear_cordon_reason();
  etcd::Txn txn;
  ifUnchanged(txn, hostKey(name), host_revision);
  txn.thenPut(hostKey(name), encodeValue(record));
  if (*drain && (*drain)->value.phase() == v1::DRAIN_PHASE_RUNNING) {
    v1::DrainRecord cancelled = (*drain)->value;
    cancelled.set_cancel_requested(true);
    ifUnchanged(txn, drainKey(name), (*drain)->mod_revision);
    txn.thenPut(drainKey(name), encodeValue(cancelled));
  }
  events_.add(txn, EventLog::make("host", name, v1::Event::SEVERITY_INFO, "Undrained",
                                  "drain cancelled (if any) and host uncordoned"));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("undrain host {}", name)));
  *response = *host;
  *response->mutable_record() = record;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::GetDrain(grpc::ServerContext*, const v1::NameRequest* request,
                                          v1::DrainRecord* response) {
  auto drain = store_.get<v1::DrainRecord>(drainKey(request->name()));
  if (!drain.ok()) return toGrpc(drain.status());
  if (!*drain) {
    return toGrpc(
        notFound("drain of host", request->name(),
                 fmt::format("start one with `clusterctl host drain {}`", request->name())));
  }
  *response = (*drain)->value;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ListDrains(grpc::ServerContext*, const v1::ListRequest*,
                                            v1::ListDrainsResponse* response) {
  auto drains = store_.list<v1::DrainRecord>(kindPrefix("drains"));
  if (!drains.ok()) return toGrpc(drains.status());
  for (auto& drain : *drains) *response->add_drains() = std::move(drain.value);
  return grpc::Status::OK;
}

// ---- VMs ----

absl::StatusOr<v1::Vm> ClusterServiceImpl::readVm(const std::string& name) {
  ASSIGN_OR_RETURN(auto record, store_.get<v1::VmRecord>(vmKey(name)));
  if (!record) return notFound("vm", name, "see `clusterctl get vms`");
  ASSIGN_OR_RETURN(auto status, store_.get<v1::VmStatus>(vmStatusKey(name)));
  v1::Vm vm;
  vm.set_name(name);
  *vm.mutable_record() = record->value;
  vm.mutable_record()->mutable_meta()->set_revision(record->mod_revision);
  if (status) *vm.mutable_status() = status->value;
  return vm;
}

grpc::Status ClusterServiceImpl::CreateVm(grpc::ServerContext*,
                                          const v1::CreateVmClusterRequest* request,
                                          v1::Vm* response) {
  if (auto valid = validateVmRequest(*request); !valid.ok()) return toGrpc(valid);
  const std::string& name = request->name();
  // Never the whole cluster is read (a create costs the same with 20,000 VMs as with one):
  // the transaction itself checks that the name is free and the networks exist, and only
  // when it fails are they read, for the error that names the object.
  etcd::Txn txn;
  txn.ifVersion(vmKey(name), etcd::CompareOp::kEqual, 0);
  std::set<std::string> networks;
  for (const v1::NicSpec& nic : request->spec().nics()) {
    if (networks.insert(nic.network()).second) {
      txn.ifVersion(networkKey(nic.network()), etcd::CompareOp::kGreater, 0);
    }
  }
  // The name taken or a network missing, or OK.
  auto refusal = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(bool exists, keyExists(vmKey(name)));
    if (exists) {
      return absl::AlreadyExistsError(
          fmt::format("vm {} already exists: pick another name, or delete it first", name));
    }
    for (const std::string& network : networks) {
      ASSIGN_OR_RETURN(bool found, keyExists(networkKey(network)));
      if (!found) {
        return notFound("network", network,
                        fmt::format("vm {} cannot use it; create it with `clusterctl create "
                                    "network {} --vlan N`",
                                    name, network));
      }
    }
    return absl::OkStatus();
  };
  if (request->spec().disks_size() > 0) {
    // Its volumes are read anyway: the name and the networks are said before them.
    if (absl::Status refused = refusal(); !refused.ok()) return toGrpc(refused);
  }
  for (const v1::DiskSpec& disk : request->spec().disks()) {
    auto pool = keyExists(poolKey(disk.pool()));
    if (!pool.ok()) return toGrpc(pool.status());
    if (!*pool) {
      return toGrpc(notFound("pool", disk.pool(),
                             fmt::format("vm {} cannot use it; see `clusterctl get pools`", name)));
    }
    auto volume = store_.get<v1::VolumeRecord>(volumeKey(disk.pool(), disk.volume()));
    if (!volume.ok()) return toGrpc(volume.status());
    if (!*volume) {
      return toGrpc(notFound("volume", disk.pool() + "/" + disk.volume(),
                             fmt::format("create it with `clusterctl create volume {}/{} --size "
                                         "SIZE`",
                                         disk.pool(), disk.volume())));
    }
    if (!(*volume)->value.attached_to().empty()) {
      return toGrpc(absl::FailedPreconditionError(
          fmt::format("volume {}/{} is already in use by vm {}: a volume belongs to one VM",
                      disk.pool(), disk.volume(), (*volume)->value.attached_to())));
    }
    v1::VolumeRecord attached = (*volume)->value;
    attached.set_attached_to(name);
    ifUnchanged(txn, (*volume)->key, (*volume)->mod_revision);
    txn.thenPut((*volume)->key, encodeValue(attached));
  }
  if (const std::string& pinned = request->placement().host(); !pinned.empty()) {
    auto record = keyExists(hostKey(pinned));
    if (!record.ok()) return toGrpc(record.status());
    auto reported = *record ? absl::StatusOr<bool>(true) : keyExists(hostStatusKey(pinned));
    if (!reported.ok()) return toGrpc(reported.status());
    if (!*reported) {
      return toGrpc(notFound("host", pinned, fmt::format("vm {} is pinned to it", name)));
    }
  }
  v1::VmRecord record;
  stampMeta(*record.mutable_meta(), name);
  *record.mutable_meta()->mutable_labels() = request->labels();
  *record.mutable_spec() = request->spec();
  if (record.spec().migration_policy() == v1::MIGRATION_POLICY_UNSPECIFIED) {
    record.mutable_spec()->set_migration_policy(v1::MIGRATION_POLICY_LIVE_OR_COLD);
  }
  if (record.spec().cpu_model().empty()) record.mutable_spec()->set_cpu_model("host");
  *record.mutable_placement() = request->placement();
  record.set_want_running(request->start());
  v1::VmStatus status;
  status.set_state(v1::VM_STATE_PENDING);
  status.set_state_since_unix_ms(nowMs());
  status.set_generation(nextGeneration(0, absl::ToUnixSeconds(absl::Now())));
  status.set_message(request->start() ? "waiting for the scheduler" : "created, not started");
  txn.thenPut(vmKey(name), encodeValue(record));
  txn.thenPut(vmStatusKey(name), encodeValue(status));
  events_.add(
      txn, EventLog::make("vm", name, v1::Event::SEVERITY_INFO, "Created",
                          fmt::format("vm {} created ({} vCPUs, {} MiB)", name,
                                      record.spec().vcpus(), record.spec().memory_bytes() >> 20)));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) {
    absl::Status refused = refusal();
    return toGrpc(refused.ok() ? conflict(fmt::format("create vm {}", name)) : refused);
  }
  response->set_name(name);
  *response->mutable_record() = record;
  response->mutable_record()->mutable_meta()->set_revision(result->revision);
  *response->mutable_status() = status;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::GetVm(grpc::ServerContext*, const v1::NameRequest* request,
                                       v1::Vm* response) {
  auto vm = readVm(request->name());
  if (!vm.ok()) return toGrpc(vm.status());
  *response = std::move(*vm);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ListVms(grpc::ServerContext*, const v1::ListVmsRequest* request,
                                         v1::ListVmsResponse* response) {
  int64_t revision = 0;
  auto records = store_.list<v1::VmRecord>(kindPrefix("vms"), 0, &revision);
  if (!records.ok()) return toGrpc(records.status());
  auto statuses = store_.list<v1::VmStatus>(kindPrefix("vms-status"), revision);
  if (!statuses.ok()) return toGrpc(statuses.status());
  std::map<std::string, v1::VmStatus> by_name;
  for (auto& status : *statuses) by_name[std::string(keyName(status.key))] = status.value;
  for (auto& record : *records) {
    std::string name(keyName(record.key));
    const v1::VmStatus& status = by_name[name];
    if (!request->host().empty() && status.host() != request->host()) continue;
    v1::Vm* vm = response->add_vms();
    vm->set_name(name);
    *vm->mutable_record() = std::move(record.value);
    vm->mutable_record()->mutable_meta()->set_revision(record.mod_revision);
    *vm->mutable_status() = status;
  }
  return grpc::Status::OK;
}

absl::StatusOr<v1::Vm> ClusterServiceImpl::updateVm(
    const std::string& name, std::string_view what,
    const std::function<absl::Status(v1::VmRecord&, v1::VmStatus&)>& change) {
  ASSIGN_OR_RETURN(auto record, store_.get<v1::VmRecord>(vmKey(name)));
  if (!record) return notFound("vm", name, "see `clusterctl get vms`");
  ASSIGN_OR_RETURN(auto status, store_.get<v1::VmStatus>(vmStatusKey(name)));
  v1::VmRecord new_record = record->value;
  v1::VmStatus new_status = status ? status->value : v1::VmStatus();
  if (new_record.deleting()) {
    return absl::FailedPreconditionError(fmt::format("vm {} is being deleted", name));
  }
  RETURN_IF_ERROR(change(new_record, new_status));
  etcd::Txn txn;
  ifUnchanged(txn, vmKey(name), record->mod_revision);
  ifUnchanged(txn, vmStatusKey(name), status ? status->mod_revision : 0);
  txn.thenPut(vmKey(name), encodeValue(new_record));
  txn.thenPut(vmStatusKey(name), encodeValue(new_status));
  ASSIGN_OR_RETURN(etcd::TxnResult result, etcd_.txn(txn));
  if (!result.succeeded) return conflict(fmt::format("{} vm {}", what, name));
  v1::Vm vm;
  vm.set_name(name);
  *vm.mutable_record() = new_record;
  vm.mutable_record()->mutable_meta()->set_revision(result.revision);
  *vm.mutable_status() = new_status;
  return vm;
}

grpc::Status ClusterServiceImpl::StartVm(grpc::ServerContext*, const v1::NameRequest* request,
                                         v1::Vm* response) {
  auto vm = updateVm(
      request->name(), "start", [&](v1::VmRecord& record, v1::VmStatus& status) -> absl::Status {
        record.set_want_running(true);
        if (status.state() == v1::VM_STATE_STOPPED || status.state() == v1::VM_STATE_FAILED ||
            status.state() == v1::VM_STATE_PENDING) {
          status.set_state(status.host().empty() ? v1::VM_STATE_PENDING : v1::VM_STATE_CREATING);
          status.set_message("start requested");
          status.set_state_since_unix_ms(nowMs());
        }
        return absl::OkStatus();
      });
  if (!vm.ok()) return toGrpc(vm.status());
  events_.record(EventLog::make("vm", request->name(), v1::Event::SEVERITY_INFO, "StartRequested",
                                "start requested"));
  *response = std::move(*vm);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::StopVm(grpc::ServerContext*, const v1::NameRequest* request,
                                        v1::Vm* response) {
  auto vm = updateVm(request->name(), "stop",
                     [&](v1::VmRecord& record, v1::VmStatus& status) -> absl::Status {
                       if (!status.migration().empty()) {
                         return absl::FailedPreconditionError(
                             fmt::format("vm {} is migrating ({}): cancel the migration first with "
                                         "`clusterctl migration cancel {}`",
                                         request->name(), status.migration(), status.migration()));
                       }
                       record.set_want_running(false);
                       if (status.host().empty()) {
                         status.set_state(v1::VM_STATE_STOPPED);
                         status.set_message("stopped");
                       }
                       return absl::OkStatus();
                     });
  if (!vm.ok()) return toGrpc(vm.status());
  events_.record(EventLog::make("vm", request->name(), v1::Event::SEVERITY_INFO, "StopRequested",
                                "stop requested"));
  *response = std::move(*vm);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::RestartVm(grpc::ServerContext*, const v1::NameRequest* request,
                                           v1::Vm* response) {
  auto vm = updateVm(request->name(), "restart",
                     [&](v1::VmRecord& record, v1::VmStatus& status) -> absl::Status {
                       if (status.state() != v1::VM_STATE_RUNNING) {
                         return absl::FailedPreconditionError(
                             fmt::format("vm {} is not running ({}): start it instead",
                                         request->name(), v1::VmState_Name(status.state())));
                       }
                       record.set_want_running(true);
                       record.set_restarts_requested(record.restarts_requested() + 1);
                       return absl::OkStatus();
                     });
  if (!vm.ok()) return toGrpc(vm.status());
  *response = std::move(*vm);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::DeleteVm(grpc::ServerContext*, const v1::NameRequest* request,
                                          v1::DeleteResponse*) {
  const std::string& name = request->name();
  auto record = store_.get<v1::VmRecord>(vmKey(name));
  if (!record.ok()) return toGrpc(record.status());
  if (!*record) return toGrpc(notFound("vm", name, "see `clusterctl get vms`"));
  auto status = store_.get<v1::VmStatus>(vmStatusKey(name));
  if (!status.ok()) return toGrpc(status.status());
  const v1::VmStatus current = *status ? (*status)->value : v1::VmStatus();
  if (!current.migration().empty()) {
    return toGrpc(absl::FailedPreconditionError(
        fmt::format("vm {} is migrating ({}): cancel it first, or wait until it ends", name,
                    current.migration())));
  }
  etcd::Txn txn;
  ifUnchanged(txn, vmKey(name), (*record)->mod_revision);
  ifUnchanged(txn, vmStatusKey(name), *status ? (*status)->mod_revision : 0);
  if (current.host().empty()) {
    // Never placed (or stopped and unplaced): nothing runs anywhere; remove it now.
    txn.thenDelete(vmKey(name));
    txn.thenDelete(vmStatusKey(name));
    for (const v1::DiskSpec& disk : (*record)->value.spec().disks()) {
      auto volume = store_.get<v1::VolumeRecord>(volumeKey(disk.pool(), disk.volume()));
      if (!volume.ok()) return toGrpc(volume.status());
      if (!*volume || (*volume)->value.attached_to() != name) continue;
      v1::VolumeRecord detached = (*volume)->value;
      detached.clear_attached_to();
      ifUnchanged(txn, (*volume)->key, (*volume)->mod_revision);
      txn.thenPut((*volume)->key, encodeValue(detached));
    }
  } else {
    v1::VmRecord deleting = (*record)->value;
    deleting.set_deleting(true);
    deleting.set_want_running(false);
    txn.thenPut(vmKey(name), encodeValue(deleting));
  }
  events_.add(txn, EventLog::make("vm", name, v1::Event::SEVERITY_INFO, "DeleteRequested",
                                  current.host().empty()
                                      ? "deleted"
                                      : fmt::format("being removed from host {}", current.host())));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("delete vm {}", name)));
  return grpc::Status::OK;
}

absl::StatusOr<v1::MigrationRecord> ClusterServiceImpl::startMigration(
    const ClusterView& view, const v1::MigrateVmRequest& request, std::string_view reason) {
  const std::string& name = request.name();
  auto vm = view.vms.find(name);
  if (vm == view.vms.end()) return notFound("vm", name, "see `clusterctl get vms`");
  const VmView& current = vm->second;
  if (current.status.state() != v1::VM_STATE_RUNNING || current.status.host().empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "vm {} is {}: only a running VM migrates (a stopped one starts wherever the scheduler "
        "puts it)",
        name, v1::VmState_Name(current.status.state())));
  }
  if (const v1::MigrationRecord* active = view.activeMigration(name)) {
    return absl::FailedPreconditionError(
        fmt::format("vm {} is already migrating ({})", name, active->meta().name()));
  }
  if (!request.target().empty()) {
    auto target = view.hosts.find(request.target());
    if (target == view.hosts.end()) return notFound("host", request.target(), "");
    if (request.target() == current.status.host()) {
      return absl::InvalidArgumentError(
          fmt::format("vm {} already runs on host {}", name, request.target()));
    }
  }
  for (const v1::DiskSpec& disk : current.record.spec().disks()) {
    if (!volumeShared(view, disk)) {
      return absl::FailedPreconditionError(fmt::format(
          "vm {}: volume {}/{} is in pool {}, which is not shared: the VM cannot move (put its "
          "disks on shared iSCSI or DRBD storage)",
          name, disk.pool(), disk.volume(), disk.pool()));
    }
  }
  v1::MigrationMode mode =
      request.mode() == v1::MIGRATION_MODE_UNSPECIFIED ? v1::MIGRATION_MODE_LIVE : request.mode();
  const v1::MigrationPolicy policy = current.record.spec().migration_policy();
  if (mode == v1::MIGRATION_MODE_LIVE && policy == v1::MIGRATION_POLICY_COLD) {
    return absl::FailedPreconditionError(
        fmt::format("vm {} allows only cold migration (policy COLD): add --cold", name));
  }
  if (mode == v1::MIGRATION_MODE_COLD && policy == v1::MIGRATION_POLICY_LIVE) {
    return absl::FailedPreconditionError(
        fmt::format("vm {} allows only live migration (policy LIVE)", name));
  }
  v1::MigrationRecord migration;
  const std::string migration_name = migrationName(name);
  stampMeta(*migration.mutable_meta(), migration_name);
  migration.set_vm(name);
  migration.set_source(current.status.host());
  migration.set_target(request.target());
  migration.set_mode(mode);
  migration.set_phase(v1::MIGRATION_PHASE_PENDING);
  migration.set_created_unix_ms(nowMs());
  migration.set_downtime_limit_ms(request.downtime_limit_ms());
  if (reason == "rebalance") migration.set_rebalance("rebalance");
  etcd::Txn txn;
  txn.ifVersion(migrationKey(migration_name), etcd::CompareOp::kEqual, 0);
  txn.ifModRevision(vmStatusKey(name), etcd::CompareOp::kLess, view.revision + 1);
  txn.thenPut(migrationKey(migration_name), encodeValue(migration));
  events_.add(txn, EventLog::make(
                       "migration", migration_name, v1::Event::SEVERITY_INFO, "MigrationRequested",
                       fmt::format("vm {} to move from {} to {} ({})", name, migration.source(),
                                   request.target().empty() ? "a host the scheduler picks"
                                                            : request.target(),
                                   reason)));
  ASSIGN_OR_RETURN(etcd::TxnResult result, etcd_.txn(txn));
  if (!result.succeeded) return conflict(fmt::format("migrate vm {}", name));
  return migration;
}

grpc::Status ClusterServiceImpl::MigrateVm(grpc::ServerContext*,
                                           const v1::MigrateVmRequest* request,
                                           v1::MigrationRecord* response) {
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  auto migration = startMigration(*view, *request, "requested");
  if (!migration.ok()) return toGrpc(migration.status());
  *response = std::move(*migration);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::GetVmConsoleLog(grpc::ServerContext*,
                                                 const v1::VmConsoleLogRequest* request,
                                                 v1::VmConsoleLog* response) {
  auto vm = readVm(request->name());
  if (!vm.ok()) return toGrpc(vm.status());
  const std::string& host_name = vm->status().host();
  if (host_name.empty()) {
    return toGrpc(absl::FailedPreconditionError(fmt::format(
        "vm {} is on no host, so it has no console: start it with `clusterctl vm start {}`",
        request->name(), request->name())));
  }
  auto host = readHost(host_name);
  if (!host.ok()) return toGrpc(host.status());
  if (!host->reporting()) {
    return toGrpc(absl::UnavailableError(fmt::format(
        "vm {}: its host {} does not report (its agent is down), so its console cannot be read",
        request->name(), host_name)));
  }
  v1::ConsoleLogRequest agent_request;
  agent_request.set_name(request->name());
  agent_request.set_offset(request->offset());
  agent_request.set_max_bytes(request->max_bytes());
  v1::ConsoleLogResponse log;
  auto read = agents_.call(host_name, host->status().agent_address(), "GetConsoleLog",
                           [&](v1::AgentService::Stub& stub, grpc::ClientContext& context) {
                             return stub.GetConsoleLog(&context, agent_request, &log);
                           });
  if (!read.ok()) return toGrpc(read);
  response->set_data(std::move(*log.mutable_data()));
  response->set_next_offset(log.next_offset());
  response->set_host(host_name);
  return grpc::Status::OK;
}

// ---- networks, pools, volumes ----

grpc::Status ClusterServiceImpl::CreateNetwork(grpc::ServerContext*,
                                               const v1::NetworkRecord* request,
                                               v1::NetworkRecord* response) {
  if (auto valid = validateNetwork(*request); !valid.ok()) return toGrpc(valid);
  const std::string& name = request->meta().name();
  int64_t revision = 0;
  auto networks = store_.list<v1::NetworkRecord>(kindPrefix("networks"), 0, &revision);
  if (!networks.ok()) return toGrpc(networks.status());
  for (const auto& network : *networks) {
    if (network.value.meta().name() == name) {
      return toGrpc(absl::AlreadyExistsError(fmt::format("network {} already exists", name)));
    }
    if (network.value.vlan() == request->vlan()) {
      return toGrpc(absl::AlreadyExistsError(
          fmt::format("network {}: vlan {} is already used by network {}: pick another vlan", name,
                      request->vlan(), network.value.meta().name())));
    }
  }
  v1::NetworkRecord network = *request;
  stampMeta(*network.mutable_meta(), name);
  etcd::Txn txn;
  // VLANs stay unique through a claim key per VLAN, taken in the same transaction.
  txn.ifVersion(networkKey(name), etcd::CompareOp::kEqual, 0);
  txn.ifVersion(vlanClaimKey(request->vlan()), etcd::CompareOp::kEqual, 0);
  txn.thenPut(networkKey(name), encodeValue(network));
  txn.thenPut(vlanClaimKey(request->vlan()), name);
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) {
    return toGrpc(absl::AlreadyExistsError(fmt::format(
        "network {}: the name or vlan {} was taken meanwhile by another network: pick another",
        name, request->vlan())));
  }
  *response = network;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ListNetworks(grpc::ServerContext*, const v1::ListRequest*,
                                              v1::ListNetworksResponse* response) {
  auto networks = store_.list<v1::NetworkRecord>(kindPrefix("networks"));
  if (!networks.ok()) return toGrpc(networks.status());
  for (auto& network : *networks) *response->add_networks() = std::move(network.value);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::DeleteNetwork(grpc::ServerContext*, const v1::NameRequest* request,
                                               v1::DeleteResponse*) {
  const std::string& name = request->name();
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  if (!view->networks.contains(name)) return toGrpc(notFound("network", name, ""));
  std::vector<std::string> users;
  for (const auto& [vm_name, vm] : view->vms) {
    for (const v1::NicSpec& nic : vm.record.spec().nics()) {
      if (nic.network() == name) users.push_back(vm_name);
    }
  }
  if (!users.empty()) {
    return toGrpc(absl::FailedPreconditionError(fmt::format(
        "network {} is used by vm {}: delete those VMs first", name, fmt::join(users, ", "))));
  }
  etcd::Txn txn;
  txn.ifModRevision(networkKey(name), etcd::CompareOp::kLess, view->revision + 1);
  txn.thenDelete(networkKey(name));
  txn.thenDelete(vlanClaimKey(view->networks.at(name).vlan()));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("delete network {}", name)));
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::CreatePool(grpc::ServerContext*, const v1::PoolRecord* request,
                                            v1::PoolRecord* response) {
  if (auto valid = validatePool(*request); !valid.ok()) return toGrpc(valid);
  const std::string& name = request->meta().name();
  v1::PoolRecord pool = *request;
  stampMeta(*pool.mutable_meta(), name);
  if (pool.type() == v1::POOL_TYPE_ISCSI || pool.type() == v1::POOL_TYPE_DRBD)
    pool.set_shared(true);
  etcd::Txn txn;
  txn.ifVersion(poolKey(name), etcd::CompareOp::kEqual, 0);
  txn.thenPut(poolKey(name), encodeValue(pool));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) {
    return toGrpc(absl::AlreadyExistsError(fmt::format("pool {} already exists", name)));
  }
  *response = pool;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ListPools(grpc::ServerContext*, const v1::ListRequest*,
                                           v1::ListPoolsResponse* response) {
  auto pools = store_.list<v1::PoolRecord>(kindPrefix("pools"));
  if (!pools.ok()) return toGrpc(pools.status());
  for (auto& pool : *pools) *response->add_pools() = std::move(pool.value);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::DeletePool(grpc::ServerContext*, const v1::NameRequest* request,
                                            v1::DeleteResponse*) {
  const std::string& name = request->name();
  etcd::RangeOptions options;
  options.prefix = true;
  options.count_only = true;
  auto volumes = etcd_.get(kindPrefix("volumes") + name + "/", options);
  if (!volumes.ok()) return toGrpc(volumes.status());
  if (volumes->count > 0) {
    return toGrpc(absl::FailedPreconditionError(
        fmt::format("pool {} still holds {} volume(s): delete them first", name, volumes->count)));
  }
  etcd::Txn txn;
  txn.ifVersion(poolKey(name), etcd::CompareOp::kGreater, 0);
  txn.thenDelete(poolKey(name));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(notFound("pool", name, ""));
  return grpc::Status::OK;
}

namespace {

// The numbers claimed under `prefix` (drbd-minors/, drbd-ports/).
absl::StatusOr<std::set<uint32_t>> claimedNumbers(etcd::EtcdClient& etcd,
                                                  const std::string& prefix) {
  etcd::RangeOptions options;
  options.prefix = true;
  options.keys_only = true;
  ASSIGN_OR_RETURN(etcd::RangeResult range, etcd.get(prefix, options));
  std::set<uint32_t> used;
  for (const etcd::KeyValue& kv : range.kvs) {
    uint32_t number = 0;
    if (absl::SimpleAtoi(kv.key.substr(prefix.size()), &number)) used.insert(number);
  }
  return used;
}

// Deletes a DRBD volume's record and its claims (conditioned on the record as written).
absl::Status deleteDrbdRecord(etcd::EtcdClient& etcd, const std::string& key, int64_t mod_revision,
                              const v1::DrbdPlacement& placement) {
  etcd::Txn txn;
  txn.ifModRevision(key, etcd::CompareOp::kEqual, mod_revision);
  txn.thenDelete(key);
  txn.thenDelete(drbdMinorClaimKey(placement.minor()));
  txn.thenDelete(drbdPortClaimKey(placement.port()));
  ASSIGN_OR_RETURN(etcd::TxnResult result, etcd.txn(txn));
  if (!result.succeeded) return conflict(fmt::format("delete volume {}", key));
  return absl::OkStatus();
}

// A volume of a DRBD pool (docs/controller.md "DRBD volumes"): the record with its placement
// and the placement's claims in one transaction, then the volume on both hosts of the pool; a
// failure on either host deletes it where it was made and the record with its claims.
absl::StatusOr<v1::VolumeRecord> createDrbdVolume(etcd::EtcdClient& etcd, AgentClients& agents,
                                                  const ClusterView& view,
                                                  const v1::CreateVolumeRequest& request,
                                                  const Logger& log) {
  ASSIGN_OR_RETURN(auto hosts, drbdPoolHosts(view, request.pool()));
  const std::string key = volumeKey(request.pool(), request.name());
  const std::string holder = request.pool() + "/" + request.name();
  v1::VolumeRecord volume;
  stampMeta(*volume.mutable_meta(), request.name());
  volume.set_pool(request.pool());
  volume.set_size_bytes(request.size_bytes());
  int64_t revision = 0;
  // A create at the same time may take the same numbers: its claims make this transaction
  // fail, and the numbers are chosen again.
  for (int attempt = 0; attempt < 8 && revision == 0; ++attempt) {
    ASSIGN_OR_RETURN(std::set<uint32_t> minors, claimedNumbers(etcd, kindPrefix("drbd-minors")));
    ASSIGN_OR_RETURN(std::set<uint32_t> ports, claimedNumbers(etcd, kindPrefix("drbd-ports")));
    ASSIGN_OR_RETURN(*volume.mutable_drbd(), allocateDrbdPlacement(minors, ports));
    etcd::Txn txn;
    txn.ifVersion(key, etcd::CompareOp::kEqual, 0);
    txn.ifVersion(drbdMinorClaimKey(volume.drbd().minor()), etcd::CompareOp::kEqual, 0);
    txn.ifVersion(drbdPortClaimKey(volume.drbd().port()), etcd::CompareOp::kEqual, 0);
    txn.thenPut(key, encodeValue(volume));
    txn.thenPut(drbdMinorClaimKey(volume.drbd().minor()), holder);
    txn.thenPut(drbdPortClaimKey(volume.drbd().port()), holder);
    ASSIGN_OR_RETURN(etcd::TxnResult result, etcd.txn(txn));
    if (result.succeeded) {
      revision = result.revision;
      break;
    }
    etcd::RangeOptions count;
    count.count_only = true;
    ASSIGN_OR_RETURN(etcd::RangeResult existing, etcd.get(key, count));
    if (existing.count > 0) {
      return absl::AlreadyExistsError(fmt::format("volume {} already exists", holder));
    }
  }
  if (revision == 0) return conflict(fmt::format("create volume {}", holder));

  v1::VolumeRequest agent_request;
  agent_request.set_pool(request.pool());
  agent_request.set_volume(request.name());
  agent_request.set_size_bytes(request.size_bytes());
  *agent_request.mutable_drbd() = volume.drbd();
  for (size_t i = 0; i < hosts.size(); ++i) {
    const HostView& host = *hosts[i];
    v1::Volume created;
    absl::Status made =
        agents.call(host.name, host.status->agent_address(), "CreateVolume",
                    [&](v1::AgentService::Stub& stub, grpc::ClientContext& context) {
                      return stub.CreateVolume(&context, agent_request, &created);
                    });
    if (made.ok()) continue;
    for (size_t j = 0; j < i; ++j) {
      v1::DeleteVolumeResponse deleted;
      absl::Status undone =
          agents.call(hosts[j]->name, hosts[j]->status->agent_address(), "DeleteVolume",
                      [&](v1::AgentService::Stub& stub, grpc::ClientContext& context) {
                        return stub.DeleteVolume(&context, agent_request, &deleted);
                      });
      if (!undone.ok()) {
        log.warn("volume {}: cannot remove it again from host {}: {}", holder, hosts[j]->name,
                 undone.message());
      }
    }
    absl::Status dropped = deleteDrbdRecord(etcd, key, revision, volume.drbd());
    if (!dropped.ok())
      log.warn("volume {}: cannot delete its record: {}", holder, dropped.message());
    return annotate(made, fmt::format("DRBD volume {} on host {} (of {} and {})", holder, host.name,
                                      hosts[0]->name, hosts[1]->name));
  }
  return volume;
}

}  // namespace

grpc::Status ClusterServiceImpl::CreateVolume(grpc::ServerContext*,
                                              const v1::CreateVolumeRequest* request,
                                              v1::VolumeRecord* response) {
  if (auto valid = validateVolumeRequest(*request); !valid.ok()) return toGrpc(valid);
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  auto pool = view->pools.find(request->pool());
  if (pool == view->pools.end()) {
    return toGrpc(notFound("pool", request->pool(), "create it with `clusterctl create pool`"));
  }
  const std::string key = volumeKey(request->pool(), request->name());
  auto existing = store_.get<v1::VolumeRecord>(key);
  if (!existing.ok()) return toGrpc(existing.status());
  if (*existing) {
    return toGrpc(absl::AlreadyExistsError(
        fmt::format("volume {}/{} already exists", request->pool(), request->name())));
  }
  if (pool->second.type() == v1::POOL_TYPE_DRBD) {
    auto created = createDrbdVolume(etcd_, agents_, *view, *request, log_);
    if (!created.ok()) return toGrpc(created.status());
    *response = std::move(*created);
    return grpc::Status::OK;
  }
  const HostView* host = volumeHost(*view, pool->second);
  if (host == nullptr) {
    return toGrpc(absl::FailedPreconditionError(fmt::format(
        "pool {}: no ready host manages it{}: start the agent of its storage host", request->pool(),
        pool->second.manager_host().empty() ? "" : " (" + pool->second.manager_host() + ")")));
  }
  v1::VolumeRequest agent_request;
  agent_request.set_pool(request->pool());
  agent_request.set_volume(request->name());
  agent_request.set_size_bytes(request->size_bytes());
  v1::Volume created;
  auto made = agents_.call(host->name, host->status->agent_address(), "CreateVolume",
                           [&](v1::AgentService::Stub& stub, grpc::ClientContext& context) {
                             return stub.CreateVolume(&context, agent_request, &created);
                           });
  if (!made.ok()) return toGrpc(made);
  v1::VolumeRecord volume;
  stampMeta(*volume.mutable_meta(), request->name());
  volume.set_pool(request->pool());
  volume.set_size_bytes(created.size_bytes());
  etcd::Txn txn;
  txn.ifVersion(key, etcd::CompareOp::kEqual, 0);
  txn.thenPut(key, encodeValue(volume));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("create volume {}", key)));
  *response = volume;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ListVolumes(grpc::ServerContext*,
                                             const v1::ListVolumesClusterRequest* request,
                                             v1::ListVolumesClusterResponse* response) {
  std::string prefix = kindPrefix("volumes");
  if (!request->pool().empty()) prefix += request->pool() + "/";
  auto volumes = store_.list<v1::VolumeRecord>(prefix);
  if (!volumes.ok()) return toGrpc(volumes.status());
  for (auto& volume : *volumes) *response->add_volumes() = std::move(volume.value);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::DeleteVolume(grpc::ServerContext*,
                                              const v1::VolumeNameRequest* request,
                                              v1::DeleteResponse*) {
  const std::string key = volumeKey(request->pool(), request->name());
  auto volume = store_.get<v1::VolumeRecord>(key);
  if (!volume.ok()) return toGrpc(volume.status());
  if (!*volume) {
    return toGrpc(notFound("volume", request->pool() + "/" + request->name(), ""));
  }
  if (!(*volume)->value.attached_to().empty()) {
    return toGrpc(absl::FailedPreconditionError(
        fmt::format("volume {}/{} is used by vm {}: delete the VM first", request->pool(),
                    request->name(), (*volume)->value.attached_to())));
  }
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  auto pool = view->pools.find(request->pool());
  if (pool != view->pools.end() && pool->second.type() == v1::POOL_TYPE_DRBD) {
    // Both hosts remove their copy (idempotent), then the record and its claims go.
    auto hosts = drbdPoolHosts(*view, request->pool());
    if (!hosts.ok()) return toGrpc(hosts.status());
    v1::VolumeRequest agent_request;
    agent_request.set_pool(request->pool());
    agent_request.set_volume(request->name());
    for (const HostView* host : *hosts) {
      v1::DeleteVolumeResponse deleted;
      auto removed = agents_.call(host->name, host->status->agent_address(), "DeleteVolume",
                                  [&](v1::AgentService::Stub& stub, grpc::ClientContext& context) {
                                    return stub.DeleteVolume(&context, agent_request, &deleted);
                                  });
      if (!removed.ok()) return toGrpc(removed);
    }
    return toGrpc(deleteDrbdRecord(etcd_, key, (*volume)->mod_revision, (*volume)->value.drbd()));
  }
  if (pool != view->pools.end()) {
    const HostView* host = volumeHost(*view, pool->second);
    if (host == nullptr) {
      return toGrpc(absl::FailedPreconditionError(fmt::format(
          "pool {}: no ready host manages it: the volume cannot be removed now", request->pool())));
    }
    v1::VolumeRequest agent_request;
    agent_request.set_pool(request->pool());
    agent_request.set_volume(request->name());
    v1::DeleteVolumeResponse deleted;
    auto removed = agents_.call(host->name, host->status->agent_address(), "DeleteVolume",
                                [&](v1::AgentService::Stub& stub, grpc::ClientContext& context) {
                                  return stub.DeleteVolume(&context, agent_request, &deleted);
                                });
    if (!removed.ok()) return toGrpc(removed);
  }
  etcd::Txn txn;
  txn.ifModRevision(key, etcd::CompareOp::kEqual, (*volume)->mod_revision);
  txn.thenDelete(key);
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("delete volume {}", key)));
  return grpc::Status::OK;
}

// ---- migrations, rebalance, events ----

grpc::Status ClusterServiceImpl::ListMigrations(grpc::ServerContext*, const v1::ListRequest*,
                                                v1::ListMigrationsResponse* response) {
  auto migrations = store_.list<v1::MigrationRecord>(kindPrefix("migrations"));
  if (!migrations.ok()) return toGrpc(migrations.status());
  for (auto& migration : *migrations) *response->add_migrations() = std::move(migration.value);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::GetMigration(grpc::ServerContext*, const v1::NameRequest* request,
                                              v1::MigrationRecord* response) {
  auto migration = store_.get<v1::MigrationRecord>(migrationKey(request->name()));
  if (!migration.ok()) return toGrpc(migration.status());
  if (!*migration) return toGrpc(notFound("migration", request->name(), ""));
  *response = (*migration)->value;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::CancelMigration(grpc::ServerContext*,
                                                 const v1::NameRequest* request,
                                                 v1::MigrationRecord* response) {
  const std::string key = migrationKey(request->name());
  auto migration = store_.get<v1::MigrationRecord>(key);
  if (!migration.ok()) return toGrpc(migration.status());
  if (!*migration) return toGrpc(notFound("migration", request->name(), ""));
  v1::MigrationRecord record = (*migration)->value;
  if (!migrationActive(record.phase())) {
    return toGrpc(absl::FailedPreconditionError(
        fmt::format("migration {} already ended ({})", request->name(),
                    v1::MigrationPhase_Name(record.phase()))));
  }
  record.set_cancel_requested(true);
  etcd::Txn txn;
  txn.ifModRevision(key, etcd::CompareOp::kEqual, (*migration)->mod_revision);
  txn.thenPut(key, encodeValue(record));
  auto result = etcd_.txn(txn);
  if (!result.ok()) return toGrpc(result.status());
  if (!result->succeeded) return toGrpc(conflict(fmt::format("cancel migration {}", key)));
  *response = record;
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::PlanRebalance(grpc::ServerContext*,
                                               const v1::PlanRebalanceRequest* request,
                                               v1::RebalancePlan* response) {
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  *response = planner_(*view, *request);
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ApplyRebalance(grpc::ServerContext*,
                                                const v1::PlanRebalanceRequest* request,
                                                v1::RebalancePlan* response) {
  auto view = store_.readView();
  if (!view.ok()) return toGrpc(view.status());
  *response = planner_(*view, *request);
  for (v1::RebalanceMove& move : *response->mutable_moves()) {
    v1::MigrateVmRequest migrate;
    migrate.set_name(move.vm());
    migrate.set_target(move.target());
    migrate.set_mode(v1::MIGRATION_MODE_LIVE);
    auto migration = startMigration(*view, migrate, "rebalance");
    if (!migration.ok()) {
      return toGrpc(absl::Status(migration.status().code(),
                                 fmt::format("rebalance: moving vm {} to {}: {}", move.vm(),
                                             move.target(), migration.status().message())));
    }
    move.set_migration(migration->meta().name());
  }
  return grpc::Status::OK;
}

grpc::Status ClusterServiceImpl::ListEvents(grpc::ServerContext*,
                                            const v1::ListEventsRequest* request,
                                            v1::ListEventsResponse* response) {
  auto events = store_.list<v1::Event>(eventsPrefix());
  if (!events.ok()) return toGrpc(events.status());
  const size_t limit = request->limit() == 0 ? 100 : request->limit();
  std::vector<v1::Event> matching;
  for (auto& event : *events) {
    if (request->object().empty() || event.value.object() == request->object()) {
      matching.push_back(std::move(event.value));
    }
  }
  const size_t first = matching.size() > limit ? matching.size() - limit : 0;
  for (size_t i = first; i < matching.size(); ++i) *response->add_events() = matching[i];
  return grpc::Status::OK;
}

}  // namespace flotilla::controller
