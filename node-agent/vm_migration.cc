// VmManager's migration endpoints: PrepareIncoming on the target, StartMigration and
// GetMigration on the source, Finish and Abort on both (see vm_manager.h, docs/agent.md).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "absl/strings/numbers.h"
#include "common/rpc/channel.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "fmt/format.h"
#include "grpcpp/client_context.h"
#include "node-agent/vm_disks.h"
#include "node-agent/vm_entry.h"
#include "node-agent/vm_manager.h"

namespace flotilla::agent {

using flotilla::v1::AgentVm;
using flotilla::v1::AgentVmRecord;
using flotilla::v1::VmState;
using flotilla::v1::VmState_Name;

namespace {

// How long a source VMM may take to exit after its migration completed.
constexpr absl::Duration kExitAfterMigration = absl::Seconds(5);

absl::StatusOr<std::string> randomToken() {
  uint8_t bytes[16];
  size_t done = 0;
  while (done < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + done, sizeof(bytes) - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, "getrandom for a migration token");
    done += static_cast<size_t>(n);
  }
  std::string token;
  for (uint8_t byte : bytes) token += fmt::format("{:02x}", byte);
  return token;
}

// Whether `port` on `address` can be bound now (a later bind may still lose the race; the
// VMM then fails to listen and the prepare fails with its log).
bool isTcpPortFree(const std::string& address, uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) return false;
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

absl::StatusOr<uint16_t> VmManager::pickMigrationPort() {
  std::set<uint32_t> taken;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : vms_) {
      absl::MutexLock entry_lock(&entry->mu);
      const std::string& address = entry->record.incoming_address();
      size_t colon = address.rfind(':');
      uint32_t port = 0;
      if (colon != std::string::npos && absl::SimpleAtoi(address.substr(colon + 1), &port)) {
        taken.insert(port);
      }
    }
  }
  for (uint32_t port = options_.migration_port_first; port <= options_.migration_port_last;
       ++port) {
    if (!taken.contains(port) &&
        isTcpPortFree(options_.migration_address, static_cast<uint16_t>(port))) {
      return static_cast<uint16_t>(port);
    }
  }
  return absl::ResourceExhaustedError(fmt::format(
      "no free migration port in {}-{} on {}: too many migrations at once into this host",
      options_.migration_port_first, options_.migration_port_last, options_.migration_address));
}

absl::Status VmManager::prepareOutgoing(std::string_view name) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(name));
  absl::MutexLock op(&entry->op_mu);
  const AgentVm vm = entry->snapshot();
  if (vm.incoming()) {
    return absl::FailedPreconditionError(fmt::format(
        "VM '{}' here is the target of a migration, not its source: finish or abort that first",
        name));
  }
  RETURN_IF_ERROR(runDiskEvent(storage_, vm, DiskEvent::kPrepareOutgoing));
  return absl::OkStatus();
}

absl::StatusOr<flotilla::v1::PrepareIncomingResponse> VmManager::prepareIncoming(
    const flotilla::v1::PrepareIncomingRequest& request) {
  auto entry = std::make_shared<Entry>();
  absl::MutexLock op(&entry->op_mu);
  {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(request.name());
    if (it != vms_.end()) {
      return absl::AlreadyExistsError(fmt::format(
          "VM '{}' already exists on this host: a migration target must not hold it (abort the "
          "earlier migration, or delete the VM here)",
          request.name()));
    }
    vms_[request.name()] = entry;
  }
  auto fail = [&](absl::Status status) {
    absl::MutexLock lock(&mu_);
    vms_.erase(request.name());
    return status;
  };
  absl::StatusOr<AgentVmRecord> record =
      newRecord(request.name(), request.uid(), request.spec(), request.networks(), request.macs(),
                request.generation());
  if (!record.ok()) return fail(record.status());
  std::string address;
  {
    absl::MutexLock ports(&port_mu_);
    absl::StatusOr<uint16_t> port = pickMigrationPort();
    if (!port.ok()) return fail(port.status());
    address = fmt::format("{}:{}", options_.migration_address, *port);
    absl::MutexLock lock(&entry->mu);
    entry->record.set_incoming_address(address);  // taken, for the next pickMigrationPort
  }
  record->set_incoming_address(address);
  record->mutable_vm()->set_incoming(true);
  setState(*record, VmState::VM_STATE_MIGRATING, "waiting for the migration");
  if (absl::Status status = provision(*record); !status.ok()) return fail(status);
  if (absl::Status status = store_.save(*record); !status.ok()) {
    unprovision(*record);
    return fail(status);
  }
  {
    absl::MutexLock lock(&entry->mu);
    entry->record = *record;
  }
  absl::StatusOr<std::string> token = randomToken();
  absl::Status started = token.status();
  if (started.ok()) started = launch(*entry, "tcp:" + address, *token);
  if (!started.ok()) {
    unprovision(*record);
    (void)store_.remove(request.name());
    return fail(started);
  }
  log_.with("vm", request.name()).info("waiting for its migration on {}", address);
  flotilla::v1::PrepareIncomingResponse response;
  response.set_address(address);
  response.set_token(*token);
  return response;
}

