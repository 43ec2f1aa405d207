// The storage steps of a VM's life on this host, over all its disks, for the volumes that need
// them (DRBD; see docs/storage.md "DRBD pools"): which VmStorage calls each VM event makes, in
// which order. VmManager calls these; unit tests check the resulting drbdadm sequences.
#pragma once

#include "absl/status/status.h"
#include "flotilla/v1/agent.pb.h"
#include "node-agent/host_resources.h"

namespace flotilla::agent {

enum class DiskEvent {
  kBeforeVmmStart,   // create/start: activate (primary)
  kAfterVmmStopped,  // stop/delete, a failed start: deactivate (secondary)
  kPrepareOutgoing,  // migration source, first: share
  kPrepareIncoming,  // migration target, before its VMM starts: share, activate
  kFinishSource,     // the source VMM exited after the move: deactivate, unshare
  kFinishTarget,     // unshare, best effort (see vm_disks.cc)
  kAbortSource,      // the source VMM keeps the VM: unshare, best effort
  kAbortTarget,      // the target VMM was stopped: deactivate, unshare
};

const char* diskEventName(DiskEvent event);

// Runs the event's steps on every disk of `vm`, in the disks' order. Stops at the first error
// (every step is idempotent: the caller retries the whole event).
absl::Status runDiskEvent(VmStorage& storage, const flotilla::v1::AgentVm& vm, DiskEvent event);

}  // namespace flotilla::agent
