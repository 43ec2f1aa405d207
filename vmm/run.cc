// flotilla-vmm (see run.h).
#include "vmm/run.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "common/log.h"
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
absl::StatusOr<std::unique_ptr<Vm>> receiveVm(const VmmOptions& options,
                                              const sigset_t& termination) {
  const Logger log("vmm");
  auto listener = migration::listenOn(options.incoming);
  if (!listener.ok()) return withExitCode(listener.status(), kExitUsage);
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
  listener->fd.reset();  // one source, once
  migration::Connection connection(std::move(connection_fd), "migration source " + peer,
                                   absl::Seconds(30));
  VmMigrationTarget target(options.vm);
  migration::MigrationReceiver receiver(target, {.token = options.migration_token});
  if (absl::Status received = receiver.run(connection); !received.ok()) {
    return withExitCode(received, kExitMigrationFailed);
  }
  std::unique_ptr<Vm> vm = target.takeVm();
  if (vm == nullptr) return absl::InternalError("the migration ended without a running VM");
  return vm;
}

absl::StatusOr<std::unique_ptr<Vm>> buildVm(const VmmOptions& options) {
  if (options.restore.empty()) return Vm::create(options.vm);
  auto state = readSnapshotState(options.restore);
  if (!state.ok()) return withExitCode(state.status(), kExitBadSnapshot);
  auto memory = readSnapshotMemory(options.restore, *state);
  if (!memory.ok()) return withExitCode(memory.status(), kExitBadSnapshot);
  return Vm::restore(options.vm, std::move(*memory), *state);
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
  auto vm = incoming ? receiveVm(*options, termination) : buildVm(*options);
  if (!vm.ok()) return fail(vm.status(), kExitInternalError);

  VmmServiceImpl service(**vm);
  std::unique_ptr<grpc::Server> server;
  if (!options->api_socket.empty()) {
    auto served = serveOnUnixSocket(options->api_socket, &service);
    if (!served.ok()) return fail(served.status(), kExitUsage);
    server = std::move(*served);
  }
  // A migrated VM already runs (the receiver started it on the source's go).
  if (absl::Status started = incoming ? absl::OkStatus() : (*vm)->start(); !started.ok()) {
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
    (*vm)->endVm({VmEnd::Reason::kShutdown, kExitOk, fmt::format("signal {}", sig)});
  });

  VmEnd end = (*vm)->waitForEnd();
  ending.store(true);
  pthread_kill(signals.native_handle(), SIGTERM);  // wakes sigwait if no signal came
  signals.join();
  if (server) {
    // Lets a Shutdown call in progress return before the process exits.
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    ::unlink(options->api_socket.c_str());
  }
  return end.exit_status;
}

}  // namespace flotilla::vmm
