// blk: checks a virtio-blk device end to end. Writes a deterministic pattern over the first
// blk.mib MiB with multi-segment requests (a header, up to 16 scattered 4 KiB segments, a
// status byte; blk.qd of them in flight), flushes, reads it back and verifies it, then
// exercises DISCARD and WRITE_ZEROES (zeroes read back) when negotiated. A read-only disk
// must fail a write with VIRTIO_BLK_S_IOERR. blk.verify-only=1 only verifies (a pattern an
// earlier boot wrote); blk.loop=1 writes and verifies rounds forever (for tests that restart
// the storage or snapshot the VM under I/O).
//
// The pattern: the 64-bit word at disk byte offset o holds mix(o / 8, generation, blk.seed);
// generation 0 for single runs and verify-only, the round number (1, 2, ...) in a loop, so a
// lost write shows the previous round's data.
#include <stdint.h>

#include "guest.h"
#include "io.h"
#include "print.h"
#include "tsc.h"
#include "virtio_blk.h"
#include "workloads/workloads.h"

#define SEGMENT_BYTES 4096
#define SEGMENTS_PER_REQUEST 16
#define EXERCISE_BYTES (1u << 20)  // the range DISCARD and WRITE_ZEROES work on
#define MAX_RANGE_SEGMENTS 2       // discard/write-zeroes segments per request (when allowed)

enum PassKind { PASS_WRITE, PASS_VERIFY, PASS_READ, PASS_VERIFY_ZEROES };

struct BlkWork {
  struct BlkDevice blk;
  struct BlkRequest* requests;  // `slots` of them
  uint32_t slots;
  uint8_t* pages;  // slots * segments pages of SEGMENT_BYTES
  uint32_t segments;
  uint32_t segment_bytes;  // <= SEGMENT_BYTES (less when the device's size_max is smaller)
  uint32_t request_bytes;
  uint64_t seed;
  uint64_t read_bytes;  // in total, all passes
};

__attribute__((noreturn)) static void fatal(const char* why) {
  report("error blk %s", why);
  exitGuest(GUEST_EXIT_CHECK_FAILED);
}

