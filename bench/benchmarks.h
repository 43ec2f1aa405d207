// The benchmarks of Flotilla's VMM against QEMU: start time and memory overhead of an idle
// guest, snapshot / restore of a 1 GiB guest with 256 MiB touched, the virtio devices (block
// I/O on a raw file and an iSCSI LUN, UDP echo through a tap) and live migration of a 1 GiB
// guest over loopback. Each alternates runs between the two VMMs, so that both share the
// machine's noise, and fails only when a measurement itself failed (a VMM did not start, a
// restored or migrated guest did not continue).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  int virtio_iterations = 3;              // per VMM and virtio row
  int virtio_seconds = 3;                 // each virtio run measures this long
  int migration_iterations = 3;           // per VMM and migration scenario
  bool quick = false;                     // a smoke run: fewer scenarios, shorter budgets
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

// How the guest drives the virtio devices in the virtio benchmark: as Linux does.
inline constexpr char kVirtioGuestOptions[] = "virtio.indirect=1 virtio.event_idx=1 virtio.irq=1";

// Throughput rows: higher is better (a ratio above 1: Flotilla is faster).
struct VirtioResults {
  Row raw_randread_qd1{"raw file: 4 KiB random read, QD1", "k IOPS", {}, {}};
  Row raw_randread_qd32{"raw file: 4 KiB random read, QD32", "k IOPS", {}, {}};
  Row raw_seqread{"raw file: 1 MiB sequential read, QD4", "MB/s", {}, {}};
  Row raw_seqwrite{"raw file: 1 MiB sequential write, QD4", "MB/s", {}, {}};
  Row iscsi_randread_qd1{"iSCSI LUN: 4 KiB random read, QD1", "k IOPS", {}, {}};
  Row iscsi_randread_qd32{"iSCSI LUN: 4 KiB random read, QD32", "k IOPS", {}, {}};
  Row iscsi_seqread{"iSCSI LUN: 1 MiB sequential read, QD4", "MB/s", {}, {}};
  Row udp_echo{"UDP echo round trips (one in flight)", "k/s", {}, {}};

  std::vector<const Row*> rows() const {
    return {&raw_randread_qd1,   &raw_randread_qd32,   &raw_seqread,   &raw_seqwrite,
            &iscsi_randread_qd1, &iscsi_randread_qd32, &iscsi_seqread, &udp_echo};
  }
};

// The guest's blk-bench workload on a virtio-blk disk (a raw file, then the same file as an
// iSCSI LUN served by a tgtd started here) and its net workload on a virtio-net NIC on a tap
// in a network namespace created here (UDP ping-pong from the namespace). Needs root (the
// namespace), tgtd and QEMU's iSCSI driver (qemu-block-extra).
absl::StatusOr<VirtioResults> runVirtioBenchmark(const BenchContext& context);

// One load of the migration benchmark: a 1 GiB guest running the dirty workload.
struct MigrationScenario {
  std::string name;        // "idle", "200 MB/s"
  uint32_t dirty_mib = 0;  // the region the guest rewrites
  uint32_t rate_mbps = 0;  // how fast (10^6 bytes per second)
  std::string cmdline;     // the guest's command line, the same in both VMMs

  Row total{"total time (command to completion)", "ms", {}, {}};
  Row bytes{"bytes sent", "MiB", {}, {}};
  Row rounds{"rounds (see notes)", "", {}, {}};
  Row guest_downtime{"downtime the guest saw (max_pause_us)", "ms", {}, {}};
  // Runs that ended because pre-copy did not converge within the budget: not in the rows.
  int flotilla_runs = 0;
  int qemu_runs = 0;
  int flotilla_not_converged = 0;
  int qemu_not_converged = 0;
  // Converged runs whose guest-observed downtime is no more than the guest had already seen
  // before the migration: the migration's own pause was at most that (host noise dominates).
  int flotilla_gap_before = 0;
  int qemu_gap_before = 0;
  // The VMMs' own figures, measured differently (docs/benchmarks.md): for the notes.
  Samples flotilla_reported_downtime_ms;  // MigrateStatus.downtime_us: pause to "resumed"
  Samples qemu_reported_downtime_ms;      // query-migrate "downtime"
  Samples flotilla_reported_total_ms;     // MigrateStatus.total_time_us, when read
  Samples qemu_reported_total_ms;         // query-migrate "total-time"
  // The source guest's max_pause_us right before the migration: what it saw without one.
  Samples flotilla_baseline_pause_ms;
  Samples qemu_baseline_pause_ms;

  std::vector<const Row*> rows() const { return {&total, &bytes, &rounds, &guest_downtime}; }
};

struct MigrationResults {
  uint32_t downtime_limit_ms = 0;  // given to both VMMs
  int precopy_budget_s = 0;        // pre-copy time after which a run counts as not converging
  std::vector<MigrationScenario> scenarios;
  // Throughput of the first copy of the 256 MiB the dirty scenarios hold (higher is better).
  Row first_copy{"first copy of guest memory (dirty scenarios)", "GB/s", {}, {}};
};

// Live migration of a 1 GiB guest from one VMM process to another of the same kind over
// loopback, at several loads of the guest's dirty workload (all four scenarios, or with
// `quick` the idle one and 200 MB/s), `migration_iterations` runs per VMM and scenario.
absl::StatusOr<MigrationResults> runMigrationBenchmark(const BenchContext& context);

}  // namespace flotilla::bench
