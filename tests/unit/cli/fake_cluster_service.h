// An in-memory ClusterService for clusterctl's unit tests, served over gRPC on 127.0.0.1:0.
// It keeps objects in maps, records every request, can answer every call with an injected
// error (a replica that lost etcd), and drives migrations and drains through scripted states:
// each time a Watch stream (or GetMigration/GetDrain) delivers the current state of a scripted
// object, the next state is published, so a client following it sees every state in order
// without any timing.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "flotilla/v1/cluster.grpc.pb.h"
#include "grpcpp/server.h"

namespace flotilla::cli::testing {

class FakeClusterService final : public v1::ClusterService::Service {
 public:
  explicit FakeClusterService(std::string replica = "ctl-1") : replica_(std::move(replica)) {}

  // --- Setting up the cluster (the test thread; before or between runs).
  void addHost(const v1::Host& host);
  void addVm(const v1::Vm& vm);
  void addNetwork(const v1::NetworkRecord& network);
  void addPool(const v1::PoolRecord& pool);
  void addVolume(const v1::VolumeRecord& volume);
  void addMigration(const v1::MigrationRecord& migration);
  void addDrain(const v1::DrainRecord& drain);
  void addEvent(const v1::Event& event);
  void setPlan(const v1::RebalancePlan& plan);
  void setLeader(const std::string& leader);
  // Every call answers `status` from now on (OK: serve normally again).
  void failAll(const grpc::Status& status);
  // Watch streams end with UNAVAILABLE after delivering `events` events (-1: never).
  void breakWatchAfter(int events);
  // Watch answers UNIMPLEMENTED (a controller without it: clients poll GetMigration/GetDrain).
  void disableWatch();
  // Every Watch stream open now ends with UNAVAILABLE (later streams are served normally).
  void breakWatches();
  // Forgets the change log up to now: a Watch that resumes from an older revision answers
  // OUT_OF_RANGE (etcd compacted that history), as the controller does.
  void compactLog();
  // Only `method` answers `status` from now on (OK: serve it normally again).
  void failMethod(const std::string& method, const grpc::Status& status);
  // What GetVmConsoleLog serves for `vm` (the whole log; requests read from their offset).
  void setConsoleLog(const std::string& vm, const std::string& data);
  // Deletes the object and publishes the deletion.
  void removeHost(const std::string& name);
  void removeVm(const std::string& name);
  void removeMigration(const std::string& name);
  void removeDrain(const std::string& name);
  // The states the next migration (MigrateVm) or drain (DrainHost) goes through after its
  // first one, in order (meta.name is filled in).
  void scriptMigration(std::vector<v1::MigrationRecord> states);
  void scriptDrain(std::vector<v1::DrainRecord> states);

  // --- What the clients asked.
  // The methods called, in order ("CreateVm", ...).
  std::vector<std::string> calls() const;
  int callCount(const std::string& method) const;
  // The last request of `method`, parsed as T; nullopt when it was never called.
  template <typename T>
  std::optional<T> lastRequest(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    for (auto it = requests_.rbegin(); it != requests_.rend(); ++it) {
      if (it->first != method) continue;
      T request;
      request.ParseFromString(it->second);
      return request;
    }
    return std::nullopt;
  }
  // Watch events delivered over all streams so far; blocks until at least `count` were.
  void waitDelivered(int count) const;

  // --- ClusterService.
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
  // Records the call; returns the injected failure, if any.
  std::optional<grpc::Status> enter(const std::string& method,
                                    const google::protobuf::Message& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends a change to the log that Watch streams follow.
  void publish(v1::WatchEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void publishHost(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void publishVm(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void publishMigration(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void publishDrain(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void publishEvent(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The current state of every object of `kinds` (empty: all), as PUT events.
  std::vector<v1::WatchEvent> snapshot(const std::vector<v1::ObjectKind>& kinds) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a stream delivered `event`: the next scripted state of its object, if any.
  void delivered(const v1::WatchEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  grpc::Status vmAction(const std::string& method, const v1::NameRequest& request, v1::Vm* vm,
                        bool want_running);

  const std::string replica_;
  mutable absl::Mutex mu_;
  std::string leader_ ABSL_GUARDED_BY(mu_) = "ctl-1";
  std::map<std::string, v1::Host> hosts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::Vm> vms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::NetworkRecord> networks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::PoolRecord> pools_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::VolumeRecord> volumes_ ABSL_GUARDED_BY(mu_);  // "POOL/NAME"
  std::map<std::string, v1::MigrationRecord> migrations_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::DrainRecord> drains_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Event> events_ ABSL_GUARDED_BY(mu_);
  v1::RebalancePlan plan_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> failure_ ABSL_GUARDED_BY(mu_);
  int break_watch_after_ ABSL_GUARDED_BY(mu_) = -1;
  bool watch_disabled_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::MigrationRecord> migration_script_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::DrainRecord> drain_script_ ABSL_GUARDED_BY(mu_);
  std::string scripted_migration_ ABSL_GUARDED_BY(mu_);
  std::string scripted_drain_ ABSL_GUARDED_BY(mu_);
  int migration_count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 100;
  std::vector<v1::WatchEvent> log_ ABSL_GUARDED_BY(mu_);
  int64_t compacted_revision_ ABSL_GUARDED_BY(mu_) = 0;  // resuming below it: OUT_OF_RANGE
  int watch_generation_ ABSL_GUARDED_BY(mu_) = 0;        // breakWatches() bumps it
  std::map<std::string, grpc::Status> method_failures_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> console_logs_ ABSL_GUARDED_BY(mu_);
  int delivered_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<std::string, std::string>> requests_ ABSL_GUARDED_BY(mu_);
};

// A FakeClusterService served on 127.0.0.1 (a port picked by the system) until destroyed.
class FakeClusterServer {
 public:
  explicit FakeClusterServer(std::string replica = "ctl-1");
  ~FakeClusterServer();
  FakeClusterServer(const FakeClusterServer&) = delete;
  FakeClusterServer& operator=(const FakeClusterServer&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  FakeClusterService& service() { return service_; }

 private:
  FakeClusterService service_;
  std::unique_ptr<grpc::Server> server_;
  std::string endpoint_;
};

}  // namespace flotilla::cli::testing
