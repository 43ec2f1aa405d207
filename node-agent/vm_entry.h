// What VmManager's two source files (vm_manager.cc: lifecycle and supervision;
// vm_migration.cc: the migration endpoints) share: the per-VM entry and a few helpers.
// Internal to the agent.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"
#include "flotilla/v1/agent_state.pb.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "node-agent/vm_manager.h"

namespace flotilla::agent {

struct VmManager::Entry {
  // One operation (create, start, stop, delete, migration step) at a time on this VM.
  absl::Mutex op_mu;
  absl::Mutex mu ABSL_ACQUIRED_AFTER(op_mu);
  flotilla::v1::AgentVmRecord record ABSL_GUARDED_BY(mu);
  UniqueFd pidfd ABSL_GUARDED_BY(mu);          // valid while the VMM runs
  bool own_child ABSL_GUARDED_BY(mu) = false;  // spawned by this process: its status is ours
  bool stopping ABSL_GUARDED_BY(mu) = false;   // a stop (or fence) was asked for
  std::string stop_reason ABSL_GUARDED_BY(mu);
  bool migrating_out ABSL_GUARDED_BY(mu) = false;
  flotilla::v1::MigrationStatus last_migration ABSL_GUARDED_BY(mu);
  uint64_t last_cpu_ns ABSL_GUARDED_BY(mu) = 0;
  absl::Time last_sample ABSL_GUARDED_BY(mu);

  bool running() const ABSL_SHARED_LOCKS_REQUIRED(mu) { return pidfd.valid(); }
  flotilla::v1::AgentVm snapshot() ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    return record.vm();
  }
};

// NotFound naming the VM.
absl::Status vmNotFound(std::string_view name);
// A client of the VMM's API socket.
std::unique_ptr<flotilla::v1::VmmService::Stub> vmmStub(const std::string& api_socket);
// pidfd_send_signal(2): the signal reaches that very process, never a later one with its pid.
int sendSignal(int pidfd, int sig);
// The last `bytes` of a file ("" when it cannot be read), for error messages.
std::string tail(const std::string& path, size_t bytes);
void setState(flotilla::v1::AgentVmRecord& record, flotilla::v1::VmState state,
              std::string message);

}  // namespace flotilla::agent
