// The agent's VMs: lifecycle, supervision, re-attach and migration endpoints (see
// vm_manager.h).
#include "node-agent/vm_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/match.h"
#include "common/files.h"
#include "common/process.h"
#include "common/rpc/channel.h"
#include "common/rpc/status.h"
#include "common/status.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "fmt/format.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "node-agent/host/host_info.h"
#include "node-agent/names.h"
#include "node-agent/vm_disks.h"
#include "node-agent/vm_entry.h"
#include "node-agent/vmm_command.h"

namespace flotilla::agent {

using flotilla::v1::AgentVm;
using flotilla::v1::AgentVmRecord;
using flotilla::v1::VmState;

namespace {

constexpr uint32_t kMaxConsoleChunk = 1 << 20;

// The final status the source VMM wrote at `path` before it exited, or `last` (what the agent
// polled last) marked completed when there is none.
flotilla::v1::MigrationStatus finalMigrationStatus(const std::string& path,
                                                   flotilla::v1::MigrationStatus last) {
  auto data = readFileToString(path, size_t{1} << 20, "the VMM's final migration status");
  flotilla::v1::MigrationStatus final_status;
  if (data.ok() && final_status.ParseFromString(*data) && final_status.phase() == "completed") {
    return final_status;
  }
  last.set_phase("completed");
  return last;
}

// Whether the pidfd says the process exited, waiting up to `timeout`.
bool waitPidfd(int pidfd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    pollfd entry{.fd = pidfd, .events = POLLIN, .revents = 0};
    const int64_t left = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
    int rc = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

absl::Status vmNotFound(std::string_view name) {
  return absl::NotFoundError(fmt::format("VM '{}' is not on this host", name));
}

std::unique_ptr<flotilla::v1::VmmService::Stub> vmmStub(const std::string& api_socket) {
  return flotilla::v1::VmmService::NewStub(
      grpc::CreateChannel("unix:" + api_socket, grpc::InsecureChannelCredentials()));
}

int sendSignal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

std::string tail(const std::string& path, size_t bytes) {
  auto text = readFileToString(path);
  if (!text.ok()) return "";
  return text->size() > bytes ? text->substr(text->size() - bytes) : *text;
}

void setState(AgentVmRecord& record, VmState state, std::string message) {
  record.mutable_vm()->set_state(state);
  record.mutable_vm()->set_message(std::move(message));
}

absl::StatusOr<std::unique_ptr<VmManager>> VmManager::create(VmManagerOptions options,
                                                             VmNetwork& network, VmStorage& storage,
                                                             VmCgroups& cgroups) {
  ASSIGN_OR_RETURN(VmRecordStore store, VmRecordStore::open(options.state_dir + "/vms"));
  ASSIGN_OR_RETURN(std::vector<AgentVmRecord> records, store.loadAll());
  ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, EventLoop::create("vmm-watch"));
  std::unique_ptr<VmManager> manager(new VmManager(std::move(options), network, storage, cgroups,
                                                   std::move(store), std::move(loop)));
  for (const AgentVmRecord& record : records) {
    RETURN_IF_ERROR(manager->reattach(record));
  }
  manager->loop_->start();
  return manager;
}

VmManager::VmManager(VmManagerOptions options, VmNetwork& network, VmStorage& storage,
                     VmCgroups& cgroups, VmRecordStore store, std::unique_ptr<EventLoop> loop)
    : options_(std::move(options)),
      network_(network),
      storage_(storage),
      cgroups_(cgroups),
      store_(std::move(store)),
      log_("agent.vms"),
      loop_(std::move(loop)) {}

VmManager::~VmManager() {
  loop_->stop();
}

std::string VmManager::vmDir(std::string_view name) const {
  return fmt::format("{}/vms/{}", options_.run_dir, name);
}

std::string VmManager::migrationStatusPath(std::string_view name) const {
  return vmDir(name) + "/migration.status";
}

std::shared_ptr<VmManager::Entry> VmManager::find(std::string_view name) {
  absl::MutexLock lock(&mu_);
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<VmManager::Entry>> VmManager::lookup(std::string_view name) {
  std::shared_ptr<Entry> entry = find(name);
  if (entry == nullptr) return vmNotFound(name);
  return entry;
}

absl::Status VmManager::save(Entry& entry) {
  absl::MutexLock lock(&entry.mu);
  return store_.save(entry.record);
}

absl::Status VmManager::reattach(const AgentVmRecord& record) {
  auto entry = std::make_shared<Entry>();
  const std::string& name = record.vm().name();
  const Logger log = log_.with("vm", name);
  {
    absl::MutexLock lock(&entry->mu);
    entry->record = record;
    const pid_t pid = static_cast<pid_t>(record.vmm_pid());
    bool alive = false;
    if (pid > 0) {
      auto same = isSameProcess({.pid = pid, .start_time = record.vmm_start_ticks()});
      alive = same.ok() && *same;
      if (alive) {
        int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (fd < 0) {
          alive = false;
        } else {
          entry->pidfd.reset(fd);
        }
      }
    }
    if (alive) {
      log.info("re-attached to its VMM (pid {})", pid);
    } else if (pid > 0 || record.vm().state() == VmState::VM_STATE_RUNNING ||
               record.vm().state() == VmState::VM_STATE_MIGRATING ||
               record.vm().state() == VmState::VM_STATE_CREATING) {
      const bool meant_to_run = record.want_running() || record.vm().incoming();
      entry->record.set_vmm_pid(0);
      entry->record.mutable_vm()->set_vmm_pid(0);
      entry->record.mutable_vm()->set_last_exit("exited while the agent was not running");
      setState(entry->record, meant_to_run ? VmState::VM_STATE_FAILED : VmState::VM_STATE_STOPPED,
               "the VMM exited while the agent was not running; its log: " + record.log_path());
      log.warn("its VMM (pid {}) exited while the agent was not running", pid);
      RETURN_IF_ERROR(store_.save(entry->record));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    vms_[name] = entry;
  }
  bool watch = false;
  {
    absl::MutexLock lock(&entry->mu);
    watch = entry->running();
  }
  if (watch) watchExit(entry);
  return absl::OkStatus();
}

void VmManager::watchExit(const std::shared_ptr<Entry>& entry) {
  int fd = -1;
  {
    absl::MutexLock lock(&entry->mu);
    fd = entry->pidfd.get();
  }
  std::weak_ptr<Entry> weak = entry;
  auto add = [this, fd, weak] {
    absl::Status added = loop_->add(fd, EPOLLIN, [this, weak](uint32_t) {
      if (auto locked = weak.lock()) onExit(locked);
    });
    if (!added.ok()) log_.error("cannot watch a VMM's pidfd: {}", added.message());
  };
  loop_->post(add);
}

void VmManager::onExit(const std::shared_ptr<Entry>& entry) {
  absl::MutexLock lock(&entry->mu);
  if (!entry->pidfd.valid()) return;
  AgentVmRecord& record = entry->record;
  const pid_t pid = static_cast<pid_t>(record.vmm_pid());
  std::string how = "exited (its status is unknown: an earlier agent process started it)";
  ExitStatus status;
  bool known = false;
  if (entry->own_child) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG) == 0 &&
        info.si_pid == pid) {
      known = true;
      if (info.si_code == CLD_EXITED) {
        status.code = info.si_status;
      } else {
        status.signal = info.si_status;
      }
      how = status.describe();
    }
  }
  loop_->remove(entry->pidfd.get());
  entry->pidfd.reset();
  record.set_vmm_pid(0);
  record.mutable_vm()->set_vmm_pid(0);
  record.mutable_vm()->set_last_exit(how);
  record.set_want_running(false);
  const Logger log = log_.with("vm", record.vm().name());
  if (entry->stopping) {
    setState(record, VmState::VM_STATE_STOPPED, entry->stop_reason);
  } else if (entry->migrating_out && known && status.success()) {
    setState(record, VmState::VM_STATE_STOPPED, "migrated away; FinishMigration removes it here");
    entry->last_migration =
        finalMigrationStatus(migrationStatusPath(record.vm().name()), entry->last_migration);
  } else if (known && status.success()) {
    setState(record, VmState::VM_STATE_STOPPED, "the guest stopped");
  } else {
    setState(record, VmState::VM_STATE_FAILED,
             fmt::format("the VMM {}; the end of its log: {}", how, tail(record.log_path(), 600)));
  }
  log.info("VMM (pid {}) {}: VM {}", pid, how, VmState_Name(record.vm().state()));
  absl::Status saved = store_.save(record);
  if (!saved.ok()) log.error("cannot save its record: {}", saved.message());
}

absl::StatusOr<AgentVmRecord> VmManager::newRecord(
    std::string_view name, std::string_view uid, const flotilla::v1::VmSpec& spec,
    const google::protobuf::RepeatedPtrField<flotilla::v1::NetworkBinding>& networks,
    const google::protobuf::RepeatedPtrField<std::string>& macs, uint64_t generation) {
  RETURN_IF_ERROR(validateVmSpec(name, spec));
  if (::access(spec.boot().kernel().c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(
        fmt::format("VM '{}': kernel {} cannot be read on this host: {}", name,
                    spec.boot().kernel(), std::strerror(errno)));
  }
  AgentVmRecord record;
  AgentVm& vm = *record.mutable_vm();
  vm.set_name(std::string(name));
  vm.set_uid(uid.empty() ? std::string(name) : std::string(uid));
  *vm.mutable_spec() = spec;
  *record.mutable_networks() = networks;
  record.set_generation(generation);
  for (int i = 0; i < spec.disks_size(); ++i) {
    const flotilla::v1::DiskSpec& disk = spec.disks(i);
    auto option = storage_.diskOption(disk.pool(), disk.volume());
    if (!option.ok()) return annotate(option.status(), fmt::format("VM '{}' disk {}", name, i));
    // A shared iSCSI LUN is where two copies of a VM could meet (an HA restart while the old
    // host still runs): its VMM takes the LUN's reservation for this generation
    // (docs/storage.md "Fencing by generation"). Local files and DRBD devices are one host's.
    if (absl::StartsWith(*option, "iscsi=")) *option += fmt::format(",generation={}", generation);
    flotilla::v1::AgentDisk* agent_disk = vm.add_disks();
    agent_disk->set_pool(disk.pool());
    agent_disk->set_volume(disk.volume());
    agent_disk->set_disk_option(*option);
  }
  RETURN_IF_ERROR(addNics(vm, networks, macs));
  const std::string dir = vmDir(name);
  record.set_api_socket(dir + "/api.sock");
  record.set_serial_path(dir + "/serial.log");
  record.set_log_path(dir + "/vmm.log");
  return record;
}

absl::Status VmManager::provision(const AgentVmRecord& record) {
  const AgentVm& vm = record.vm();
  VmIdentity identity{vm.name(), vm.uid()};
  std::error_code error;
  std::filesystem::create_directories(vmDir(vm.name()), error);
  if (error) {
    return errnoStatus(error.value(), fmt::format("cannot create {}", vmDir(vm.name())));
  }
  absl::Status status = cgroups_.create(
      vm.name(), vm.spec().vcpus(), vm.spec().memory_bytes() + options_.vmm_memory_overhead_bytes);
  for (int i = 0; status.ok() && i < vm.nics_size(); ++i) {
    status = network_.plug(vm.nics(i), identity);
  }
  if (!status.ok()) unprovision(record);
  return status;
}

void VmManager::unprovision(const AgentVmRecord& record) {
  const Logger log = log_.with("vm", record.vm().name());
  for (const flotilla::v1::AgentNic& nic : record.vm().nics()) {
    absl::Status status = network_.unplug(nic);
    if (!status.ok()) log.warn("cannot remove NIC {}: {}", nic.tap(), status.message());
  }
  absl::Status status = cgroups_.remove(record.vm().name());
  if (!status.ok()) log.warn("cannot remove its cgroup: {}", status.message());
  std::error_code error;
  std::filesystem::remove_all(vmDir(record.vm().name()), error);
}

absl::Status VmManager::forget(const AgentVmRecord& record) {
  unprovision(record);
  RETURN_IF_ERROR(store_.remove(record.vm().name()));
  absl::MutexLock lock(&mu_);
  vms_.erase(record.vm().name());
  return absl::OkStatus();
}

absl::StatusOr<AgentVm> VmManager::createVm(const flotilla::v1::CreateVmRequest& request) {
  auto entry = std::make_shared<Entry>();
  absl::MutexLock op(&entry->op_mu);
  {
    absl::MutexLock lock(&mu_);
    auto it = vms_.find(request.name());
    if (it != vms_.end()) {
      AgentVm existing;
      uint64_t generation = 0;
      {
        absl::MutexLock entry_lock(&it->second->mu);
        existing = it->second->record.vm();
        generation = it->second->record.generation();
      }
      if (!request.uid().empty() && existing.uid() == request.uid() &&
          google::protobuf::util::MessageDifferencer::Equals(existing.spec(), request.spec()) &&
          generation == request.generation()) {
        return existing;
      }
      return absl::AlreadyExistsError(fmt::format(
          "VM '{}' already exists on this host with another uid, spec or generation (here {}, "
          "asked for {}): delete it first",
          request.name(), generation, request.generation()));
    }
    vms_[request.name()] = entry;  // reserves the name; op_mu keeps others out until done
  }
  auto fail = [&](absl::Status status) {
    absl::MutexLock lock(&mu_);
    vms_.erase(request.name());
    return status;
  };
  absl::StatusOr<AgentVmRecord> record = newRecord(request.name(), request.uid(), request.spec(),
                                                   request.networks(), {}, request.generation());
  if (!record.ok()) return fail(record.status());
  setState(*record, VmState::VM_STATE_STOPPED, "created");
  if (absl::Status status = provision(*record); !status.ok()) return fail(status);
  if (absl::Status status = store_.save(*record); !status.ok()) {
    unprovision(*record);
    return fail(status);
  }
  {
    absl::MutexLock lock(&entry->mu);
    entry->record = *record;
  }
  log_.with("vm", request.name()).info("created");
  if (request.start()) {
    absl::Status started = launch(*entry, "", "");
    if (!started.ok()) {
      unprovision(*record);
      (void)store_.remove(request.name());
      return fail(started);
    }
  }
  return entry->snapshot();
}

absl::Status VmManager::launch(Entry& entry, std::string_view incoming, std::string_view token) {
  AgentVm vm;
  {
    absl::MutexLock lock(&entry.mu);
    if (entry.running()) return absl::OkStatus();
    vm = entry.record.vm();
  }
  RETURN_IF_ERROR(runDiskEvent(
      storage_, vm, incoming.empty() ? DiskEvent::kBeforeVmmStart : DiskEvent::kPrepareIncoming));
  absl::Status started = spawnVmm(entry, incoming, token);
  if (!started.ok()) {
    absl::Status undone = runDiskEvent(
        storage_, vm, incoming.empty() ? DiskEvent::kAfterVmmStopped : DiskEvent::kAbortTarget);
    if (!undone.ok()) log_.with("vm", vm.name()).warn("{}", undone.message());
  }
  return started;
}

absl::Status VmManager::spawnVmm(Entry& entry, std::string_view incoming, std::string_view token) {
  AgentVmRecord record;
  {
    absl::MutexLock lock(&entry.mu);
    if (entry.running()) return absl::OkStatus();
    record = entry.record;
  }
  const AgentVm& vm = record.vm();
  const Logger log = log_.with("vm", vm.name());
  std::error_code error;
  std::filesystem::create_directories(vmDir(vm.name()), error);
  ::unlink(record.api_socket().c_str());

  VmmCommand command;
  command.binary = options_.vmm_binary;
  command.name = vm.name();
  command.spec = vm.spec();
  for (const auto& disk : vm.disks()) command.disk_options.push_back(disk.disk_option());
  command.api_socket = record.api_socket();
  command.serial_path = record.serial_path();
  command.log_path = record.log_path();
  command.incoming = std::string(incoming);
  command.migration_token = std::string(token);
  command.migration_status_path = migrationStatusPath(vm.name());
  ::unlink(command.migration_status_path.c_str());  // a previous migration's
  SpawnOptions spawn;
  // Its standard output and error go to its log too: a VMM that fails before its logging is
  // set up (a bad option) says why there.
  UniqueFd log_file(
      ::open(record.log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log_file.valid())
    return errnoStatus(errno, fmt::format("cannot open {}", record.log_path()));
  spawn.fds = {{1, log_file.get()}, {2, log_file.get()}};
  std::vector<UniqueFd> taps;
  for (int i = 0; i < vm.nics_size(); ++i) {
    auto tap = network_.openTap(vm.nics(i));
    if (!tap.ok()) return annotate(tap.status(), fmt::format("VM '{}'", vm.name()));
    const int child_fd = 3 + i;
    spawn.fds.emplace_back(child_fd, tap->get());
    taps.push_back(std::move(*tap));
    command.nics.push_back(VmmNicArg{
        .child_fd = child_fd, .mac = vm.nics(i).mac(), .offload = vm.spec().nics(i).offload()});
  }
  spawn.argv = vmmArgv(command);
  spawn.new_process_group = true;  // the VMM outlives the agent and its signals
  ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::spawn(spawn));
  taps.clear();
  // Into the cgroup before it has done much (it is still loading; a clone3 with
  // CLONE_INTO_CGROUP would close this short window).
  if (absl::Status joined = cgroups_.addProcess(vm.name(), child.pid()); !joined.ok()) {
    (void)child.terminate(absl::ZeroDuration());
    return annotate(joined, fmt::format("VM '{}': cannot put its VMM in its cgroup", vm.name()));
  }
  auto info = readProcessStats(child.pid());
  auto [pid, pidfd] = child.releaseWithPidfd();
  {
    absl::MutexLock lock(&entry.mu);
    entry.pidfd = std::move(pidfd);
    entry.own_child = true;
    entry.stopping = false;
    entry.stop_reason.clear();
    entry.migrating_out = false;
    entry.record.set_vmm_pid(static_cast<uint32_t>(pid));
    entry.record.mutable_vm()->set_vmm_pid(static_cast<uint32_t>(pid));
    entry.record.set_vmm_start_ticks(info.ok() ? info->start_time : 0);
    entry.record.set_want_running(incoming.empty());
    entry.record.mutable_vm()->set_incoming(!incoming.empty());
    setState(entry.record, VmState::VM_STATE_CREATING, "the VMM is starting");
    RETURN_IF_ERROR(store_.save(entry.record));
  }
  std::shared_ptr<Entry> shared = find(vm.name());
  watchExit(shared);

  // Running once it serves its API; an exit before that is the start's failure.
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  bool serving = false;
  while (!serving) {
    if (unixSocketAccepts(record.api_socket())) {
      grpc::ClientContext context;
      context.set_deadline(deadlineAfter(absl::Seconds(5)));
      flotilla::v1::HealthResponse health;
      serving = vmmStub(record.api_socket())
                    ->Health(&context, flotilla::v1::HealthRequest(), &health)
                    .ok();
      if (serving) break;
    }
    bool exited = false;
    {
      absl::MutexLock lock(&entry.mu);
      exited = !entry.running();
    }
    if (exited || absl::Now() > deadline) {
      if (!exited) {
        absl::MutexLock lock(&entry.mu);
        entry.stopping = true;
        entry.stop_reason = "it did not start";
        if (entry.pidfd.valid()) sendSignal(entry.pidfd.get(), SIGKILL);
      }
      waitPidfdClosed(entry);
      return absl::UnavailableError(
          fmt::format("VM '{}': its VMM {} before serving its API; the end of its log ({}): {}",
                      vm.name(), exited ? "exited" : "did not answer in time and was killed",
                      record.log_path(), tail(record.log_path(), 800)));
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  absl::MutexLock lock(&entry.mu);
  setState(entry.record, incoming.empty() ? VmState::VM_STATE_RUNNING : VmState::VM_STATE_MIGRATING,
           incoming.empty() ? "" : "waiting for the migration");
  log.info("VMM started (pid {})", pid);
  return store_.save(entry.record);
}

absl::StatusOr<AgentVm> VmManager::startVm(std::string_view name) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(name));
  absl::MutexLock op(&entry->op_mu);
  {
    absl::MutexLock lock(&entry->mu);
    if (entry->record.vm().incoming()) {
      return absl::FailedPreconditionError(fmt::format(
          "VM '{}' is the target of a migration: FinishMigration or AbortMigration it", name));
    }
  }
  // Taps and ports may be gone (host reboot); plugging is idempotent.
  AgentVmRecord record;
  {
    absl::MutexLock lock(&entry->mu);
    record = entry->record;
  }
  RETURN_IF_ERROR(provision(record));
  RETURN_IF_ERROR(launch(*entry, "", ""));
  return entry->snapshot();
}

void VmManager::waitForExit(Entry& entry, absl::Duration timeout) {
  UniqueFd pidfd;
  {
    absl::MutexLock lock(&entry.mu);
    if (!entry.running()) return;
    pidfd.reset(::dup(entry.pidfd.get()));
  }
  if (pidfd.valid() && waitPidfd(pidfd.get(), timeout)) waitPidfdClosed(entry);
}

void VmManager::waitPidfdClosed(Entry& entry) {
  // onExit (on the loop thread) closes the pidfd once it saw the exit.
  auto closed = [&entry]() ABSL_SHARED_LOCKS_REQUIRED(entry.mu) { return !entry.pidfd.valid(); };
  absl::MutexLock lock(&entry.mu);
  entry.mu.AwaitWithTimeout(absl::Condition(&closed), absl::Seconds(10));
}

absl::Status VmManager::stopLocked(Entry& entry, absl::Duration grace) {
  std::string api_socket;
  int pidfd = -1;
  {
    absl::MutexLock lock(&entry.mu);
    if (!entry.running()) return absl::OkStatus();
    entry.stopping = true;
    entry.stop_reason = "stopped by request";
    entry.record.set_want_running(false);
    api_socket = entry.record.api_socket();
    pidfd = ::dup(entry.pidfd.get());
  }
  UniqueFd own_pidfd(pidfd);
  const absl::Time start = absl::Now();
  if (grace > absl::ZeroDuration()) {
    auto stub = vmmStub(api_socket);
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Seconds(2)));
    flotilla::v1::ShutdownRequest request;
    request.set_graceful_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(grace)));
    flotilla::v1::ShutdownResponse response;
    (void)stub->Shutdown(&context, request, &response);
  }
  if (!waitPidfd(own_pidfd.get(), grace + absl::Seconds(1))) {
    log_.warn("VMM did not stop within {}: killing it", absl::FormatDuration(absl::Now() - start));
    sendSignal(own_pidfd.get(), SIGKILL);
    if (!waitPidfd(own_pidfd.get(), absl::Seconds(10))) {
      return absl::DeadlineExceededError("the VMM did not exit 10 s after SIGKILL");
    }
  }
  log_.info("VMM exited {} after the stop request", absl::FormatDuration(absl::Now() - start));
  waitPidfdClosed(entry);
  return absl::OkStatus();
}

