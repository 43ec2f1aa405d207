// flotilla-vmm's exit statuses. Odd statuses belong to the guest: a value written to the
// debug-exit port ends the VMM with (value << 1) | 1, as QEMU's isa-debug-exit does. Even
// statuses are the VMM's own, one per kind of problem, so that scripts and the agent can tell
// them apart without parsing messages.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"

namespace flotilla::vmm {

inline constexpr int kExitOk = 0;             // the guest powered off or rebooted, or was shut down
inline constexpr int kExitUsage = 2;          // bad command line or configuration file
inline constexpr int kExitBadKernel = 4;      // missing, unreadable or invalid kernel or initrd
inline constexpr int kExitNoResources = 6;    // no /dev/kvm, not enough memory, ...
inline constexpr int kExitBadSnapshot = 8;    // missing, corrupted or foreign snapshot
inline constexpr int kExitGuestCrashed = 10;  // triple fault
inline constexpr int kExitInternalError = 12;    // KVM or the VMM failed
inline constexpr int kExitMigrationFailed = 14;  // --incoming: the migration failed, nothing ran

// Errors carry the exit status they should end flotilla-vmm with, as a status payload, so
// that the layer that knows the kind of problem (reading the kernel, allocating memory, ...)
// decides it and main() only reports.
inline constexpr char kExitCodePayload[] = "flotilla.dev/vmm-exit-code";

inline absl::Status withExitCode(absl::Status status, int exit_code) {
  if (!status.ok()) status.SetPayload(kExitCodePayload, absl::Cord(std::to_string(exit_code)));
  return status;
}

inline int exitCodeOf(const absl::Status& status, int fallback) {
  auto payload = status.GetPayload(kExitCodePayload);
  if (!payload.has_value()) return fallback;
  return std::stoi(std::string(*payload));
}

}  // namespace flotilla::vmm
