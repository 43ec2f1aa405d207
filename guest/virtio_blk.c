// The virtio-blk driver (see virtio_blk.h; virtio 1.2, section 5.2).
#include "virtio_blk.h"

#include "guest.h"
#include "io.h"
#include "print.h"
#include "tsc.h"

// Configuration space offsets (section 5.2.4, struct virtio_blk_config).
#define CONFIG_CAPACITY 0
#define CONFIG_SIZE_MAX 8
#define CONFIG_SEG_MAX 12
#define CONFIG_BLK_SIZE 20
#define CONFIG_MAX_DISCARD_SECTORS 36
#define CONFIG_MAX_DISCARD_SEG 40
#define CONFIG_DISCARD_SECTOR_ALIGNMENT 44
#define CONFIG_MAX_WRITE_ZEROES_SECTORS 48
#define CONFIG_MAX_WRITE_ZEROES_SEG 52
#define CONFIG_WRITE_ZEROES_MAY_UNMAP 56

#define STALL_REPORT_SECONDS 10

__attribute__((noreturn)) static void blkFatal(const char* why) {
  report("error blk %s", why);
  exitGuest(GUEST_EXIT_CHECK_FAILED);
}

static void readConfig(struct BlkDevice* blk) {
  const struct VirtioDevice* device = &blk->device;
  const uint64_t features = device->features;
  uint32_t generation;
  do {
    generation = virtioConfigGeneration(device);
    blk->capacity = virtioConfig64(device, CONFIG_CAPACITY);
    blk->size_max = features & VIRTIO_FEATURE(VIRTIO_BLK_F_SIZE_MAX)
                        ? virtioConfig32(device, CONFIG_SIZE_MAX)
                        : 0;
    blk->seg_max = features & VIRTIO_FEATURE(VIRTIO_BLK_F_SEG_MAX)
                       ? virtioConfig32(device, CONFIG_SEG_MAX)
                       : 0;
    blk->blk_size = features & VIRTIO_FEATURE(VIRTIO_BLK_F_BLK_SIZE)
                        ? virtioConfig32(device, CONFIG_BLK_SIZE)
                        : BLK_SECTOR_SIZE;
    if (blk->discard) {
      blk->max_discard_sectors = virtioConfig32(device, CONFIG_MAX_DISCARD_SECTORS);
      blk->max_discard_seg = virtioConfig32(device, CONFIG_MAX_DISCARD_SEG);
      blk->discard_sector_alignment = virtioConfig32(device, CONFIG_DISCARD_SECTOR_ALIGNMENT);
    }
    if (blk->write_zeroes) {
      blk->max_write_zeroes_sectors = virtioConfig32(device, CONFIG_MAX_WRITE_ZEROES_SECTORS);
      blk->max_write_zeroes_seg = virtioConfig32(device, CONFIG_MAX_WRITE_ZEROES_SEG);
      blk->write_zeroes_may_unmap = virtioConfig8(device, CONFIG_WRITE_ZEROES_MAY_UNMAP) != 0;
    }
  } while (virtioConfigGeneration(device) != generation);
}