absl::Status VmManager::startMigration(const flotilla::v1::StartMigrationRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(request.name()));
  absl::MutexLock op(&entry->op_mu);
  std::string api_socket;
  {
    absl::MutexLock lock(&entry->mu);
    if (!entry->running() || entry->record.vm().incoming()) {
      return absl::FailedPreconditionError(
          fmt::format("VM '{}' is not running here (state {}): nothing to migrate", request.name(),
                      VmState_Name(entry->record.vm().state())));
    }
    api_socket = entry->record.api_socket();
  }
  flotilla::v1::MigrateSendRequest send = request.options();
  send.set_address(request.address());
  send.set_token(request.token());
  auto stub = vmmStub(api_socket);
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(15)));
  flotilla::v1::MigrateSendResponse response;
  grpc::Status status = stub->MigrateSend(&context, send, &response);
  if (!status.ok()) {
    return fromGrpcStatus(status,
                          fmt::format("VM '{}': the VMM refused the migration", request.name()));
  }
  absl::MutexLock lock(&entry->mu);
  entry->migrating_out = true;
  entry->last_migration.Clear();
  entry->last_migration.set_phase("setup");
  setState(entry->record, VmState::VM_STATE_MIGRATING, "migrating to " + request.address());
  log_.with("vm", request.name()).info("migrating to {}", request.address());
  return store_.save(entry->record);
}

absl::StatusOr<flotilla::v1::MigrationStatus> VmManager::migrationStatus(std::string_view name) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(name));
  std::string api_socket;
  {
    absl::MutexLock lock(&entry->mu);
    if (!entry->running()) return entry->last_migration;
    api_socket = entry->record.api_socket();
  }
  auto stub = vmmStub(api_socket);
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(5)));
  flotilla::v1::MigrationStatus status;
  grpc::Status rpc = stub->MigrateStatus(&context, flotilla::v1::MigrateStatusRequest(), &status);
  if (!rpc.ok()) {
    // The source VMM exits right after a migration, and its API goes first: the exit, not
    // the RPC, tells.
    waitForExit(*entry, kExitAfterMigration);
    absl::MutexLock lock(&entry->mu);
    if (!entry->running()) return entry->last_migration;
    return fromGrpcStatus(rpc, fmt::format("VM '{}': migration status", name));
  }
  absl::MutexLock lock(&entry->mu);
  entry->last_migration = status;
  return status;
}