absl::StatusOr<AgentVm> VmManager::stopVm(std::string_view name, absl::Duration grace) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(name));
  absl::MutexLock op(&entry->op_mu);
  RETURN_IF_ERROR(annotate(stopLocked(*entry, grace), fmt::format("stopping VM '{}'", name)));
  RETURN_IF_ERROR(runDiskEvent(storage_, entry->snapshot(), DiskEvent::kAfterVmmStopped));
  {
    absl::MutexLock lock(&entry->mu);
    entry->record.set_want_running(false);
    RETURN_IF_ERROR(store_.save(entry->record));
  }
  return entry->snapshot();
}

absl::Status VmManager::deleteVm(std::string_view name) {
  std::shared_ptr<Entry> entry = find(name);
  if (entry == nullptr) return absl::OkStatus();
  absl::MutexLock op(&entry->op_mu);
  RETURN_IF_ERROR(
      annotate(stopLocked(*entry, options_.stop_grace), fmt::format("deleting VM '{}'", name)));
  AgentVmRecord record;
  {
    absl::MutexLock lock(&entry->mu);
    record = entry->record;
  }
  RETURN_IF_ERROR(
      runDiskEvent(storage_, record.vm(),
                   record.vm().incoming() ? DiskEvent::kAbortTarget : DiskEvent::kAfterVmmStopped));
  RETURN_IF_ERROR(forget(record));
  log_.with("vm", name).info("deleted");
  return absl::OkStatus();
}

