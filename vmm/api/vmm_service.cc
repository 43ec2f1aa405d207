// VmmService (see vmm_service.h).
#include "vmm/api/vmm_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/rpc/status.h"
#include "fmt/format.h"
#include "grpcpp/server_builder.h"
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

uint64_t microsSince(absl::Duration start) {
  return static_cast<uint64_t>(absl::ToInt64Microseconds(systemClock().monotonicNow() - start));
}

}  // namespace

grpc::Status VmmServiceImpl::GetInfo(grpc::ServerContext*, const flotilla::v1::GetInfoRequest*,
                                     flotilla::v1::VmmInfo* info) {
  const VmConfig& config = vm_.config();
  Vm::RunState state = vm_.runState();
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
  std::vector<VcpuCounters> counters = vm_.vcpuCounters();
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
        static_cast<uint64_t>(absl::ToInt64Milliseconds(systemClock().now() - vm_.startedAt())));
  }
  info->set_pid(static_cast<uint32_t>(::getpid()));
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Health(grpc::ServerContext*, const flotilla::v1::HealthRequest*,
                                    flotilla::v1::HealthResponse* response) {
  Vm::RunState state = vm_.runState();
  response->set_status(state == Vm::RunState::kRunning || state == Vm::RunState::kPaused
                           ? flotilla::v1::HealthResponse::SERVING
                           : flotilla::v1::HealthResponse::NOT_SERVING);
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Pause(grpc::ServerContext*, const flotilla::v1::PauseRequest*,
                                   flotilla::v1::PauseResponse* response) {
  absl::Duration start = systemClock().monotonicNow();
  absl::Status status = vm_.pause();
  response->set_pause_us(microsSince(start));
  return toGrpcStatus(status);
}

grpc::Status VmmServiceImpl::Resume(grpc::ServerContext*, const flotilla::v1::ResumeRequest*,
                                    flotilla::v1::ResumeResponse*) {
  return toGrpcStatus(vm_.resume());
}

grpc::Status VmmServiceImpl::Shutdown(grpc::ServerContext*,
                                      const flotilla::v1::ShutdownRequest* request,
                                      flotilla::v1::ShutdownResponse*) {
  vm_.shutdown(absl::Milliseconds(request->graceful_timeout_ms()));
  return grpc::Status::OK;
}

grpc::Status VmmServiceImpl::Snapshot(grpc::ServerContext*,
                                      const flotilla::v1::SnapshotRequest* request,
                                      flotilla::v1::SnapshotResponse* response) {
  if (request->directory().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "no snapshot directory given: set `directory`");
  }
  absl::MutexLock lock(&snapshot_mu_);
  const bool was_running = vm_.runState() == Vm::RunState::kRunning;
  absl::Duration start = systemClock().monotonicNow();
  absl::Status status = vm_.pause();
  if (!status.ok()) return toGrpcStatus(annotate(status, "cannot snapshot"));
  absl::StatusOr<SnapshotStats> stats;
  absl::StatusOr<flotilla::v1::VmSnapshot> state = vm_.saveState();
  if (state.ok()) {
    stats = writeSnapshot(request->directory(), *state, vm_.memory());
  } else {
    stats = state.status();
  }
  if (was_running) status = vm_.resume();
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
