// The guest's command line: whitespace-separated key=value words (README.md lists the keys).
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum Workload {
  WORKLOAD_IDLE,
  WORKLOAD_SELFTEST,
  WORKLOAD_COMPUTE,
  WORKLOAD_COUNTER,
  WORKLOAD_DIRTY,
  WORKLOAD_BLK,
  WORKLOAD_BLK_BENCH,
  WORKLOAD_NET,
};

enum BenchPattern {
  BENCH_RANDREAD,
  BENCH_RANDWRITE,
  BENCH_SEQREAD,
  BENCH_SEQWRITE,
};

// One `virtio_mmio.device=<size>@<base>:<irq>` word (Linux's syntax, which QEMU's microvm
// appends with acpi=off): a virtio-mmio register window and its interrupt line.
struct VirtioMmioEntry {
  uint64_t base;
  uint64_t size;
  uint32_t irq;
};

#define MAX_VIRTIO_MMIO_DEVICES 16

struct GuestConfig {
  enum Workload workload;
  const char* workload_name;
  uint64_t cpus;         // selftest: CPUs expected (the BSP included); 0 = count who starts
  uint64_t iterations;   // compute: 0 = run forever
  uint64_t counter_mib;  // counter: region size
  uint64_t dirty_mib;    // dirty: region size
  uint64_t rate_mbps;    // dirty: pace, in MB/s (10^6 bytes per second)
  uint64_t duration_s;   // dirty: 0 = run forever

  // Any workload (only blk, blk-bench and net use them): the virtio-mmio devices, in order.
  struct VirtioMmioEntry virtio_devices[MAX_VIRTIO_MMIO_DEVICES];
  uint32_t virtio_device_count;
  // blk, blk-bench, net: virtqueue and interrupt options (0 or 1, queue size 0 = the device's).
  uint64_t virtio_indirect;
  uint64_t virtio_event_idx;
  uint64_t virtio_irq;
  uint64_t virtio_queue_size;
  // blk
  uint64_t blk_mib;          // region written and verified, from sector 0
  uint64_t blk_seed;         // part of the data pattern
  uint64_t blk_qd;           // requests in flight
  uint64_t blk_verify_only;  // only read and verify generation 0
  uint64_t blk_loop;         // write/verify rounds forever
  // blk-bench
  uint64_t bench_pattern;  // enum BenchPattern
  uint64_t bench_bs;       // bytes per request
  uint64_t bench_qd;       // requests in flight
  uint64_t bench_seconds;  // 0: no time limit (then bench_ops is set)
  uint64_t bench_ops;      // 0: no count limit
  uint64_t bench_mib;      // region, from sector 0
  // net
  uint32_t net_ip;  // host byte order
  uint32_t net_prefix;
  uint8_t net_mac[6];
  bool net_mac_given;
  uint64_t net_packets;  // exit 0 after answering this many packets; 0 = run forever
  uint64_t net_stats;    // 1: a counters line once per second
};

// Parses `cmdline` into `config`. On failure returns false with the reason in `why`.
bool parseCommandLine(const char* cmdline, struct GuestConfig* config, char* why, size_t why_size);
