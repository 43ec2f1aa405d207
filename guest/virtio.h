// A virtio driver core for the test guest: the virtio-mmio transport in its modern form
// (virtio 1.2, section 4.2; register layout version 2 only) and split virtqueues (section 2.7),
// driven from CPL3, by polling (the default) or with interrupts through the IOAPIC
// (virtio.irq=1). Device drivers (virtio_blk.c, workloads/net.c) build on it.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmdline.h"

// Device IDs (virtio 1.2, section 5).
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLK 2
#define VIRTIO_ID_RNG 4
#define VIRTIO_ID_BALLOON 5

// Device-independent feature bits (section 6).
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_ORDER_PLATFORM 36
#define VIRTIO_FEATURE(bit) (1ull << (bit))

// Split virtqueue layout (section 2.7). All fields little-endian, as x86 is.
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct VirtqAvail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[];  // [size], then used_event (with VIRTIO_F_EVENT_IDX)
};

struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};

struct VirtqUsed {
  uint16_t flags;
  uint16_t idx;
  struct VirtqUsedElem ring[];  // [size], then avail_event (with VIRTIO_F_EVENT_IDX)
};

// One started virtio-mmio device.
struct VirtioDevice {
  uint64_t base;
  uint32_t irq;
  uint32_t device_id;
  const char* name;          // "blk", "net": the prefix of its error lines
  uint64_t offered;          // the device's feature bits
  uint64_t features;         // the negotiated ones
  bool irq_mode;             // virtio.irq=1
  bool event_idx;            // VIRTIO_F_EVENT_IDX negotiated
  bool indirect;             // VIRTIO_F_INDIRECT_DESC negotiated
  uint64_t irq_acked;        // the interrupt count when InterruptStatus was last acknowledged
  uint64_t config_changes;   // configuration change notifications (InterruptStatus bit 1)
  uint64_t used_interrupts;  // used buffer notifications (InterruptStatus bit 0)
};

// One split virtqueue. The driver's own copies of the free list and chain lengths are the
// truth: descriptors in guest memory are shared with the device and not trusted.
struct Virtq {
  struct VirtioDevice* device;
  uint16_t index;
  uint16_t size;
  uint16_t max_chain;  // buffers per virtqAdd
  volatile struct VirtqDesc* desc;
  volatile struct VirtqAvail* avail;
  volatile struct VirtqUsed* used;
  struct VirtqDesc* indirect_tables;  // max_chain entries per head, when the device has them
  uint16_t* next_free;
  uint16_t* chain_length;  // descriptors held by each in-flight head; 0 = not in flight
  void** cookies;
  uint16_t free_head;
  uint16_t free_count;
  uint16_t avail_idx;   // the driver's next avail index, published by virtqKick
  uint16_t kicked_idx;  // the avail index published at the last kick
  uint16_t last_used;   // the next used entry to read
  uint32_t in_flight;
  uint64_t notifications;  // QueueNotify writes
};

// A buffer of a request: device-readable, or device-writable when `writable`.
struct VirtqBuffer {
  uint64_t addr;
  uint32_t length;
  bool writable;
};

// Memory for rings and buffers: a bump allocator over RAM from VIRTIO_HEAP_BASE (layout.h),
// zeroed, never freed. Ends the guest (exit 1) with a line naming `what` when RAM runs out.
void* virtioAlloc(uint64_t size, uint64_t align, const char* what);

// Probes every virtio_mmio.device= entry (reporting one `virtio device` line each, the first
// time) and returns the first with `device_id`, or false.
bool virtioFindDevice(const struct GuestConfig* config, uint32_t device_id,
                      struct VirtioMmioEntry* found);

// Device initialization (section 3.1.1) up to FEATURES_OK: reset, ACKNOWLEDGE, DRIVER,
// feature negotiation. Negotiates `wanted` & offered plus VIRTIO_F_VERSION_1 (required), the
// platform bits when offered, and the ring features the command line asks for (required then).
// In interrupt mode also routes the device's IOAPIC pin. False with the reason in `why` (the
// device is then marked FAILED).
bool virtioStart(struct VirtioDevice* device, const struct VirtioMmioEntry* entry,
                 uint32_t device_id, const char* name, const struct GuestConfig* config,
                 uint64_t wanted, char* why, size_t why_size);

// Sets up queue `index` (section 4.2.3.2) with at most `max_size` entries (0: the device's
// maximum, capped by virtio.queue_size) for chains of up to `max_chain` buffers, or of the
// queue's size when that is smaller (queue->max_chain tells).
bool virtqSetup(struct VirtioDevice* device, struct Virtq* queue, uint16_t index, uint32_t max_size,
                uint16_t max_chain, const struct GuestConfig* config, char* why, size_t why_size);

// Sets DRIVER_OK: the device is live.
void virtioDriverOk(struct VirtioDevice* device);

// The device status register (for DEVICE_NEEDS_RESET checks).
uint32_t virtioStatus(const struct VirtioDevice* device);
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64

// Configuration space reads with the access widths the MMIO transport requires, and
// ConfigGeneration for consistent multi-field reads (section 2.5.1).
uint8_t virtioConfig8(const struct VirtioDevice* device, uint32_t offset);
uint16_t virtioConfig16(const struct VirtioDevice* device, uint32_t offset);
uint32_t virtioConfig32(const struct VirtioDevice* device, uint32_t offset);
uint64_t virtioConfig64(const struct VirtioDevice* device, uint32_t offset);
uint32_t virtioConfigGeneration(const struct VirtioDevice* device);

// Whether `count` buffers fit into the queue now.
bool virtqHasRoom(const struct Virtq* queue, uint16_t count);

// Queues a chain (device-readable buffers first), through an indirect table when the device
// has them and the chain has more than one buffer. Not visible to the device before
// virtqKick. False when there is no room.
bool virtqAdd(struct Virtq* queue, const struct VirtqBuffer* buffers, uint16_t count, void* cookie);

// Publishes the added chains and notifies the device unless it asked not to be (used flags,
// or avail_event with VIRTIO_F_EVENT_IDX).
void virtqKick(struct Virtq* queue);

// Whether the device has used buffers the driver has not taken yet.
bool virtqHasUsed(const struct Virtq* queue);

// Takes one used chain: its cookie and the length the device wrote. False when none. A used
// id the driver did not make available ends the guest (exit 1) with an error line.
bool virtqGetUsed(struct Virtq* queue, void** cookie, uint32_t* length);

// Waits for work: returns when one of `queues` has used buffers, or (interrupt mode) after any
// interrupt, or (polling) after about a millisecond, so that callers can do periodic work.
// In interrupt mode it acknowledges InterruptStatus and counts configuration changes.
void virtioWait(struct VirtioDevice* device, struct Virtq* const* queues, int count);

// Interrupts taken for the device's line (interrupt mode; 0 when polling).
uint64_t virtioInterrupts(const struct VirtioDevice* device);

// Polling mode: reads and acknowledges InterruptStatus (a VM exit; call it rarely) so that
// configuration changes are seen. Returns the configuration change count in both modes.
uint64_t virtioPollConfigChanges(struct VirtioDevice* device);
