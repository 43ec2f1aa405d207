// VmmService (see vmm_service.h).
#include "vmm/api/vmm_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "grpcpp/server_builder.h"
#include "vmm/exit_codes.h"
#include "vmm/state/snapshot.h"

namespace flotilla::vmm {
namespace {

flotilla::v1::VmmRunState toProto(Vm::RunState state) {
  switch (state) {
    case Vm::RunState::kCreated:
      return flotilla::v1::VMM_RUN_STATE_CREATED;
    case Vm::RunState::kRunning:
      return flotilla::v1::VMM_RUN_STATE_RUNNING;
    case Vm::RunState::kPaused:
      return flotilla::v1::VMM_RUN_STATE_PAUSED;
    case Vm::RunState::kEnded:
      return flotilla::v1::VMM_RUN_STATE_ENDED;
  }
  return flotilla::v1::VMM_RUN_STATE_UNSPECIFIED;
}

// How long MigrateSend waits for the target to accept each connection.
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);

uint64_t microsSince(absl::Duration start) {
  return static_cast<uint64_t>(absl::ToInt64Microseconds(systemClock().monotonicNow() - start));
}

}  // namespace

grpc::Status VmmServiceImpl::GetInfo(grpc::ServerContext*, const flotilla::v1::GetInfoRequest*,
                                     flotilla::v1::VmmInfo* info) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  const VmConfig& config = vm->config();
  Vm::RunState state = vm->runState();
  info->set_state(toProto(state));
  flotilla::v1::VmmConfig* out = info->mutable_config();
  out->set_name(config.name);
  out->set_vcpus(config.vcpus);
  out->set_memory_bytes(config.memory_bytes);
  out->set_cpu_model(config.cpu_model);
  out->set_kernel(config.kernel);
  out->set_initrd(config.initrd);
  out->set_cmdline(config.cmdline);
  out->set_hugepages(config.hugepages);
  std::vector<VcpuCounters> counters = vm->vcpuCounters();
  for (size_t i = 0; i < counters.size(); ++i) {
    flotilla::v1::VcpuCounters* vcpu = info->add_vcpus();
    vcpu->set_index(static_cast<uint32_t>(i));
    vcpu->set_exits(counters[i].exits);
    vcpu->set_io_exits(counters[i].io_exits);
    vcpu->set_mmio_exits(counters[i].mmio_exits);
    vcpu->set_unclaimed_accesses(counters[i].unclaimed_accesses);
    vcpu->set_kicks(counters[i].kicks);
  }
  if (state != Vm::RunState::kCreated) {
    info->set_uptime_ms(
        static_cast<uint64_t>(absl::ToInt64Milliseconds(systemClock().now() - vm->startedAt())));
  }
  info->set_pid(static_cast<uint32_t>(::getpid()));
  VirtioDevices& devices = vm->virtio();
  for (size_t i = 0; i < devices.disks().size(); ++i) {
    const virtio::VirtioBlock& disk = *devices.disks()[i];
    flotilla::v1::DiskInfo* out_disk = info->add_disks();
    out_disk->set_id(fmt::format("disk{}", i));
    out_disk->set_backend(disk.backend().describe());
    out_disk->set_size_bytes(disk.capacityBytes());
    out_disk->set_read_only(disk.backend().readOnly());
  }
  for (size_t i = 0; i < devices.nics().size(); ++i) {
    const virtio::VirtioNet& nic = *devices.nics()[i];
    flotilla::v1::NicInfo* out_nic = info->add_nics();
    out_nic->set_id(fmt::format("net{}", i));
    out_nic->set_mac(config.nics[i].mac);
    out_nic->set_backend(config.nics[i].tap.empty() ? fmt::format("fd {}", config.nics[i].fd)
                                                    : fmt::format("tap {}", config.nics[i].tap));
    out_nic->set_link_up(nic.linkUp());
    out_nic->set_offloads(nic.config().offloads);
    const virtio::VirtioNet::Counters counters_now = nic.counters();
    out_nic->set_rx_frames(counters_now.rx_frames);
    out_nic->set_rx_bytes(counters_now.rx_bytes);
    out_nic->set_rx_dropped(counters_now.rx_dropped);
    out_nic->set_tx_frames(counters_now.tx_frames);
    out_nic->set_tx_bytes(counters_now.tx_bytes);
    out_nic->set_tx_errors(counters_now.tx_errors);
  }
  info->set_rng(config.rng);
  info->set_balloon(config.balloon);
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Health(grpc::ServerContext*, const flotilla::v1::HealthRequest*,
                                    flotilla::v1::HealthResponse* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) {
    // Still arriving by migration.
    response->set_status(flotilla::v1::HealthResponse::NOT_SERVING);
    return grpc::Status::OK;
  }
  Vm::RunState state = vm->runState();
  response->set_status(state == Vm::RunState::kRunning || state == Vm::RunState::kPaused
                           ? flotilla::v1::HealthResponse::SERVING
                           : flotilla::v1::HealthResponse::NOT_SERVING);
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Pause(grpc::ServerContext*, const flotilla::v1::PauseRequest*,
                                   flotilla::v1::PauseResponse* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  absl::Duration start = systemClock().monotonicNow();
  absl::Status status = vm->pause();
  response->set_pause_us(microsSince(start));
  return toGrpcStatus(status);
}

