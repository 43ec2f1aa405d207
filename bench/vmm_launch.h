// The two VMMs the benchmarks compare, as command lines for the same guest file, and
// LaunchedVmm: one such process, started with its serial console (standard output) and its
// log (standard error) on pipes, killed by PID when the object goes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/pipe_lines.h"
#include "common/process.h"

namespace flotilla::bench {

struct Programs {
  std::string flotilla_vmm;
  std::string guest_elf;
  std::string qemu;  // qemu-system-x86_64, resolved in PATH
};

// What the guest gets, identical in both VMMs.
struct GuestSpec {
  std::string memory = "256M";  // both VMMs take the same suffixes
  std::string cmdline = "workload=idle";
  // virtio-mmio devices, as each VMM's own options ("--disk", "path=F"; "-device", "...").
  // With devices QEMU's microvm runs with acpi=off, so that it appends their
  // virtio_mmio.device= words to the command line (Flotilla's VMM always does).
  std::vector<std::string> flotilla_devices{};
  std::vector<std::string> qemu_devices{};
  // QEMU's guest RAM as private anonymous memory (memory-backend-ram, its default kind)
  // instead of a memfd. For live migration: QEMU reads every page of guest RAM in its first
  // pass, and reading a memfd's hole allocates the page, where anonymous memory maps the zero
  // page (docs/benchmarks.md, "Live migration").
  bool qemu_anonymous_memory = false;
};

// flotilla-vmm booting the guest, serial console on standard output; with the API socket
// when `api_socket` is not empty (as the agent runs it).
std::vector<std::string> flotillaBootCommand(const Programs& programs, const GuestSpec& guest,
                                             const std::string& api_socket);
// flotilla-vmm resuming the snapshot in `snapshot_dir`.
std::vector<std::string> flotillaRestoreCommand(const Programs& programs,
                                                const std::string& snapshot_dir,
                                                const std::string& api_socket);
// QEMU's microvm with guest RAM in a memfd (as Flotilla keeps it; see GuestSpec for the
// exception), serial console on standard output; QMP on `qmp_socket` when it is not empty;
// waiting for an incoming migration from `incoming` (e.g. "exec:cat FILE") when that is not
// empty.
std::vector<std::string> qemuCommand(const Programs& programs, const GuestSpec& guest,
                                     const std::string& qmp_socket, const std::string& incoming);

// "N" of a guest line "flotilla-guest: counter pass=N"; nullopt for other lines.
std::optional<uint64_t> counterPass(const std::string& line);
// A guest line reporting an error ("flotilla-guest: error ...": counter mismatch, exception).
bool isGuestError(const std::string& line);

class LaunchedVmm {
 public:
  // Starts `argv`. `name` ("Flotilla", "QEMU restore") is for messages.
  static absl::StatusOr<std::unique_ptr<LaunchedVmm>> spawn(std::string name,
                                                            std::vector<std::string> argv);

  ChildProcess& process() { return process_; }
  PipeLines& console() { return console_; }
  PipeLines& log() { return log_; }
  // systemClock().monotonicNow() right before the process was created.
  absl::Duration spawnedAt() const { return spawned_at_; }
  // True once the process has exited (it is then reaped).
  bool exited() { return process_.wait(absl::ZeroDuration()).ok(); }

  // `status` with what a person needs to see why: the process, its command line, how it
  // ended if it did, and the end of its console and log.
  absl::Status explain(const absl::Status& status);

 private:
  LaunchedVmm(std::string name, std::vector<std::string> argv, ChildProcess process,
              PipeLines console, PipeLines log, absl::Duration spawned_at)
      : name_(std::move(name)),
        argv_(std::move(argv)),
        process_(std::move(process)),
        console_(std::move(console)),
        log_(std::move(log)),
        spawned_at_(spawned_at) {}

  std::string name_;
  std::vector<std::string> argv_;
  ChildProcess process_;
  PipeLines console_;
  PipeLines log_;
  absl::Duration spawned_at_;
};

}  // namespace flotilla::bench
