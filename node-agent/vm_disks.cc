// The storage steps of a VM's life on this host (see vm_disks.h).
#include "node-agent/vm_disks.h"

#include <vector>

#include "common/log.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::agent {
namespace {

// kUnshareBestEffort: on the host that stays primary at the end of a migration. DRBD refuses
// to clear allow-two-primaries while both nodes are primary, and the controller may end this
// side before the other one demoted (it finishes the target first and aborts the source
// first); the other side's kUnshare, after its demotion, ends dual-primary then. A failure
// here is logged, not returned.
enum class Step { kActivate, kDeactivate, kShare, kUnshare, kUnshareBestEffort };

absl::Status runStep(VmStorage& storage, const flotilla::v1::AgentDisk& disk, Step step) {
  switch (step) {
    case Step::kActivate:
      return storage.activate(disk.pool(), disk.volume());
    case Step::kDeactivate:
      return storage.deactivate(disk.pool(), disk.volume());
    case Step::kShare:
      return storage.shareForMigration(disk.pool(), disk.volume(), true);
    case Step::kUnshare:
    case Step::kUnshareBestEffort:
      return storage.shareForMigration(disk.pool(), disk.volume(), false);
  }
  return absl::InternalError("unknown disk step");
}

std::vector<Step> stepsOf(DiskEvent event) {
  switch (event) {
    case DiskEvent::kBeforeVmmStart:
      return {Step::kActivate};
    case DiskEvent::kAfterVmmStopped:
      return {Step::kDeactivate};
    case DiskEvent::kPrepareOutgoing:
      return {Step::kShare};
    case DiskEvent::kPrepareIncoming:
      return {Step::kShare, Step::kActivate};
    case DiskEvent::kFinishSource:
      return {Step::kDeactivate, Step::kUnshare};
    case DiskEvent::kFinishTarget:
      return {Step::kUnshareBestEffort};
    case DiskEvent::kAbortSource:
      return {Step::kUnshareBestEffort};
    case DiskEvent::kAbortTarget:
      return {Step::kDeactivate, Step::kUnshare};
  }
  return {};
}

}  // namespace

const char* diskEventName(DiskEvent event) {
  switch (event) {
    case DiskEvent::kBeforeVmmStart:
      return "before its VMM starts";
    case DiskEvent::kAfterVmmStopped:
      return "after its VMM stopped";
    case DiskEvent::kPrepareOutgoing:
      return "preparing its outgoing migration";
    case DiskEvent::kPrepareIncoming:
      return "preparing its incoming migration";
    case DiskEvent::kFinishSource:
      return "finishing its migration (source)";
    case DiskEvent::kFinishTarget:
      return "finishing its migration (target)";
    case DiskEvent::kAbortSource:
      return "aborting its migration (source)";
    case DiskEvent::kAbortTarget:
      return "aborting its migration (target)";
  }
  return "?";
}

absl::Status runDiskEvent(VmStorage& storage, const flotilla::v1::AgentVm& vm, DiskEvent event) {
  // Step by step over all disks: during a migration both hosts allow two primaries for every
  // disk before either promotes any.
  for (Step step : stepsOf(event)) {
    for (const flotilla::v1::AgentDisk& disk : vm.disks()) {
      absl::Status status = annotate(runStep(storage, disk, step),
                                     fmt::format("VM '{}' disk {}/{}, {}", vm.name(), disk.pool(),
                                                 disk.volume(), diskEventName(event)));
      if (status.ok()) continue;
      if (step != Step::kUnshareBestEffort) return status;
      Logger("agent.vms")
          .with("vm", vm.name())
          .warn("{} (the other host ends dual-primary when it demotes)", status.message());
    }
  }
  return absl::OkStatus();
}

}  // namespace flotilla::agent
