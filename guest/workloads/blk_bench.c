// blk-bench: IOPS and throughput of the first virtio-blk device as the guest sees them.
// Keeps up to bench.qd requests of bench.bs bytes in flight over the first bench.mib MiB
// (random or sequential, reads or writes) for bench.seconds or bench.ops requests, timed with
// the TSC, and prints one line:
//   blk-bench pattern=randread bs=4096 qd=32 ops=N bytes=N ns=N iops=N mbps=N
// (mbps: 10^6 bytes per second). Nothing is verified; the blk workload does that.
#include <stdint.h>

#include "guest.h"
#include "io.h"
#include "print.h"
#include "tsc.h"
#include "virtio_blk.h"
#include "workloads/workloads.h"

#define MAX_QD 128

static const char* const kPatternNames[] = {"randread", "randwrite", "seqread", "seqwrite"};

__attribute__((noreturn)) static void fatal(const char* why) {
  report("error blk-bench %s", why);
  exitGuest(GUEST_EXIT_CHECK_FAILED);
}

static uint64_t ticksToNanoseconds(uint64_t ticks) {
  // ticks * 10^6 / tsc_khz without overflowing for long runs.
  return ticks / tsc_khz * 1000000 + ticks % tsc_khz * 1000000 / tsc_khz;
}

static uint64_t xorshift(uint64_t* state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return x;
}

void runBlkBench(const struct GuestConfig* config) {
  static struct BlkDevice blk;
  const uint64_t bs = config->bench_bs;
  const bool writes =
      config->bench_pattern == BENCH_RANDWRITE || config->bench_pattern == BENCH_SEQWRITE;
  const bool random =
      config->bench_pattern == BENCH_RANDREAD || config->bench_pattern == BENCH_RANDWRITE;
  char why[200];

  // One data segment per request unless the device's size_max is smaller than bs.
  blkOpen(&blk, config, (uint32_t)bs, (uint32_t)bs);
  const uint64_t segment_bytes = blk.segment_bytes;
  const uint32_t segments = (uint32_t)((bs + segment_bytes - 1) / segment_bytes);
  if (segments > blk.max_segments) {
    format(why, sizeof(why), "bench.bs=%lu needs %u segments of %lu bytes; the device takes %u", bs,
           segments, segment_bytes, blk.max_segments);
    fatal(why);
  }
  const uint64_t region = config->bench_mib << 20;
  if (bs % blk.blk_size != 0) {
    format(why, sizeof(why), "bench.bs=%lu is not a multiple of the block size %u", bs,
           blk.blk_size);
    fatal(why);
  }
  if (region > blk.capacity * BLK_SECTOR_SIZE || bs > region) {
    format(why, sizeof(why), "bench.mib=%lu does not fit the disk (%lu sectors) or bench.bs",
           config->bench_mib, blk.capacity);
    fatal(why);
  }
  if (writes && blk.read_only) fatal("a write pattern on a read-only disk (VIRTIO_BLK_F_RO)");

  // Without indirect descriptors each request holds segments + 2 ring descriptors.
  const uint32_t per_request = blk.device.indirect ? 1 : segments + 2;
  uint32_t qd = (uint32_t)config->bench_qd;
  if (qd * per_request > blk.queue.size) {
    qd = blk.queue.size / per_request;
    report(
        "blk-bench qd=%lu limited to %u by the queue size %u (%u ring descriptors per "
        "request; 1 with virtio.indirect=1)",
        config->bench_qd, qd, blk.queue.size, per_request);
  }
  uint8_t* buffers = virtioAlloc(qd * bs, 4096, "blk-bench buffers (bench.qd * bench.bs)");
  if (writes) {
    uint64_t state = 0x2545f4914f6cdd1dull;
    for (uint64_t i = 0; i < qd * bs / 8; ++i) ((uint64_t*)buffers)[i] = xorshift(&state);
  }
  struct BlkRequest* requests = blkAllocRequests(qd);
  struct VirtqBuffer* data = virtioAlloc(sizeof(struct VirtqBuffer) * segments, 8, "segments");
  uint32_t free_slots[MAX_QD];
  uint32_t free_count = 0;
  for (uint32_t s = 0; s < qd; ++s) free_slots[free_count++] = s;

  const uint32_t type = writes ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  const uint64_t blocks = region / bs;
  uint64_t random_state = 0x9e3779b97f4a7c15ull, next_offset = 0;
  uint64_t issued = 0, completed = 0;
  bool stopping = false;
  const uint64_t start = rdtsc();
  const uint64_t deadline =
      config->bench_seconds ? start + config->bench_seconds * tscPerSecond() : 0;
  for (;;) {
    bool added = false;
    while (!stopping && free_count > 0 && (config->bench_ops == 0 || issued < config->bench_ops)) {
      const uint32_t slot = free_slots[free_count - 1];
      uint64_t offset;
      if (random) {
        offset = xorshift(&random_state) % blocks * bs;
      } else {
        offset = next_offset;
        next_offset = next_offset + 2 * bs > region ? 0 : next_offset + bs;
      }
      for (uint32_t i = 0; i < segments; ++i) {
        const uint64_t at = i * segment_bytes;
        data[i] = (struct VirtqBuffer){
            (uint64_t)buffers + slot * bs + at,
            (uint32_t)(bs - at < segment_bytes ? bs - at : segment_bytes), false};
      }
      if (!blkSubmit(&blk, &requests[slot], type, offset / BLK_SECTOR_SIZE, data, segments)) break;
      --free_count;
      ++issued;
      added = true;
    }
    if (added) blkKick(&blk);
    bool took = false;
    for (struct BlkRequest* done; (done = blkTakeCompleted(&blk)) != 0;) {
      if (*done->status != VIRTIO_BLK_S_OK) {
        char buffer[16];
        format(why, sizeof(why), "request type=%s sector=%lu status=%s", blkTypeName(type),
               done->header->sector, blkStatusName(*done->status, buffer, sizeof(buffer)));
        fatal(why);
      }
      free_slots[free_count++] = (uint32_t)(done - requests);
      ++completed;
      took = true;
    }
    if (deadline != 0 && rdtsc() >= deadline) stopping = true;
    const bool all_issued = stopping || (config->bench_ops != 0 && issued >= config->bench_ops);
    if (all_issued && blk.queue.in_flight == 0) break;
    if (!took && !added) blkWait(&blk);
  }
  const uint64_t ns = ticksToNanoseconds(rdtsc() - start);
  const uint64_t bytes = completed * bs;
  report("blk-bench pattern=%s bs=%lu qd=%u ops=%lu bytes=%lu ns=%lu iops=%lu mbps=%lu",
         kPatternNames[config->bench_pattern], bs, qd, completed, bytes, ns,
         ns ? completed * 1000000000 / ns : 0, ns ? bytes * 1000 / ns : 0);
  exitGuest(GUEST_EXIT_SUCCESS);
}