static uint64_t mix(uint64_t x) {
  // The splitmix64 finalizer: every input bit affects every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

static uint64_t patternWord(uint64_t offset, uint64_t generation, uint64_t seed) {
  return mix((offset >> 3) ^ generation * 0x9e3779b97f4a7c15ull ^
             mix(seed + 0x632be59bd9b4e019ull));
}

static void fillPattern(uint64_t* words, uint64_t offset, uint32_t bytes, uint64_t generation,
                        uint64_t seed) {
  for (uint32_t i = 0; i < bytes / 8; ++i) words[i] = patternWord(offset + 8 * i, generation, seed);
}

static void checkData(const struct BlkWork* work, const uint64_t* words, uint64_t offset,
                      uint32_t bytes, enum PassKind kind, uint64_t generation) {
  for (uint32_t i = 0; i < bytes / 8; ++i) {
    const uint64_t expected =
        kind == PASS_VERIFY_ZEROES ? 0 : patternWord(offset + 8 * i, generation, work->seed);
    if (words[i] != expected) {
      const uint64_t at = offset + 8 * i;
      report("error blk mismatch sector=%lu offset=%lu expected=0x%lx found=0x%lx generation=%lu%s",
             at / BLK_SECTOR_SIZE, at, expected, words[i], generation,
             kind == PASS_VERIFY_ZEROES ? " (after write-zeroes)" : "");
      exitGuest(GUEST_EXIT_CHECK_FAILED);
    }
  }
}

// Segment i of slot s lives in page s * segments + (segments - 1 - i): the segments of a
// request lie in descending memory order, so the device cannot treat them as one buffer.
static uint8_t* segmentPage(const struct BlkWork* work, uint32_t slot, uint32_t segment) {
  return work->pages +
         ((uint64_t)slot * work->segments + (work->segments - 1 - segment)) * SEGMENT_BYTES;
}

static void failedRequest(const struct BlkRequest* request) {
  char buffer[16], why[160];
  format(why, sizeof(why), "request type=%s sector=%lu bytes=%u status=%s",
         blkTypeName(request->header->type), request->header->sector, request->data_bytes,
         blkStatusName(*request->status, buffer, sizeof(buffer)));
  fatal(why);
}

// One pass over disk bytes [start, end): writes the pattern, or reads and checks (or only
// reads) it, with up to `slots` requests in flight. Returns the bytes transferred.
static uint64_t runPass(struct BlkWork* work, enum PassKind kind, uint64_t start, uint64_t end,
                        uint64_t generation) {
  struct BlkDevice* blk = &work->blk;
  const uint32_t type = kind == PASS_WRITE ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  uint32_t free_slots[64];
  uint32_t free_count = 0;
  for (uint32_t s = 0; s < work->slots; ++s) free_slots[free_count++] = s;
  uint64_t next = start, done = 0;
  while (done < end - start) {
    bool added = false;
    while (next < end && free_count > 0) {
      const uint32_t slot = free_slots[free_count - 1];
      const uint64_t remaining = end - next;
      const uint32_t length =
          remaining < work->request_bytes ? (uint32_t)remaining : work->request_bytes;
      struct VirtqBuffer data[SEGMENTS_PER_REQUEST];
      uint32_t count = 0;
      for (uint32_t at = 0; at < length; at += work->segment_bytes, ++count) {
        uint8_t* page = segmentPage(work, slot, count);
        const uint32_t bytes =
            length - at < work->segment_bytes ? length - at : work->segment_bytes;
        if (kind == PASS_WRITE) {
          fillPattern((uint64_t*)page, next + at, bytes, generation, work->seed);
        }
        data[count] = (struct VirtqBuffer){(uint64_t)page, bytes, false};
      }
      struct BlkRequest* request = &work->requests[slot];
      request->user = next;
      if (!blkSubmit(blk, request, type, next / BLK_SECTOR_SIZE, data, count)) break;
      --free_count;
      next += length;
      added = true;
    }
    if (added) blkKick(blk);
    struct BlkRequest* request = blkTakeCompleted(blk);
    if (request == 0) {
      blkWait(blk);
      continue;
    }
    if (*request->status != VIRTIO_BLK_S_OK) failedRequest(request);
    const uint32_t slot = (uint32_t)(request - work->requests);
    if (kind != PASS_WRITE) {
      work->read_bytes += request->data_bytes;
      if (kind != PASS_READ) {
        uint32_t segment = 0;
        for (uint32_t at = 0; at < request->data_bytes; at += work->segment_bytes, ++segment) {
          const uint32_t left = request->data_bytes - at;
          checkData(work, (const uint64_t*)segmentPage(work, slot, segment), request->user + at,
                    left < work->segment_bytes ? left : work->segment_bytes, kind, generation);
        }
      }
    }
    done += request->data_bytes;
    free_slots[free_count++] = slot;
  }
  return done;
}

static const char* flush(struct BlkWork* work) {
  if (!work->blk.flush) return "unsupported";
  const uint8_t status = blkRunOne(&work->blk, &work->requests[0], VIRTIO_BLK_T_FLUSH, 0, 0, 0);
  if (status != VIRTIO_BLK_S_OK) failedRequest(&work->requests[0]);
  return "ok";
}

// DISCARD or WRITE_ZEROES over [sector, sector + sectors), split in two halves (more pieces
// when max_sectors is smaller): both in one request when the device takes two segments
// (max_discard_seg / max_write_zeroes_seg), else one request each. With `unmap`, the pieces of
// the second half carry the unmap flag (write zeroes only). Returns "ok" or why it did nothing.
static const char* runRanges(struct BlkWork* work, uint32_t type, uint64_t sector, uint64_t sectors,
                             uint32_t max_sectors, uint32_t max_segments, uint32_t alignment,
                             bool unmap) {
  if (max_sectors == 0 || max_segments == 0) return "unusable-limits";
  if (alignment > 1 && (sector % alignment != 0 || sectors % alignment != 0)) {
    return "unaligned";
  }
  static struct BlkDiscardWriteZeroes* ranges;
  if (ranges == 0) {
    ranges = virtioAlloc(sizeof(*ranges) * MAX_RANGE_SEGMENTS, 16, "discard ranges");
  }
  const uint32_t per_request =
      max_segments < MAX_RANGE_SEGMENTS ? max_segments : MAX_RANGE_SEGMENTS;
  uint64_t piece = sectors > 1 ? (sectors + 1) / 2 : sectors;
  if (piece > max_sectors) piece = max_sectors;
  if (alignment > 1) piece -= piece % alignment;
  if (piece == 0) return "unusable-limits";
  const uint64_t second_half = sector + sectors / 2;
  while (sectors > 0) {
    uint32_t count = 0;
    for (; count < per_request && sectors > 0; ++count) {
      const uint64_t n = sectors < piece ? sectors : piece;
      ranges[count].sector = sector;
      ranges[count].num_sectors = (uint32_t)n;
      ranges[count].flags = unmap && sector >= second_half ? BLK_WRITE_ZEROES_UNMAP : 0;
      sector += n;
      sectors -= n;
    }
    const struct VirtqBuffer data = {(uint64_t)ranges, (uint32_t)(sizeof(*ranges) * count), false};
    // Section 5.2.6: the header's sector is 0 for requests other than reads and writes.
    if (blkRunOne(&work->blk, &work->requests[0], type, 0, &data, 1) != VIRTIO_BLK_S_OK) {
      failedRequest(&work->requests[0]);
    }
  }
  return "ok";
}

static void setUp(struct BlkWork* work, const struct GuestConfig* config) {
  blkOpen(&work->blk, config, SEGMENTS_PER_REQUEST * SEGMENT_BYTES, SEGMENT_BYTES);
  const struct BlkDevice* blk = &work->blk;
  work->seed = config->blk_seed;
  work->slots = (uint32_t)config->blk_qd;
  work->segments =
      blk->max_segments < SEGMENTS_PER_REQUEST ? blk->max_segments : SEGMENTS_PER_REQUEST;
  work->segment_bytes = blk->segment_bytes;
  work->request_bytes = work->segments * work->segment_bytes;
  work->request_bytes -= work->request_bytes % blk->blk_size;
  char why[200];
  if (work->request_bytes == 0) {
    format(why, sizeof(why), "no request fits: size_max=%u seg_max=%u blk_size=%u", blk->size_max,
           blk->seg_max, blk->blk_size);
    fatal(why);
  }
  const uint64_t region = config->blk_mib << 20;
  if (region > blk->capacity * BLK_SECTOR_SIZE) {
    format(why, sizeof(why), "blk.mib=%lu is larger than the disk (%lu sectors, %lu MiB)",
           config->blk_mib, blk->capacity, blk->capacity * BLK_SECTOR_SIZE >> 20);
    fatal(why);
  }
  work->requests = blkAllocRequests(work->slots);
  work->pages = virtioAlloc((uint64_t)work->slots * work->segments * SEGMENT_BYTES, SEGMENT_BYTES,
                            "blk data pages");
}

// A read-only disk: one write must fail with IOERR; then the region is read (verified with
// blk.verify-only=1).
__attribute__((noreturn)) static void runReadOnly(struct BlkWork* work,
                                                  const struct GuestConfig* config) {
  if (config->blk_loop) fatal("blk.loop=1 needs a writable disk; this one is read-only (RO)");
  uint8_t* page = segmentPage(work, 0, 0);
  fillPattern((uint64_t*)page, 0, SEGMENT_BYTES, 0, work->seed);  // what verify-only expects
  const struct VirtqBuffer data = {(uint64_t)page, work->blk.blk_size, false};
  const uint8_t status = blkRunOne(&work->blk, &work->requests[0], VIRTIO_BLK_T_OUT, 0, &data, 1);
  if (status != VIRTIO_BLK_S_IOERR) {
    char buffer[16], why[160];
    format(why, sizeof(why),
           "a write to the read-only disk (VIRTIO_BLK_F_RO) ended with status %s, expected ioerr",
           blkStatusName(status, buffer, sizeof(buffer)));
    fatal(why);
  }
  const uint64_t region = config->blk_mib << 20;
  const uint64_t verified =
      runPass(work, config->blk_verify_only ? PASS_VERIFY : PASS_READ, 0, region, 0);
  report(
      "blk ok capacity=%lu written=0 verified=%lu read=%lu ro=1 write=ioerr flush=skipped "
      "discard=skipped write_zeroes=skipped notifications=%lu interrupts=%lu",
      work->blk.capacity, config->blk_verify_only ? verified : 0, work->read_bytes,
      work->blk.queue.notifications, virtioInterrupts(&work->blk.device));
  exitGuest(GUEST_EXIT_SUCCESS);
}

__attribute__((noreturn)) static void runLoop(struct BlkWork* work, uint64_t region) {
  uint64_t written = 0, verified = 0;
  struct RateLimiter progress = rateLimiterStart(rdtsc(), tscPerSecond());
  for (uint64_t round = 1;; ++round) {
    written += runPass(work, PASS_WRITE, 0, region, round);
    flush(work);
    verified += runPass(work, PASS_VERIFY, 0, region, round);
    blkCheckConfig(&work->blk);
    if (round == 1 || rateLimiterDue(&progress, rdtsc())) {
      report("blk loop round=%lu written=%lu verified=%lu", round, written, verified);
    }
  }
}

void runBlk(const struct GuestConfig* config) {
  static struct BlkWork work;
  setUp(&work, config);
  if (work.blk.read_only) runReadOnly(&work, config);
  const uint64_t region = config->blk_mib << 20;
  if (config->blk_verify_only) {
    const uint64_t verified = runPass(&work, PASS_VERIFY, 0, region, 0);
    report(
        "blk ok capacity=%lu written=0 verified=%lu read=%lu ro=0 write=skipped "
        "flush=skipped discard=skipped write_zeroes=skipped notifications=%lu interrupts=%lu",
        work.blk.capacity, verified, work.read_bytes, work.blk.queue.notifications,
        virtioInterrupts(&work.blk.device));
    exitGuest(GUEST_EXIT_SUCCESS);
  }
  if (config->blk_loop) runLoop(&work, region);

  uint64_t written = runPass(&work, PASS_WRITE, 0, region, 0);
  const char* flushed = flush(&work);
  uint64_t verified = runPass(&work, PASS_VERIFY, 0, region, 0);

  // DISCARD and WRITE_ZEROES on the region's last MiB, which then gets its pattern back.
  const uint64_t exercise = region < EXERCISE_BYTES ? region : EXERCISE_BYTES;
  const uint64_t first = region - exercise;
  const struct BlkDevice* blk = &work.blk;
  const char* discarded = "unsupported";
  const char* zeroed = "unsupported";
  if (blk->discard) {
    discarded = runRanges(&work, VIRTIO_BLK_T_DISCARD, first / BLK_SECTOR_SIZE,
                          exercise / BLK_SECTOR_SIZE, blk->max_discard_sectors,
                          blk->max_discard_seg, blk->discard_sector_alignment, false);
  }
  if (blk->write_zeroes) {
    zeroed = runRanges(&work, VIRTIO_BLK_T_WRITE_ZEROES, first / BLK_SECTOR_SIZE,
                       exercise / BLK_SECTOR_SIZE, blk->max_write_zeroes_sectors,
                       blk->max_write_zeroes_seg, 1, blk->write_zeroes_may_unmap);
    if (zeroed[0] == 'o') runPass(&work, PASS_VERIFY_ZEROES, first, region, 0);
  }
  if (blk->discard || blk->write_zeroes) {
    written += runPass(&work, PASS_WRITE, first, region, 0);
    flush(&work);
    verified += runPass(&work, PASS_VERIFY, first, region, 0);
  }
  report(
      "blk ok capacity=%lu written=%lu verified=%lu read=%lu ro=0 write=ok flush=%s discard=%s "
      "write_zeroes=%s notifications=%lu interrupts=%lu",
      blk->capacity, written, verified, work.read_bytes, flushed, discarded, zeroed,
      blk->queue.notifications, virtioInterrupts(&blk->device));
  exitGuest(GUEST_EXIT_SUCCESS);
}
