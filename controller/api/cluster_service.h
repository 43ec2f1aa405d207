// ClusterServiceImpl: the cluster API every controller replica serves (cluster.proto). Reads
// come from etcd; writes are transactions conditioned on the revisions read, so that two
// replicas (or two admins) never overwrite each other: the loser gets ABORTED and retries.
// The API only records intent; the leader's reconcilers act on it.
#pragma once

#include <functional>
#include <string>

#include "common/etcd/client.h"
#include "common/etcd/election.h"
#include "common/log.h"
#include "controller/agent_clients.h"
#include "controller/config.h"
#include "controller/events.h"
#include "controller/store/store.h"
#include "flotilla/v1/cluster.grpc.pb.h"

namespace flotilla::controller {

// Computes a rebalance plan from a view (the leader's reconciler and the API share it).
using RebalancePlanner =
    std::function<v1::RebalancePlan(const ClusterView& view, const v1::PlanRebalanceRequest&)>;

class ClusterServiceImpl final : public v1::ClusterService::Service {
 public:
  ClusterServiceImpl(const ControllerConfig& config, etcd::EtcdClient& etcd, AgentClients& agents,
                     RebalancePlanner planner);

  grpc::Status GetClusterInfo(grpc::ServerContext*, const v1::GetClusterInfoRequest*,
                              v1::ClusterInfo*) override;
  grpc::Status ListHosts(grpc::ServerContext*, const v1::ListHostsRequest*,
                         v1::ListHostsResponse*) override;
  grpc::Status GetHost(grpc::ServerContext*, const v1::NameRequest*, v1::Host*) override;
  grpc::Status CordonHost(grpc::ServerContext*, const v1::CordonHostRequest*, v1::Host*) override;
  grpc::Status UncordonHost(grpc::ServerContext*, const v1::NameRequest*, v1::Host*) override;
  grpc::Status SetHostLabels(grpc::ServerContext*, const v1::SetLabelsRequest*, v1::Host*) override;
  grpc::Status DrainHost(grpc::ServerContext*, const v1::DrainHostRequest*,
                         v1::DrainRecord*) override;
  grpc::Status UndrainHost(grpc::ServerContext*, const v1::NameRequest*, v1::Host*) override;
  grpc::Status GetDrain(grpc::ServerContext*, const v1::NameRequest*, v1::DrainRecord*) override;
  grpc::Status ListDrains(grpc::ServerContext*, const v1::ListRequest*,
                          v1::ListDrainsResponse*) override;

  grpc::Status CreateVm(grpc::ServerContext*, const v1::CreateVmClusterRequest*, v1::Vm*) override;
  grpc::Status GetVm(grpc::ServerContext*, const v1::NameRequest*, v1::Vm*) override;
  grpc::Status ListVms(grpc::ServerContext*, const v1::ListVmsRequest*,
                       v1::ListVmsResponse*) override;
  grpc::Status StartVm(grpc::ServerContext*, const v1::NameRequest*, v1::Vm*) override;
  grpc::Status StopVm(grpc::ServerContext*, const v1::NameRequest*, v1::Vm*) override;
  grpc::Status RestartVm(grpc::ServerContext*, const v1::NameRequest*, v1::Vm*) override;
  grpc::Status DeleteVm(grpc::ServerContext*, const v1::NameRequest*, v1::DeleteResponse*) override;
  grpc::Status MigrateVm(grpc::ServerContext*, const v1::MigrateVmRequest*,
                         v1::MigrationRecord*) override;
  grpc::Status GetVmConsoleLog(grpc::ServerContext*, const v1::VmConsoleLogRequest*,
                               v1::VmConsoleLog*) override;

  grpc::Status CreateNetwork(grpc::ServerContext*, const v1::NetworkRecord*,
                             v1::NetworkRecord*) override;
  grpc::Status ListNetworks(grpc::ServerContext*, const v1::ListRequest*,
                            v1::ListNetworksResponse*) override;
  grpc::Status DeleteNetwork(grpc::ServerContext*, const v1::NameRequest*,
                             v1::DeleteResponse*) override;
  grpc::Status CreatePool(grpc::ServerContext*, const v1::PoolRecord*, v1::PoolRecord*) override;
  grpc::Status ListPools(grpc::ServerContext*, const v1::ListRequest*,
                         v1::ListPoolsResponse*) override;
  grpc::Status DeletePool(grpc::ServerContext*, const v1::NameRequest*,
                          v1::DeleteResponse*) override;
  grpc::Status CreateVolume(grpc::ServerContext*, const v1::CreateVolumeRequest*,
                            v1::VolumeRecord*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const v1::ListVolumesClusterRequest*,
                           v1::ListVolumesClusterResponse*) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const v1::VolumeNameRequest*,
                            v1::DeleteResponse*) override;

  grpc::Status ListMigrations(grpc::ServerContext*, const v1::ListRequest*,
                              v1::ListMigrationsResponse*) override;
  grpc::Status GetMigration(grpc::ServerContext*, const v1::NameRequest*,
                            v1::MigrationRecord*) override;
  grpc::Status CancelMigration(grpc::ServerContext*, const v1::NameRequest*,
                               v1::MigrationRecord*) override;

  grpc::Status PlanRebalance(grpc::ServerContext*, const v1::PlanRebalanceRequest*,
                             v1::RebalancePlan*) override;
  grpc::Status ApplyRebalance(grpc::ServerContext*, const v1::PlanRebalanceRequest*,
                              v1::RebalancePlan*) override;

  grpc::Status ListEvents(grpc::ServerContext*, const v1::ListEventsRequest*,
                          v1::ListEventsResponse*) override;
  grpc::Status Watch(grpc::ServerContext*, const v1::WatchRequest*,
                     grpc::ServerWriter<v1::WatchEvent>*) override;

 private:
  absl::StatusOr<v1::Host> readHost(const std::string& name);
  absl::StatusOr<bool> keyExists(const std::string& key);
  absl::StatusOr<v1::Vm> readVm(const std::string& name);
  // Read-modify-write of a host record (created from the agent's report if missing).
  absl::StatusOr<v1::Host> updateHost(const std::string& name, std::string_view what,
                                      const std::function<void(v1::HostRecord&)>& change);
  // Read-modify-write of a VM's record and status in one transaction.
  absl::StatusOr<v1::Vm> updateVm(
      const std::string& name, std::string_view what,
      const std::function<absl::Status(v1::VmRecord&, v1::VmStatus&)>& change);
  absl::StatusOr<v1::MigrationRecord> startMigration(const ClusterView& view,
                                                     const v1::MigrateVmRequest& request,
                                                     std::string_view reason);

  const ControllerConfig& config_;
  etcd::EtcdClient& etcd_;
  Store store_;
  AgentClients& agents_;
  EventLog events_;
  RebalancePlanner planner_;
  const Logger log_;
};

// Names a new migration of `vm` uniquely ("web-1-m1732270000123").
std::string migrationName(std::string_view vm);

}  // namespace flotilla::controller
