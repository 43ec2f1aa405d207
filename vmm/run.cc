// flotilla-vmm (see run.h).
#include "vmm/run.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "common/files.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "migration/receiver.h"
#include "vmm/api/vmm_service.h"
#include "vmm/exit_codes.h"
#include "vmm/migration_endpoints.h"
#include "vmm/options.h"
#include "vmm/state/snapshot.h"
#include "vmm/vm.h"

namespace flotilla::vmm {
namespace {

// One line on standard error for a problem that stops the VMM, and its exit status.
int fail(const absl::Status& status, int fallback) {
  std::fprintf(stderr, "flotilla-vmm: error: %s\n", std::string(status.message()).c_str());
  return exitCodeOf(status, fallback);
}

// --incoming: waits for the migration source on options.incoming (until a termination
// signal, which are blocked here: they are polled for), receives the VM and runs it.
// `service` follows the migration for MigrateStatus.
absl::StatusOr<std::unique_ptr<Vm>> receiveVm(const VmmOptions& options,
                                              const sigset_t& termination,
                                              VmmServiceImpl& service) {
  const Logger log("vmm");
  constexpr absl::Duration kIoTimeout = absl::Seconds(30);
  auto listener = migration::listenOn(options.incoming);
  if (!listener.ok()) return withExitCode(listener.status(), kExitUsage);
  VmMigrationTarget target(options.vm);
  auto receiver = std::make_shared<migration::MigrationReceiver>(
      target, migration::ReceiveOptions{.token = options.migration_token});
  service.followIncoming(receiver);
  log.info("waiting for an incoming migration on {} (port {})", options.incoming, listener->port);
  std::string peer;
  UniqueFd connection_fd;
  while (!connection_fd.valid()) {
    auto accepted = migration::acceptOne(listener->fd.get(), absl::Milliseconds(200), &peer);
    if (accepted.ok()) {
      connection_fd = std::move(*accepted);
      break;
    }
    if (!absl::IsDeadlineExceeded(accepted.status())) {
      return withExitCode(accepted.status(), kExitMigrationFailed);
    }
    const timespec no_wait{};
    if (const int sig = ::sigtimedwait(&termination, nullptr, &no_wait); sig > 0) {
      return withExitCode(
          absl::CancelledError(fmt::format("received signal {} ({}) while waiting for the "
                                           "migration source",
                                           sig, sigabbrev_np(sig))),
          kExitOk);
    }
  }
  migration::Connection connection(std::move(connection_fd), "migration source " + peer,
                                   kIoTimeout);
  // The data streams, if the source asks for them, come to the same port; it closes once
  // they joined (one source, once).
  ListenerStreamAcceptor streams(std::move(listener->fd), kIoTimeout);
  const absl::Status received = receiver->run(connection, &streams);
  service.incomingEnded();
  if (!received.ok()) return withExitCode(received, kExitMigrationFailed);
  std::unique_ptr<Vm> vm = target.takeVm();
  if (vm == nullptr) return absl::InternalError("the migration ended without a running VM");
  return vm;
}

// The API server on its unix socket; shut down (letting a call in progress return) and its
// socket removed when it goes.
struct ApiServer {
  std::unique_ptr<grpc::Server> server;
  std::string path;

  ~ApiServer() {
    if (server == nullptr) return;
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    ::unlink(path.c_str());
  }
};

absl::StatusOr<std::unique_ptr<Vm>> buildVm(const VmmOptions& options) {
  if (options.restore.empty()) return Vm::create(options.vm);
  auto state = readSnapshotState(options.restore);
  if (!state.ok()) return withExitCode(state.status(), kExitBadSnapshot);
  auto memory = readSnapshotMemory(options.restore, *state);
  if (!memory.ok()) return withExitCode(memory.status(), kExitBadSnapshot);
  return Vm::restore(options.vm, std::move(*memory), *state);
}

// The final status of the outgoing migration that ended the VM, for --migration-status.
void writeMigrationStatus(VmmServiceImpl& service, const std::string& path) {
  flotilla::v1::MigrationStatus status;
  (void)service.MigrateStatus(nullptr, nullptr, &status);
  if (absl::Status written = writeFileAtomically(path, status.SerializeAsString()); !written.ok()) {
    Logger("vmm").warn("cannot keep the migration's final status: {}", written.message());
  }
}

}  // namespace

int runVmm(int argc, const char* const* argv) {
  auto options = parseVmmOptions(argc, argv);
  if (!options.ok()) return fail(options.status(), kExitUsage);
  if (options->help) {
    std::fputs(options->help_text.c_str(), stdout);
    return kExitOk;
  }
  if (absl::Status logging = initLogging(options->log); !logging.ok()) {
    return fail(logging, kExitUsage);
  }

  // Termination signals are taken by one thread (below), never by vCPU or gRPC threads:
  // block them before any thread exists, so that every thread inherits the mask.
  sigset_t termination;
  sigemptyset(&termination);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&termination, sig);
  pthread_sigmask(SIG_BLOCK, &termination, nullptr);

  const bool incoming = !options->incoming.empty();
  // Declared in this order so that they go in the reverse one: the API stops answering, then
  // the service (and a migration it runs) ends, then the VM goes.
  std::unique_ptr<Vm> vm;
  VmmServiceImpl service;
  ApiServer api;
  auto serve = [&]() -> absl::Status {
    if (options->api_socket.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(api.server, serveOnUnixSocket(options->api_socket, &service));
    api.path = options->api_socket;
    return absl::OkStatus();
  };
  if (incoming) {
    // Served while the VM arrives, for MigrateStatus.
    if (absl::Status served = serve(); !served.ok()) return fail(served, kExitUsage);
    auto received = receiveVm(*options, termination, service);
    if (!received.ok()) return fail(received.status(), kExitInternalError);
    vm = std::move(*received);
    service.attachVm(*vm);
  } else {
    auto built = buildVm(*options);
    if (!built.ok()) return fail(built.status(), kExitInternalError);
    vm = std::move(*built);
    service.attachVm(*vm);
    if (absl::Status served = serve(); !served.ok()) return fail(served, kExitUsage);
  }
  // A migrated VM already runs (the receiver started it on the source's go).
  if (absl::Status started = incoming ? absl::OkStatus() : vm->start(); !started.ok()) {
    return fail(started, kExitInternalError);
  }

  // SIGTERM, SIGINT or SIGHUP: stop the VM at once (a graceful shutdown goes through the API).
  std::atomic<bool> ending{false};
  std::thread signals([&] {
    setCurrentThreadName("signals");
    int sig = 0;
    sigwait(&termination, &sig);
    if (ending.load()) return;
    Logger("vmm").info("received signal {} ({}): stopping the VM", sig, sigabbrev_np(sig));
    vm->endVm({VmEnd::Reason::kShutdown, kExitOk, fmt::format("signal {}", sig)});
  });

  VmEnd end = vm->waitForEnd();
  ending.store(true);
  if (end.reason == VmEnd::Reason::kMigrated && !options->migration_status.empty()) {
    writeMigrationStatus(service, options->migration_status);
  }
  pthread_kill(signals.native_handle(), SIGTERM);  // wakes sigwait if no signal came
  signals.join();
  // `api` lets a Shutdown call in progress return before the process exits.
  return end.exit_status;
}

}  // namespace flotilla::vmm
