// A virtio-blk driver (virtio 1.2, section 5.2) on one request queue, for the blk and
// blk-bench workloads: configuration, feature negotiation, and asynchronous requests of a
// header, data segments and a status byte.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cmdline.h"
#include "virtio.h"

// Feature bits (section 5.2.3).
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

// Request types and status values (section 5.2.6).
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define BLK_SECTOR_SIZE 512

// The data of a discard or write-zeroes request: one or more of these.
struct BlkDiscardWriteZeroes {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;  // bit 0: unmap (write zeroes only)
};
#define BLK_WRITE_ZEROES_UNMAP 1

struct BlkDevice {
  struct VirtioDevice device;
  struct Virtq queue;
  uint64_t capacity;  // in 512-byte sectors
  uint32_t blk_size;  // bytes; 512 when the device does not say
  uint32_t seg_max;   // data segments per request; 0: no limit from the device
  uint32_t size_max;  // bytes per segment; 0: no limit from the device
  bool read_only, flush, discard, write_zeroes;
  uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
  uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
  bool write_zeroes_may_unmap;
  uint32_t segment_bytes;       // bytes per data segment: the caller's wish, or less for size_max
  uint32_t max_segments;        // data segments a request may have here (device and queue limits)
  struct VirtqBuffer* buffers;  // blkSubmit's chain: max_segments + 2 entries
  uint64_t waiting_since;       // TSC when blkWait began waiting without a completion; 0: not
  uint64_t next_stall_report;   // TSC
  uint64_t next_config_check;   // TSC
  uint64_t config_changes;      // configuration changes reported so far
};

// Header and status of one request, in memory the device reads and writes.
struct BlkRequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

struct BlkRequest {
  struct BlkRequestHeader* header;  // device-readable
  volatile uint8_t* status;         // device-writable
  uint32_t data_bytes;
  uint32_t writable_bytes;  // what the used length must be: data of reads, plus the status
  bool in_flight;
  uint64_t user;  // the caller's
};

// Finds the first virtio-blk device and starts it, for requests of `request_bytes` in data
// segments of `segment_bytes` (fewer bytes per segment when the device's size_max says so;
// fewer segments when seg_max or the queue size does: see segment_bytes and max_segments).
// Reports the `blk config` line. On failure reports an error line and exits 1.
void blkOpen(struct BlkDevice* blk, const struct GuestConfig* config, uint32_t request_bytes,
             uint32_t segment_bytes);

// `count` request slots (header and status memory).
struct BlkRequest* blkAllocRequests(uint32_t count);

// Queues a request (not yet visible to the device: blkKick). For IN the data buffers are
// device-writable, else device-readable. False when the queue has no room.
bool blkSubmit(struct BlkDevice* blk, struct BlkRequest* request, uint32_t type, uint64_t sector,
               const struct VirtqBuffer* data, uint32_t data_count);

void blkKick(struct BlkDevice* blk);

// A completed request, or 0 when none is. Checks the used length.
struct BlkRequest* blkTakeCompleted(struct BlkDevice* blk);

// Waits for a completion (see virtioWait); reports a stall now and then, and ends the guest
// when the device has set DEVICE_NEEDS_RESET.
void blkWait(struct BlkDevice* blk);

// At most once a second: when the device signalled a configuration change (InterruptStatus
// bit 1), re-reads the capacity and reports a `blk config-change` line. blkWait calls it.
void blkCheckConfig(struct BlkDevice* blk);

// Runs one request to completion and returns its status.
uint8_t blkRunOne(struct BlkDevice* blk, struct BlkRequest* request, uint32_t type, uint64_t sector,
                  const struct VirtqBuffer* data, uint32_t data_count);

// "ok", "ioerr", "unsupp" or "status=N".
const char* blkStatusName(uint8_t status, char* buffer, uint32_t size);
const char* blkTypeName(uint32_t type);