grpc::Status VmmServiceImpl::Resume(grpc::ServerContext*, const flotilla::v1::ResumeRequest*,
                                    flotilla::v1::ResumeResponse*) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  return toGrpcStatus(vm->resume());
}

grpc::Status VmmServiceImpl::Shutdown(grpc::ServerContext*,
                                      const flotilla::v1::ShutdownRequest* request,
                                      flotilla::v1::ShutdownResponse*) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  vm->shutdown(absl::Milliseconds(request->graceful_timeout_ms()));
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Snapshot(grpc::ServerContext*,
                                      const flotilla::v1::SnapshotRequest* request,
                                      flotilla::v1::SnapshotResponse* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  if (request->directory().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "no snapshot directory given: set `directory`");
  }
  absl::MutexLock lock(&snapshot_mu_);
  const bool was_running = vm->runState() == Vm::RunState::kRunning;
  absl::Duration start = systemClock().monotonicNow();
  absl::Status status = vm->pause();
  if (!status.ok()) return toGrpcStatus(annotate(status, "cannot snapshot"));
  absl::StatusOr<SnapshotStats> stats;
  absl::StatusOr<flotilla::v1::VmSnapshot> state = vm->saveState();
  if (state.ok()) {
    stats = writeSnapshot(request->directory(), *state, vm->memory());
  } else {
    stats = state.status();
  }
  if (was_running) status = vm->resume();
  response->set_paused_us(microsSince(start));
  // Syncing to disk needs no pause: the files are final.
  if (stats.ok()) {
    absl::Status committed = commitSnapshot(request->directory());
    if (!committed.ok()) stats = committed;
  }
  if (!stats.ok()) {
    return toGrpcStatus(
        annotate(stats.status(), fmt::format("writing a snapshot to {}", request->directory())));
  }
  response->set_memory_bytes_written(stats->memory_bytes_written);
  return toGrpcStatus(status);
}

namespace {

// The device `id` ("disk0") of `devices`, or NotFound naming the ones that exist.
template <typename Device>
absl::StatusOr<Device*> findDevice(const std::vector<Device*>& devices, std::string_view prefix,
                                   const std::string& id) {
  for (size_t i = 0; i < devices.size(); ++i) {
    if (id == fmt::format("{}{}", prefix, i)) return devices[i];
  }
  return absl::NotFoundError(
      fmt::format("the VM has no device '{}': it has {} {}*", id, devices.size(), prefix));
}

void fillBalloonInfo(const virtio::VirtioBalloon::Info& info, flotilla::v1::BalloonInfo* out) {
  out->set_target_bytes(info.target_bytes);
  out->set_actual_bytes(info.actual_bytes);
  out->set_freed_bytes(info.freed_bytes);
  for (const auto& [tag, value] : info.stats) (*out->mutable_stats())[tag] = value;
}

absl::StatusOr<virtio::VirtioBalloon*> balloonOf(Vm& vm) {
  if (vm.virtio().balloon() == nullptr) {
    return absl::FailedPreconditionError("the VM has no balloon: start it with --balloon");
  }
  return vm.virtio().balloon();
}

}  // namespace