absl::StatusOr<AgentVm> VmManager::getVm(std::string_view name) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(name));
  return entry->snapshot();
}

std::vector<AgentVm> VmManager::listVms() {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : vms_) entries.push_back(entry);
  }
  std::vector<AgentVm> vms;
  for (const auto& entry : entries) {
    AgentVm vm = entry->snapshot();
    if (!vm.name().empty()) vms.push_back(std::move(vm));  // skip names reserved by a create
  }
  return vms;
}

absl::StatusOr<flotilla::v1::ConsoleLogResponse> VmManager::consoleLog(
    const flotilla::v1::ConsoleLogRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Entry> entry, lookup(request.name()));
  std::string path;
  {
    absl::MutexLock lock(&entry->mu);
    path = entry->record.serial_path();
  }
  flotilla::v1::ConsoleLogResponse response;
  response.set_next_offset(request.offset());
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) return response;  // nothing written yet
  const auto size = static_cast<uint64_t>(std::max<std::streamoff>(file.tellg(), 0));
  if (request.offset() > size) {
    // The log is shorter than the reader has seen: it started over (the VM was created here
    // anew). A next_offset below the offset asked for tells the reader.
    response.set_next_offset(size);
    return response;
  }
  const uint32_t max =
      request.max_bytes() == 0 ? 65536 : std::min(request.max_bytes(), kMaxConsoleChunk);
  file.seekg(static_cast<std::streamoff>(request.offset()));
  std::string data(max, '\0');
  file.read(data.data(), max);
  data.resize(static_cast<size_t>(file.gcount()));
  response.set_next_offset(request.offset() + data.size());
  response.set_data(std::move(data));
  return response;
}