void blkOpen(struct BlkDevice* blk, const struct GuestConfig* config, uint32_t request_bytes,
             uint32_t segment_bytes) {
  *blk = (struct BlkDevice){0};
  char why[256];
  struct VirtioMmioEntry entry;
  if (!virtioFindDevice(config, VIRTIO_ID_BLK, &entry)) {
    format(why, sizeof(why), "no virtio-blk device among the %u virtio_mmio.device= entries",
           config->virtio_device_count);
    blkFatal(why);
  }
  const uint64_t wanted =
      VIRTIO_FEATURE(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_FEATURE(VIRTIO_BLK_F_SEG_MAX) |
      VIRTIO_FEATURE(VIRTIO_BLK_F_RO) | VIRTIO_FEATURE(VIRTIO_BLK_F_BLK_SIZE) |
      VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH) | VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD) |
      VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES);
  if (!virtioStart(&blk->device, &entry, VIRTIO_ID_BLK, "blk", config, wanted, why, sizeof(why))) {
    blkFatal(why);
  }
  const uint64_t features = blk->device.features;
  blk->read_only = (features & VIRTIO_FEATURE(VIRTIO_BLK_F_RO)) != 0;
  blk->flush = (features & VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH)) != 0;
  blk->discard = (features & VIRTIO_FEATURE(VIRTIO_BLK_F_DISCARD)) != 0;
  blk->write_zeroes = (features & VIRTIO_FEATURE(VIRTIO_BLK_F_WRITE_ZEROES)) != 0;
  readConfig(blk);
  if (blk->blk_size < BLK_SECTOR_SIZE || (blk->blk_size & (blk->blk_size - 1)) != 0) {
    format(why, sizeof(why), "blk_size=%u is not a power of 2 of at least 512", blk->blk_size);
    blkFatal(why);
  }
  if (blk->size_max != 0 && blk->size_max < segment_bytes) {
    segment_bytes = blk->size_max - blk->size_max % BLK_SECTOR_SIZE;
    if (segment_bytes == 0) {
      format(why, sizeof(why), "size_max=%u is below one sector", blk->size_max);
      blkFatal(why);
    }
  }
  blk->segment_bytes = segment_bytes;
  uint32_t data_segments = (request_bytes + segment_bytes - 1) / segment_bytes;
  if (blk->seg_max != 0 && data_segments > blk->seg_max) data_segments = blk->seg_max;
  if (data_segments > 65533) data_segments = 65533;  // a chain fits 16 bits; the queue caps it
  if (!virtqSetup(&blk->device, &blk->queue, 0, 0, (uint16_t)(data_segments + 2), config, why,
                  sizeof(why))) {
    blkFatal(why);
  }
  if (blk->queue.max_chain < 3) {
    format(why, sizeof(why), "queue size %u leaves no room for a data segment", blk->queue.size);
    blkFatal(why);
  }
  blk->max_segments = blk->queue.max_chain - 2u;
  blk->buffers =
      virtioAlloc(sizeof(struct VirtqBuffer) * blk->queue.max_chain, 8, "a blk request chain");
  virtioDriverOk(&blk->device);
  blk->next_config_check = rdtsc() + tscPerSecond();
  report(
      "blk config capacity=%lu blk_size=%u seg_max=%u size_max=%u ro=%u flush=%u discard=%u "
      "write_zeroes=%u features=0x%lx queue_size=%u segments=%u segment_bytes=%u indirect=%u "
      "event_idx=%u irq=%u",
      blk->capacity, blk->blk_size, blk->seg_max, blk->size_max, blk->read_only, blk->flush,
      blk->discard, blk->write_zeroes, features, blk->queue.size, blk->max_segments,
      blk->segment_bytes, blk->device.indirect, blk->device.event_idx, blk->device.irq_mode);
}

struct BlkRequest* blkAllocRequests(uint32_t count) {
  struct BlkRequest* requests = virtioAlloc(sizeof(struct BlkRequest) * count, 8, "blk requests");
  // 32 bytes each: the 16-byte header, then the status byte.
  uint8_t* memory = virtioAlloc(32ull * count, 64, "blk request headers");
  for (uint32_t i = 0; i < count; ++i) {
    requests[i].header = (struct BlkRequestHeader*)(memory + 32 * i);
    requests[i].status = memory + 32 * i + 16;
  }
  return requests;
}

bool blkSubmit(struct BlkDevice* blk, struct BlkRequest* request, uint32_t type, uint64_t sector,
               const struct VirtqBuffer* data, uint32_t data_count) {
  if (data_count > blk->max_segments) {
    blkFatal("internal: a request with more segments than the queue allows");
  }
  const uint16_t count = (uint16_t)(data_count + 2);
  if (!virtqHasRoom(&blk->queue, count)) return false;
  struct VirtqBuffer* buffers = blk->buffers;
  request->header->type = type;
  request->header->reserved = 0;
  request->header->sector = sector;
  *request->status = 0xff;  // not a status: shows a device that never wrote it
  buffers[0] =
      (struct VirtqBuffer){(uint64_t)request->header, sizeof(struct BlkRequestHeader), false};
  request->data_bytes = 0;
  for (uint32_t i = 0; i < data_count; ++i) {
    buffers[1 + i] = data[i];
    buffers[1 + i].writable = type == VIRTIO_BLK_T_IN;
    request->data_bytes += data[i].length;
  }
  buffers[count - 1] = (struct VirtqBuffer){(uint64_t)request->status, 1, true};
  request->writable_bytes = 1 + (type == VIRTIO_BLK_T_IN ? request->data_bytes : 0);
  request->in_flight = true;
  return virtqAdd(&blk->queue, buffers, count, request);
}

