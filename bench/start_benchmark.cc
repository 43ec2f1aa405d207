// Start time and memory overhead: each VMM boots the idle guest; start is the time from just
// before the process is spawned to the guest's first serial line ("flotilla-guest: boot",
// printed by its first instructions) arriving on the pipe; memory is read from /proc once the
// guest printed "ready".
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "bench/benchmarks.h"
#include "bench/process_memory.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {
namespace {

constexpr absl::Duration kBootTimeout = absl::Seconds(30);
constexpr double kMiB = 1024.0 * 1024.0;

enum class Vmm { kFlotilla, kQemu };

struct StartVariant {
  Vmm vmm;
  bool control_socket;  // Flotilla: --api-socket; QEMU: -qmp
};

struct StartSample {
  double boot_ms = 0;
  double ready_ms = 0;
  ProcessMemory memory;
};

double millisBetween(absl::Duration from, absl::Duration to) {
  return absl::ToDoubleMilliseconds(to - from);
}

absl::StatusOr<StartSample> startOnce(const BenchContext& context, StartVariant variant, int run) {
  const GuestSpec guest;  // 256M, idle
  std::string socket;
  if (variant.control_socket) socket = context.dir->file(fmt::format("start-{}.sock", run));
  const bool flotilla = variant.vmm == Vmm::kFlotilla;
  std::vector<std::string> argv = flotilla ? flotillaBootCommand(context.programs, guest, socket)
                                           : qemuCommand(context.programs, guest, socket, "");
  ASSIGN_OR_RETURN(std::unique_ptr<LaunchedVmm> vmm,
                   LaunchedVmm::spawn(flotilla ? "Flotilla" : "QEMU", std::move(argv)));
  auto boot = vmm->console().waitForText("flotilla-guest: boot", kBootTimeout);
  if (!boot.ok()) return vmm->explain(boot.status());
  auto ready = vmm->console().waitForText("flotilla-guest: ready", kBootTimeout, *boot);
  if (!ready.ok()) return vmm->explain(ready.status());
  StartSample sample;
  sample.boot_ms = millisBetween(vmm->spawnedAt(), vmm->console().lines()[*boot].read);
  sample.ready_ms = millisBetween(vmm->spawnedAt(), vmm->console().lines()[*ready].read);
  auto memory = readProcessMemory(vmm->process().pid());
  if (!memory.ok()) return vmm->explain(memory.status());
  sample.memory = *memory;
  vmm.reset();  // killed by PID and reaped
  if (!socket.empty()) ::unlink(socket.c_str());
  return sample;
}

void addMemory(Samples& samples, uint64_t bytes) {
  samples.add(static_cast<double>(bytes) / kMiB);
}

}  // namespace

absl::StatusOr<StartResults> runStartBenchmark(const BenchContext& context) {
  StartResults results;
  std::vector<StartVariant> variants = {
      {Vmm::kFlotilla, true}, {Vmm::kQemu, true}, {Vmm::kFlotilla, false}, {Vmm::kQemu, false}};
  int run = 0;
  // Warm-up: the first start of a binary reads it from disk; no VMM should pay for that.
  for (const StartVariant& variant : variants) {
    RETURN_IF_ERROR(startOnce(context, variant, run++).status());
  }
  for (int iteration = 0; iteration < context.iterations; ++iteration) {
    // Alternate the order so that neither VMM always runs right after the other.
    std::vector<StartVariant> order = variants;
    if (iteration % 2 == 1) std::reverse(order.begin(), order.end());
    for (const StartVariant& variant : order) {
      ASSIGN_OR_RETURN(StartSample sample, startOnce(context, variant, run++));
      const bool flotilla = variant.vmm == Vmm::kFlotilla;
      Row& start =
          variant.control_socket ? results.start_with_socket : results.start_without_socket;
      (flotilla ? start.flotilla : start.qemu).add(sample.boot_ms);
      if (context.verbose) {
        fmt::print(stderr, "  start {}{}: {:.2f} ms to boot line, {:.2f} ms to ready\n",
                   flotilla ? "Flotilla" : "QEMU",
                   variant.control_socket ? " (control socket)" : "", sample.boot_ms,
                   sample.ready_ms);
      }
      if (!variant.control_socket) continue;
      // Memory and time to ready: as the VMMs run in production, with their control socket.
      auto pick = [flotilla](Row& row) -> Samples& { return flotilla ? row.flotilla : row.qemu; };
      pick(results.ready).add(sample.ready_ms);
      addMemory(pick(results.rss), sample.memory.rss());
      addMemory(pick(results.rss_anon), sample.memory.rss_anon);
      addMemory(pick(results.rss_file), sample.memory.rss_file);
      addMemory(pick(results.private_bytes), sample.memory.privateBytes());
      addMemory(pick(results.guest_resident), sample.memory.rss_shmem);
    }
  }
  return results;
}

}  // namespace flotilla::bench
