// The benchmarks of Flotilla's VMM against QEMU: start time and memory overhead of an idle
// guest, and snapshot / restore of a 1 GiB guest with 256 MiB touched. Each alternates runs
// between the two VMMs, so that both share the machine's noise, and fails only when a
// measurement itself failed (a VMM did not start, a restored guest did not continue).
#pragma once

#include "absl/status/statusor.h"
#include "bench/report.h"
#include "bench/vmm_launch.h"
#include "tests/support/test_env.h"

namespace flotilla::bench {

struct BenchContext {
  Programs programs;
  const testing::TempDir* dir = nullptr;  // sockets and snapshots; removed at the end
  int iterations = 15;                    // per VMM, for start and memory
  int snapshot_iterations = 5;            // per VMM, for snapshot and restore
  bool verbose = false;                   // a line per run on standard error
};

struct StartResults {
  Row start_with_socket{"start to first guest line (API / QMP socket)", "ms", {}, {}};
  Row start_without_socket{"start to first guest line (no control socket)", "ms", {}, {}};
  Row ready{"start to 'ready' (includes ~30 ms TSC calibration)", "ms", {}, {}};
  Row rss{"RssAnon + RssFile", "MiB", {}, {}};
  Row rss_anon{"  RssAnon (heap, stacks, written data)", "MiB", {}, {}};
  Row rss_file{"  RssFile (program and libraries)", "MiB", {}, {}};
  Row private_bytes{"Private_Clean + Private_Dirty, guest memfd excluded", "MiB", {}, {}};
  Row guest_resident{"guest RAM resident (RssShmem, not counted)", "MiB", {}, {}};
};

// Starts each VMM `iterations` times with and without its control socket (one warm-up run
// of each not counted); memory is read once the guest printed "ready", in the runs with the
// control socket.
absl::StatusOr<StartResults> runStartBenchmark(const BenchContext& context);

struct SnapshotResults {
  Row snapshot{"snapshot, until durable on disk", "ms", {}, {}};
  Row paused{"  of which the guest was paused", "ms", {}, {}};
  Row size{"snapshot memory written", "MiB", {}, {}};
  Row restore_running{"restore: spawn to guest running", "ms", {}, {}};
  Row restore_loaded{"restore: spawn to all guest memory loaded", "ms", {}, {}};
  Samples qemu_reported_total_ms;     // query-migrate "total-time"
  Samples qemu_reported_downtime_ms;  // query-migrate "downtime"
  Samples flotilla_pages_on_demand;   // faults served while memory was loaded lazily
};

absl::StatusOr<SnapshotResults> runSnapshotBenchmark(const BenchContext& context);

}  // namespace flotilla::bench