absl::StatusOr<AgentVm> VmManager::finishMigration(std::string_view name,
                                                   flotilla::v1::MigrationEndRequest::Role role) {
  std::shared_ptr<Entry> entry = find(name);
  if (entry == nullptr) {
    AgentVm gone;
    gone.set_name(std::string(name));
    gone.set_state(VmState::VM_STATE_STOPPED);
    gone.set_message("not on this host");
    return gone;  // finished before: idempotent
  }
  absl::MutexLock op(&entry->op_mu);
  if (role == flotilla::v1::MigrationEndRequest::ROLE_TARGET) {
    if (const AgentVm vm = entry->snapshot(); vm.incoming()) {
      RETURN_IF_ERROR(runDiskEvent(storage_, vm, DiskEvent::kFinishTarget));
    }
    absl::MutexLock lock(&entry->mu);
    if (!entry->record.vm().incoming()) return entry->record.vm();
    if (!entry->running()) {
      return absl::FailedPreconditionError(
          fmt::format("VM '{}': the target VMM is not running ({}): abort the migration", name,
                      entry->record.vm().message()));
    }
    entry->record.mutable_vm()->set_incoming(false);
    entry->record.set_incoming_address("");
    entry->record.set_want_running(true);
    setState(entry->record, VmState::VM_STATE_RUNNING, "");
    RETURN_IF_ERROR(store_.save(entry->record));
    log_.with("vm", name).info("migrated in");
    return entry->record.vm();
  }
  if (role != flotilla::v1::MigrationEndRequest::ROLE_SOURCE) {
    return absl::InvalidArgumentError("FinishMigration: role must be ROLE_SOURCE or ROLE_TARGET");
  }
  bool completed = false;
  {
    absl::MutexLock lock(&entry->mu);
    completed = entry->last_migration.phase() == "completed";
  }
  // A source VMM that reported `completed` exits at once; let it.
  if (completed) waitForExit(*entry, kExitAfterMigration);
  AgentVmRecord record;
  {
    absl::MutexLock lock(&entry->mu);
    if (entry->running()) {
      return absl::FailedPreconditionError(fmt::format(
          "VM '{}': the source VMM still runs (migration phase '{}'): finish the migration only "
          "after it completed",
          name, entry->last_migration.phase()));
    }
    if (!entry->migrating_out && entry->record.vm().state() != VmState::VM_STATE_STOPPED) {
      return absl::FailedPreconditionError(
          fmt::format("VM '{}' did not migrate away from this host", name));
    }
    record = entry->record;
  }
  RETURN_IF_ERROR(runDiskEvent(storage_, record.vm(), DiskEvent::kFinishSource));
  RETURN_IF_ERROR(forget(record));
  log_.with("vm", name).info("migrated away; removed");
  setState(record, VmState::VM_STATE_STOPPED, "migrated away");
  return record.vm();
}

absl::StatusOr<AgentVm> VmManager::abortMigration(std::string_view name,
                                                  flotilla::v1::MigrationEndRequest::Role role) {
  std::shared_ptr<Entry> entry = find(name);
  if (entry == nullptr) {
    AgentVm gone;
    gone.set_name(std::string(name));
    gone.set_message("not on this host");
    return gone;
  }
  absl::MutexLock op(&entry->op_mu);
  if (role == flotilla::v1::MigrationEndRequest::ROLE_TARGET) {
    AgentVmRecord record;
    {
      absl::MutexLock lock(&entry->mu);
      if (!entry->record.vm().incoming()) {
        return absl::FailedPreconditionError(fmt::format(
            "VM '{}' here is not the target of a migration (it was finished): stop or delete it "
            "instead",
            name));
      }
    }
    RETURN_IF_ERROR(stopLocked(*entry, absl::ZeroDuration()));
    {
      absl::MutexLock lock(&entry->mu);
      record = entry->record;
    }
    RETURN_IF_ERROR(runDiskEvent(storage_, record.vm(), DiskEvent::kAbortTarget));
    RETURN_IF_ERROR(forget(record));
    log_.with("vm", name).info("incoming migration aborted; removed");
    setState(record, VmState::VM_STATE_STOPPED, "migration aborted");
    return record.vm();
  }
  if (role != flotilla::v1::MigrationEndRequest::ROLE_SOURCE) {
    return absl::InvalidArgumentError("AbortMigration: role must be ROLE_SOURCE or ROLE_TARGET");
  }
  std::string api_socket;
  {
    absl::MutexLock lock(&entry->mu);
    if (!entry->running()) {
      return absl::FailedPreconditionError(fmt::format(
          "VM '{}': the source VMM is gone ({}); if it migrated, finish the migration instead",
          name, entry->record.vm().message()));
    }
    api_socket = entry->record.api_socket();
  }
  auto stub = vmmStub(api_socket);
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(30)));
  flotilla::v1::MigrateCancelResponse response;
  grpc::Status rpc = stub->MigrateCancel(&context, flotilla::v1::MigrateCancelRequest(), &response);
  if (!rpc.ok()) return fromGrpcStatus(rpc, fmt::format("VM '{}': cancelling its migration", name));
  RETURN_IF_ERROR(runDiskEvent(storage_, entry->snapshot(), DiskEvent::kAbortSource));
  absl::MutexLock lock(&entry->mu);
  entry->migrating_out = false;
  setState(entry->record, VmState::VM_STATE_RUNNING, "migration aborted");
  RETURN_IF_ERROR(store_.save(entry->record));
  return entry->record.vm();
}

}  // namespace flotilla::agent