grpc::Status VmmServiceImpl::ResizeDisk(grpc::ServerContext*,
                                        const flotilla::v1::ResizeDiskRequest* request,
                                        flotilla::v1::ResizeDiskResponse* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  auto disk = findDevice(vm->virtio().disks(), "disk", request->disk());
  if (!disk.ok()) return toGrpcStatus(disk.status());
  auto size = (*disk)->resize(request->size_bytes());
  if (!size.ok()) return toGrpcStatus(size.status());
  response->set_size_bytes(*size);
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::SetBalloon(grpc::ServerContext*,
                                        const flotilla::v1::SetBalloonRequest* request,
                                        flotilla::v1::BalloonInfo* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  auto balloon = balloonOf(*vm);
  if (!balloon.ok()) return toGrpcStatus(balloon.status());
  absl::Status set = (*balloon)->setTarget(request->target_bytes());
  if (!set.ok()) return toGrpcStatus(set);
  fillBalloonInfo((*balloon)->info(), response);
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::GetBalloon(grpc::ServerContext*,
                                        const flotilla::v1::GetBalloonRequest*,
                                        flotilla::v1::BalloonInfo* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  auto balloon = balloonOf(*vm);
  if (!balloon.ok()) return toGrpcStatus(balloon.status());
  fillBalloonInfo((*balloon)->info(), response);
  // Ask for fresh statistics for the next call.
  (*balloon)->requestStats();
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::SetLink(grpc::ServerContext*,
                                     const flotilla::v1::SetLinkRequest* request,
                                     flotilla::v1::SetLinkResponse*) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  auto nic = findDevice(vm->virtio().nics(), "net", request->nic());
  if (!nic.ok()) return toGrpcStatus(nic.status());
  (*nic)->setLinkUp(request->up());
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Announce(grpc::ServerContext*, const flotilla::v1::AnnounceRequest*,
                                      flotilla::v1::AnnounceResponse* response) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  auto asked = vm->virtio().announceNics();
  if (!asked.ok()) return toGrpcStatus(asked.status());
  response->set_nics(static_cast<uint32_t>(vm->virtio().nics().size()));
  response->set_guest_asked(*asked);
  return grpc::Status::OK;
}

VmmServiceImpl::~VmmServiceImpl() {
  {
    absl::MutexLock lock(&migration_mu_);
    if (sender_ != nullptr) sender_->cancel();
  }
  if (migration_thread_.joinable()) migration_thread_.join();
}

void VmmServiceImpl::attachVm(Vm& vm) {
  absl::MutexLock lock(&migration_mu_);
  migration_source_ = std::make_unique<VmMigrationSource>(vm);
  vm_.store(&vm, std::memory_order_release);
}

void VmmServiceImpl::followIncoming(std::shared_ptr<const migration::MigrationReceiver> receiver) {
  absl::MutexLock lock(&migration_mu_);
  receiver_ = std::move(receiver);
}

void VmmServiceImpl::incomingEnded() {
  absl::MutexLock lock(&migration_mu_);
  if (receiver_ == nullptr) return;
  incoming_result_ = receiver_->stats();
  receiver_ = nullptr;
}

Vm* VmmServiceImpl::attachedVm() const {
  return vm_.load(std::memory_order_acquire);
}

grpc::Status VmmServiceImpl::notArrivedYet() {
  return toGrpcStatus(absl::FailedPreconditionError(
      "the VM is still arriving by live migration (MigrateStatus follows it): try again once it "
      "runs here"));
}

grpc::Status VmmServiceImpl::MigrateSend(grpc::ServerContext*,
                                         const flotilla::v1::MigrateSendRequest* request,
                                         flotilla::v1::MigrateSendResponse*) {
  Vm* vm = attachedVm();
  if (vm == nullptr) return notArrivedYet();
  if (request->address().empty() || request->token().empty()) {
    return toGrpcStatus(absl::InvalidArgumentError(
        "a migration needs the target's address (HOST:PORT) and its one-time token"));
  }
  if (request->streams() > migration::kMaxStreams) {
    return toGrpcStatus(
        absl::InvalidArgumentError(fmt::format("streams {}: a migration uses 1 to {} TCP streams",
                                               request->streams(), migration::kMaxStreams)));
  }
  if (vm->runState() != Vm::RunState::kRunning && vm->runState() != Vm::RunState::kPaused) {
    return toGrpcStatus(absl::FailedPreconditionError("the VM is not running: nothing to migrate"));
  }
  migration::SendOptions options;
  options.token = request->token();
  if (request->downtime_limit_ms() > 0) {
    options.downtime_limit = absl::Milliseconds(request->downtime_limit_ms());
  }
  options.bandwidth_limit = request->bandwidth_limit_bytes();
  if (request->max_rounds() > 0) options.max_rounds = static_cast<int>(request->max_rounds());
  if (request->timeout_s() > 0) options.timeout = absl::Seconds(request->timeout_s());
  options.auto_converge = request->auto_converge();
  options.force_switchover = request->force_switchover();
  options.cold = request->cold();
  options.streams = std::max<uint32_t>(request->streams(), 1);
  options.with_disks = request->with_disks();
  if (options.with_disks && !options.cold) {
    return toGrpcStatus(absl::InvalidArgumentError(
        "with_disks needs cold: disks move only while the guest is paused"));
  }
  if (!request->compression().empty()) {
    auto compression = migration::parseCompression(request->compression());
    if (!compression.ok()) return toGrpcStatus(compression.status());
    options.compression = *compression;
  }

  {
    absl::MutexLock lock(&migration_mu_);
    if (migrating_) {
      return toGrpcStatus(absl::AlreadyExistsError(
          "a migration of this VM is already in progress (MigrateStatus follows it, "
          "MigrateCancel stops it)"));
    }
    migrating_ = true;  // reserved while connecting, without holding the lock
    sender_ = nullptr;
  }
  // Connect before answering, so that an unreachable target is the caller's error.
  auto fd = migration::connectTo(request->address(), kConnectTimeout);
  absl::MutexLock lock(&migration_mu_);
  if (!fd.ok()) {
    migrating_ = false;
    return toGrpcStatus(fd.status());
  }
  auto sender = std::make_shared<migration::MigrationSender>(*migration_source_, options);
  sender_ = sender;
  if (migration_thread_.joinable()) migration_thread_.join();  // the last one, finished
  migration_thread_ =
      std::jthread([this, vm, sender, fd = std::make_shared<UniqueFd>(std::move(*fd)),
                    address = request->address(), options] {
        setCurrentThreadName("migration");
        migration::Connection connection(std::move(*fd), "migration target " + address,
                                         options.io_timeout);
        // The data streams go to the same address, each its own connection.
        const migration::StreamConnector connect_stream =
            [&address,
             &options](uint32_t index) -> absl::StatusOr<std::unique_ptr<migration::Connection>> {
          ASSIGN_OR_RETURN(UniqueFd stream, migration::connectTo(address, kConnectTimeout));
          return std::make_unique<migration::Connection>(
              std::move(stream), fmt::format("migration target {} (stream {})", address, index),
              options.io_timeout);
        };
        const absl::Status status = sender->run(connection, connect_stream);
        if (status.ok()) {
          // The guest runs on the target: this VMM ends (its vCPUs and devices stay paused).
          vm->endVm({VmEnd::Reason::kMigrated, kExitOk, "migrated to " + address});
        }
        absl::MutexLock done(&migration_mu_);
        migrating_ = false;
      });
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::MigrateStatus(grpc::ServerContext*,
                                           const flotilla::v1::MigrateStatusRequest*,
                                           flotilla::v1::MigrationStatus* response) {
  std::shared_ptr<migration::MigrationSender> sender;
  std::shared_ptr<const migration::MigrationReceiver> receiver;
  std::optional<migration::ReceiverStats> incoming;
  {
    absl::MutexLock lock(&migration_mu_);
    sender = sender_;
    receiver = receiver_;
    incoming = incoming_result_;
  }
  if (sender == nullptr) {
    // The migration that brought the VM here (while it arrives, or its end), if any.
    if (receiver != nullptr) incoming = receiver->stats();
    if (!incoming) {
      response->set_phase("idle");
      return grpc::Status::OK;
    }
    response->set_role("target");
    response->set_phase(migration::receiverPhaseName(incoming->state));
    response->set_round(incoming->rounds);
    response->set_zero_pages(incoming->zero_pages);
    response->set_streams(incoming->streams);
    response->set_bytes_received(incoming->bytes_received);
    response->set_pages_received(incoming->pages);
    response->set_disk_bytes(incoming->disk_bytes);
    response->set_error(incoming->error);
    return grpc::Status::OK;
  }
  const migration::MigrationStats stats = sender->stats();
  response->set_role("source");
  response->set_phase(migration::phaseName(stats.phase));
  response->set_round(stats.round);
  response->set_bytes_sent(stats.bytes_sent);
  response->set_pages_sent(stats.pages_sent);
  response->set_zero_pages(stats.zero_pages);
  response->set_remaining_bytes(stats.remaining_bytes);
  response->set_dirty_rate_bytes(stats.dirty_rate);
  response->set_bandwidth_bytes(stats.bandwidth);
  response->set_predicted_downtime_us(
      static_cast<uint64_t>(absl::ToInt64Microseconds(stats.predicted_downtime)));
  response->set_downtime_us(static_cast<uint64_t>(absl::ToInt64Microseconds(stats.downtime)));
  response->set_total_time_us(static_cast<uint64_t>(absl::ToInt64Microseconds(stats.total_time)));
  response->set_throttle_percent(static_cast<uint32_t>(stats.throttle_percent));
  response->set_error(stats.error);
  response->set_compressed_batches(stats.compressed_batches);
  response->set_streams(stats.streams);
  response->set_disk_bytes(stats.disk_bytes);
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::MigrateCancel(grpc::ServerContext*,
                                           const flotilla::v1::MigrateCancelRequest*,
                                           flotilla::v1::MigrateCancelResponse* response) {
  absl::MutexLock lock(&migration_mu_);
  if (!migrating_ || sender_ == nullptr) {
    response->set_cancelled(false);
    return grpc::Status::OK;
  }
  response->set_cancelled(sender_->cancel());
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> serveOnUnixSocket(const std::string& path,
                                                                grpc::Service* service) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) {
      return absl::AlreadyExistsError(
          fmt::format("API socket path {} exists and is not a socket: choose another path", path));
    }
    ::unlink(path.c_str());
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::UnavailableError(fmt::format(
        "cannot serve the API on {}: check that its directory exists and is writable", path));
  }
  return server;
}

}  // namespace flotilla::vmm