void blkKick(struct BlkDevice* blk) {
  virtqKick(&blk->queue);
}

const char* blkTypeName(uint32_t type) {
  switch (type) {
    case VIRTIO_BLK_T_IN:
      return "read";
    case VIRTIO_BLK_T_OUT:
      return "write";
    case VIRTIO_BLK_T_FLUSH:
      return "flush";
    case VIRTIO_BLK_T_DISCARD:
      return "discard";
    case VIRTIO_BLK_T_WRITE_ZEROES:
      return "write-zeroes";
  }
  return "other";
}

const char* blkStatusName(uint8_t status, char* buffer, uint32_t size) {
  switch (status) {
    case VIRTIO_BLK_S_OK:
      return "ok";
    case VIRTIO_BLK_S_IOERR:
      return "ioerr";
    case VIRTIO_BLK_S_UNSUPP:
      return "unsupp";
  }
  format(buffer, size, "status=%u", status);
  return buffer;
}

struct BlkRequest* blkTakeCompleted(struct BlkDevice* blk) {
  void* cookie;
  uint32_t length;
  if (!virtqGetUsed(&blk->queue, &cookie, &length)) return 0;
  struct BlkRequest* request = cookie;
  request->in_flight = false;
  blk->waiting_since = 0;
  if (length != request->writable_bytes) {
    // Section 2.7.8.1: the used length covers what the device wrote; the status byte is the
    // last byte of the device-writable part, so anything shorter leaves it unwritten.
    char why[200];
    format(why, sizeof(why),
           "used length %u for a %s request of %u bytes at sector %lu (expected %u: the "
           "device-writable bytes)",
           length, blkTypeName(request->header->type), request->data_bytes, request->header->sector,
           request->writable_bytes);
    blkFatal(why);
  }
  return request;
}

void blkCheckConfig(struct BlkDevice* blk) {
  const uint64_t now = rdtsc();
  if (now < blk->next_config_check && now + tscPerSecond() >= blk->next_config_check) return;
  blk->next_config_check = now + tscPerSecond();
  // Section 5.2.6.1: the driver SHOULD check capacity on a configuration change.
  if (virtioPollConfigChanges(&blk->device) == blk->config_changes) return;
  blk->config_changes = blk->device.config_changes;
  readConfig(blk);
  report("blk config-change capacity=%lu changes=%lu", blk->capacity, blk->config_changes);
}

void blkWait(struct BlkDevice* blk) {
  struct Virtq* queues[1] = {&blk->queue};
  virtioWait(&blk->device, queues, 1);
  blkCheckConfig(blk);
  if (virtqHasUsed(&blk->queue)) return;
  const uint64_t now = rdtsc();
  if (blk->waiting_since == 0) {
    blk->waiting_since = now;
    blk->next_stall_report = now + STALL_REPORT_SECONDS * tscPerSecond();
    return;
  }
  if (now < blk->next_stall_report) return;
  blk->next_stall_report = now + STALL_REPORT_SECONDS * tscPerSecond();
  if (virtioStatus(&blk->device) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) {
    blkFatal("the device set DEVICE_NEEDS_RESET");
  }
  report("blk stall in_flight=%u waited_s=%lu", blk->queue.in_flight,
         (now - blk->waiting_since) / tscPerSecond());
}

uint8_t blkRunOne(struct BlkDevice* blk, struct BlkRequest* request, uint32_t type, uint64_t sector,
                  const struct VirtqBuffer* data, uint32_t data_count) {
  if (blk->queue.in_flight != 0 || !blkSubmit(blk, request, type, sector, data, data_count)) {
    blkFatal("internal: blkRunOne needs an idle queue");
  }
  blkKick(blk);
  for (;;) {
    struct BlkRequest* done = blkTakeCompleted(blk);
    if (done == request) return *request->status;
    if (done == 0) blkWait(blk);
  }
}