int VmManager::fenceHaVms(std::string_view reason) {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : vms_) entries.push_back(entry);
  }
  int killed = 0;
  for (const auto& entry : entries) {
    absl::MutexLock lock(&entry->mu);
    if (!entry->running() || !entry->record.vm().spec().ha()) continue;
    entry->stopping = true;
    entry->stop_reason = "fenced: " + std::string(reason);
    if (sendSignal(entry->pidfd.get(), SIGKILL) == 0) ++killed;
    log_.with("vm", entry->record.vm().name()).warn("fenced: {}", reason);
  }
  return killed;
}

void VmManager::refreshUsage() {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : vms_) entries.push_back(entry);
  }
  for (const auto& entry : entries) {
    std::string name;
    pid_t pid = 0;
    {
      absl::MutexLock lock(&entry->mu);
      if (!entry->running()) continue;
      name = entry->record.vm().name();
      pid = static_cast<pid_t>(entry->record.vmm_pid());
    }
    flotilla::v1::VmUsage usage;
    auto process = readProcessStats(pid);
    if (process.ok()) {
      usage.set_cpu_time_ns(process->cpu_ns);
      usage.set_rss_bytes(process->rss_bytes);
    }
    auto cgroup = cgroups_.usage(name);
    if (cgroup.ok()) {
      usage.set_memory_current_bytes(cgroup->memory_bytes);
      if (cgroup->cpu_time_ns > 0) usage.set_cpu_time_ns(cgroup->cpu_time_ns);
    }
    const absl::Time now = absl::Now();
    absl::MutexLock lock(&entry->mu);
    if (entry->last_sample != absl::Time() && usage.cpu_time_ns() >= entry->last_cpu_ns) {
      const double seconds = absl::ToDoubleSeconds(now - entry->last_sample);
      if (seconds > 0) {
        usage.set_cpu_cores(static_cast<double>(usage.cpu_time_ns() - entry->last_cpu_ns) / 1e9 /
                            seconds);
      }
    }
    entry->last_cpu_ns = usage.cpu_time_ns();
    entry->last_sample = now;
    *entry->record.mutable_vm()->mutable_usage() = usage;
  }
}

}  // namespace flotilla::agent
