// flotilla-vmmctl: drives a flotilla-vmm through its API socket from scripts, as ch-remote
// does for Cloud Hypervisor:
//   flotilla-vmmctl --api-socket PATH info|health|pause|resume|shutdown [--timeout-ms N]
//                   |snapshot DIR
//                   |migrate-send tcp:HOST:PORT --token T [--downtime-ms N] [--bandwidth MBps]
//                    [--streams N] [--compress zstd|lz4] [--auto-converge] [--cold [--with-disks]]
//                    [--force]
//                   |migrate-status|migrate-cancel
// Prints results as JSON (info) or one line; exits 0 on success, 1 when the VMM refused or
// could not be reached (with its message on stderr), 2 on a bad command line.
#pragma once

namespace flotilla::vmm {

int runVmmctl(int argc, const char* const* argv);

}  // namespace flotilla::vmm
