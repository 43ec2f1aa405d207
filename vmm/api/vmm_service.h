// VmmService: the gRPC control API of one VM (flotilla/v1/vmm.proto), served by flotilla-vmm
// on a unix socket. Handlers translate to Vm calls; errors map to gRPC codes with the Vm's
// message. A VMM started with --incoming serves it while its VM arrives: MigrateStatus then
// follows the incoming migration, and the calls that need the VM fail with
// FAILED_PRECONDITION until it runs here (attachVm).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "grpcpp/server.h"
#include "migration/receiver.h"
#include "migration/sender.h"
#include "vmm/migration_endpoints.h"
#include "vmm/vm.h"

namespace flotilla::vmm {

class VmmServiceImpl final : public flotilla::v1::VmmService::Service {
 public:
  // No VM yet (--incoming): see attachVm.
  VmmServiceImpl() = default;
  explicit VmmServiceImpl(Vm& vm) { attachVm(vm); }
  // Cancels a migration in progress (unless past its point of no return) and waits for it.
  ~VmmServiceImpl() override;

  // The VM to serve, once; until then only Health (NOT_SERVING) and MigrateStatus answer.
  void attachVm(Vm& vm);
  // --incoming: MigrateStatus follows `receiver` while it receives the VM; incomingEnded()
  // keeps its final figures (and lets go of it) once it returned.
  void followIncoming(std::shared_ptr<const migration::MigrationReceiver> receiver);
  void incomingEnded();

  grpc::Status GetInfo(grpc::ServerContext*, const flotilla::v1::GetInfoRequest*,
                       flotilla::v1::VmmInfo* info) override;
  grpc::Status Health(grpc::ServerContext*, const flotilla::v1::HealthRequest*,
                      flotilla::v1::HealthResponse* response) override;
  grpc::Status Pause(grpc::ServerContext*, const flotilla::v1::PauseRequest*,
                     flotilla::v1::PauseResponse* response) override;
  grpc::Status Resume(grpc::ServerContext*, const flotilla::v1::ResumeRequest*,
                      flotilla::v1::ResumeResponse*) override;
  grpc::Status Shutdown(grpc::ServerContext*, const flotilla::v1::ShutdownRequest* request,
                        flotilla::v1::ShutdownResponse*) override;
  grpc::Status Snapshot(grpc::ServerContext*, const flotilla::v1::SnapshotRequest* request,
                        flotilla::v1::SnapshotResponse* response) override;
  grpc::Status ResizeDisk(grpc::ServerContext*, const flotilla::v1::ResizeDiskRequest* request,
                          flotilla::v1::ResizeDiskResponse* response) override;
  grpc::Status SetBalloon(grpc::ServerContext*, const flotilla::v1::SetBalloonRequest* request,
                          flotilla::v1::BalloonInfo* response) override;
  grpc::Status GetBalloon(grpc::ServerContext*, const flotilla::v1::GetBalloonRequest*,
                          flotilla::v1::BalloonInfo* response) override;
  grpc::Status SetLink(grpc::ServerContext*, const flotilla::v1::SetLinkRequest* request,
                       flotilla::v1::SetLinkResponse*) override;
  grpc::Status Announce(grpc::ServerContext*, const flotilla::v1::AnnounceRequest*,
                        flotilla::v1::AnnounceResponse* response) override;
  grpc::Status MigrateSend(grpc::ServerContext*, const flotilla::v1::MigrateSendRequest* request,
                           flotilla::v1::MigrateSendResponse*) override;
  grpc::Status MigrateStatus(grpc::ServerContext*, const flotilla::v1::MigrateStatusRequest*,
                             flotilla::v1::MigrationStatus* response) override;
  grpc::Status MigrateCancel(grpc::ServerContext*, const flotilla::v1::MigrateCancelRequest*,
                             flotilla::v1::MigrateCancelResponse* response) override;

 private:
  Vm* attachedVm() const;
  static grpc::Status notArrivedYet();

  std::atomic<Vm*> vm_{nullptr};
  absl::Mutex migration_mu_;
  std::unique_ptr<VmMigrationSource> migration_source_ ABSL_GUARDED_BY(migration_mu_);
  // The migration that brought the VM here: while it runs, then its final figures.
  std::shared_ptr<const migration::MigrationReceiver> receiver_ ABSL_GUARDED_BY(migration_mu_);
  std::optional<migration::ReceiverStats> incoming_result_ ABSL_GUARDED_BY(migration_mu_);
  // The current or last migration (kept for MigrateStatus), and the thread running it.
  std::shared_ptr<migration::MigrationSender> sender_ ABSL_GUARDED_BY(migration_mu_);
  bool migrating_ ABSL_GUARDED_BY(migration_mu_) = false;
  std::jthread migration_thread_;
  absl::Mutex snapshot_mu_;  // one snapshot at a time
};

// Serves `service` on the unix socket at `path` (a stale socket file there is replaced).
absl::StatusOr<std::unique_ptr<grpc::Server>> serveOnUnixSocket(const std::string& path,
                                                                grpc::Service* service);

}  // namespace flotilla::vmm
