// The virtio-mmio transport (virtio 1.2, section 4.2.2: the version 2 register layout) and
// split virtqueues (section 2.7), see virtio.h.
//
// Memory ordering: the device is a VMM thread on another CPU of a coherent x86 system, so the
// spec's write and read barriers (between descriptor writes and the avail index; between
// reading the used index and the used entries) need only stop the compiler; the one
// store-then-load ordering (publish the avail index, then read the device's used flags or
// avail_event) needs mfence (fullBarrier). Register accesses are volatile and, being MMIO,
// trap to the VMM, which sees all earlier stores.
#include "virtio.h"

#include "boot_info.h"
#include "guest.h"
#include "hvm_start_info.h"
#include "io.h"
#include "ioapic.h"
#include "lapic.h"
#include "layout.h"
#include "lib.h"
#include "print.h"
#include "tsc.h"

// Registers (section 4.2.2, table "MMIO Device Register Layout"); 32-bit accesses only.
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_VENDOR_ID 0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH 0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100

#define VIRTIO_MMIO_MAGIC 0x74726976  // "virt"
#define VIRTIO_MMIO_MODERN_VERSION 2
#define INTERRUPT_USED_BUFFER 1
#define INTERRUPT_CONFIG_CHANGE 2

// Device status bits (section 2.1).
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_FAILED 128

#define PAGE_SIZE 4096
// Interrupt mode: a LAPIC timer tick wakes the waiting CPU now and then, so that periodic work
// (progress lines, stall reports) still happens while no device interrupt comes. About 100 ms
// with KVM's 1 GHz APIC bus (divided by 16).
#define WAKE_TIMER_INITIAL_COUNT 6250000

extern volatile uint64_t virtio_irq_counts[VIRTIO_IRQ_LINES];  // vectors.S

static uint32_t reg(const struct VirtioDevice* device, uint32_t offset) {
  return mmioRead32(device->base + offset);
}

static void setReg(const struct VirtioDevice* device, uint32_t offset, uint32_t value) {
  mmioWrite32(device->base + offset, value);
}

// --- memory ---

static uint64_t heap_next, heap_end;

void* virtioAlloc(uint64_t size, uint64_t align, const char* what) {
  if (heap_end == 0) {
    for (uint32_t i = 0; i < boot_info.memmap_entries; ++i) {
      const struct MemoryRange* range = &boot_info.memmap[i];
      if (range->type == HVM_MEMMAP_TYPE_RAM && range->addr <= VIRTIO_HEAP_BASE &&
          VIRTIO_HEAP_BASE < range->addr + range->size) {
        heap_next = VIRTIO_HEAP_BASE;
        heap_end = range->addr + range->size;
        if (heap_end > IDENTITY_MAP_LIMIT) heap_end = IDENTITY_MAP_LIMIT;
      }
    }
  }
  const uint64_t start = (heap_next + align - 1) & ~(align - 1);
  if (heap_end == 0 || start + size > heap_end || start + size < start) {
    report(
        "error out of memory: %s needs %lu bytes; the virtio heap is RAM from %lu MiB to %lu "
        "MiB",
        what, size, (uint64_t)VIRTIO_HEAP_BASE >> 20, heap_end >> 20);
    exitGuest(GUEST_EXIT_CHECK_FAILED);
  }
  heap_next = start + size;
  memset((void*)start, 0, size);
  return (void*)start;
}

// --- discovery ---

static const char* typeName(uint32_t device_id) {
  switch (device_id) {
    case 0:
      return "none";
    case VIRTIO_ID_NET:
      return "net";
    case VIRTIO_ID_BLK:
      return "blk";
    case VIRTIO_ID_RNG:
      return "rng";
    case VIRTIO_ID_BALLOON:
      return "balloon";
  }
  return "other";
}

// Per command-line entry: the device ID, or 0 when the entry is ignored.
static uint32_t probed_ids[MAX_VIRTIO_MMIO_DEVICES];
static bool probed;

static void probeAll(const struct GuestConfig* config) {
  for (uint32_t i = 0; i < config->virtio_device_count; ++i) {
    const struct VirtioMmioEntry* entry = &config->virtio_devices[i];
    struct VirtioDevice device = {.base = entry->base};
    probed_ids[i] = 0;
    if (entry->size < VIRTIO_MMIO_CONFIG || entry->base + entry->size > IDENTITY_MAP_LIMIT ||
        (entry->base & 3) != 0) {
      report(
          "virtio device base=0x%lx size=%lu irq=%u ignored: the window must be 4-byte "
          "aligned, at least 256 bytes long and below 4 GiB",
          entry->base, entry->size, entry->irq);
      continue;
    }
    // Section 4.2.3.1.1: check MagicValue and Version, then DeviceID; with ID 0 touch nothing
    // else (and report no error).
    const uint32_t magic = reg(&device, VIRTIO_MMIO_MAGIC_VALUE);
    const uint32_t version = reg(&device, VIRTIO_MMIO_VERSION);
    if (magic != VIRTIO_MMIO_MAGIC) {
      report("virtio device base=0x%lx size=%lu irq=%u ignored: magic 0x%x (expected 0x%x)",
             entry->base, entry->size, entry->irq, magic, VIRTIO_MMIO_MAGIC);
      continue;
    }
    if (version != VIRTIO_MMIO_MODERN_VERSION) {
      report(
          "virtio device base=0x%lx size=%lu irq=%u ignored: version %u (only version 2, "
          "modern virtio-mmio, is supported; QEMU: -global virtio-mmio.force-legacy=false)",
          entry->base, entry->size, entry->irq, version);
      continue;
    }
    const uint32_t id = reg(&device, VIRTIO_MMIO_DEVICE_ID);
    if (id == 0) {
      report("virtio device base=0x%lx size=%lu irq=%u id=0 type=none", entry->base, entry->size,
             entry->irq);
      continue;
    }
    probed_ids[i] = id;
    report("virtio device base=0x%lx size=%lu irq=%u id=%u type=%s vendor=0x%x", entry->base,
           entry->size, entry->irq, id, typeName(id), reg(&device, VIRTIO_MMIO_VENDOR_ID));
  }
  probed = true;
}

bool virtioFindDevice(const struct GuestConfig* config, uint32_t device_id,
                      struct VirtioMmioEntry* found) {
  if (!probed) probeAll(config);
  for (uint32_t i = 0; i < config->virtio_device_count; ++i) {
    if (probed_ids[i] == device_id) {
      *found = config->virtio_devices[i];
      return true;
    }
  }
  return false;
}

// --- initialization ---

static bool fail(struct VirtioDevice* device, uint32_t status, char* why, size_t why_size,
                 const char* message) {
  setReg(device, VIRTIO_MMIO_STATUS, status | STATUS_FAILED);
  format(why, why_size, "%s", message);
  return false;
}

static void startWakeTimer(void) {
  static bool started;
  if (started) return;
  started = true;
  lapicStartPeriodicTimer(WAKE_TIMER_INITIAL_COUNT);
}

bool virtioStart(struct VirtioDevice* device, const struct VirtioMmioEntry* entry,
                 uint32_t device_id, const char* name, const struct GuestConfig* config,
                 uint64_t wanted, char* why, size_t why_size) {
  *device = (struct VirtioDevice){
      .base = entry->base,
      .irq = entry->irq,
      .device_id = device_id,
      .name = name,
      .irq_mode = config->virtio_irq != 0,
  };
  char message[160];
  // Reset, and wait for it to complete (section 2.4.2: until status reads 0).
  setReg(device, VIRTIO_MMIO_STATUS, 0);
  const uint64_t give_up = rdtsc() + tscPerSecond();
  while (reg(device, VIRTIO_MMIO_STATUS) != 0) {
    if (rdtsc() > give_up) return fail(device, 0, why, why_size, "the device did not reset");
    cpuRelax();
  }
  uint32_t status = STATUS_ACKNOWLEDGE;
  setReg(device, VIRTIO_MMIO_STATUS, status);
  status |= STATUS_DRIVER;
  setReg(device, VIRTIO_MMIO_STATUS, status);

  setReg(device, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
  uint64_t offered = reg(device, VIRTIO_MMIO_DEVICE_FEATURES);
  setReg(device, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  offered |= (uint64_t)reg(device, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
  device->offered = offered;

  const struct {
    uint64_t bit;
    bool required;
    const char* why;
  } kRequired[] = {
      {VIRTIO_FEATURE(VIRTIO_F_VERSION_1), true,
       "VIRTIO_F_VERSION_1 (a legacy-only device; modern virtio is required)"},
      {VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC), config->virtio_indirect != 0,
       "VIRTIO_F_INDIRECT_DESC, which virtio.indirect=1 asks for"},
      {VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX), config->virtio_event_idx != 0,
       "VIRTIO_F_EVENT_IDX, which virtio.event_idx=1 asks for"},
  };
  uint64_t features = offered & wanted;
  for (size_t i = 0; i < sizeof(kRequired) / sizeof(kRequired[0]); ++i) {
    if (!kRequired[i].required) continue;
    if ((offered & kRequired[i].bit) == 0) {
      format(message, sizeof(message), "the device does not offer %s (features 0x%lx)",
             kRequired[i].why, offered);
      return fail(device, status, why, why_size, message);
    }
    features |= kRequired[i].bit;
  }
  // Section 6.1: a driver SHOULD accept VIRTIO_F_ACCESS_PLATFORM when offered; there is no
  // IOMMU here, so device addresses are guest-physical either way. ORDER_PLATFORM asks for
  // the platform's DMA barriers, which on x86 are the ones used here anyway.
  features |= offered &
              (VIRTIO_FEATURE(VIRTIO_F_ACCESS_PLATFORM) | VIRTIO_FEATURE(VIRTIO_F_ORDER_PLATFORM));
  setReg(device, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  setReg(device, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
  setReg(device, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  setReg(device, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
  status |= STATUS_FEATURES_OK;
  setReg(device, VIRTIO_MMIO_STATUS, status);
  if ((reg(device, VIRTIO_MMIO_STATUS) & STATUS_FEATURES_OK) == 0) {
    format(message, sizeof(message),
           "the device did not accept features 0x%lx (FEATURES_OK is clear; offered 0x%lx)",
           features, offered);
    return fail(device, status, why, why_size, message);
  }
  device->features = features;
  device->event_idx = (features & VIRTIO_FEATURE(VIRTIO_F_EVENT_IDX)) != 0;
  device->indirect = (features & VIRTIO_FEATURE(VIRTIO_F_INDIRECT_DESC)) != 0;

  if (device->irq_mode) {
    uint32_t pins = ioapicPins();
    if (pins > VIRTIO_IRQ_LINES) pins = VIRTIO_IRQ_LINES;
    if (device->irq >= pins) {
      format(message, sizeof(message),
             "irq %u is not a pin of the IOAPIC at 0x%x (it has %u); virtio.irq=1 needs one",
             device->irq, IOAPIC_BASE, pins);
      return fail(device, status, why, why_size, message);
    }
    lapicEnable();
    ioapicRouteEdge(device->irq, (uint8_t)(VECTOR_VIRTIO_BASE + device->irq), lapicId());
    startWakeTimer();
    device->irq_acked = virtio_irq_counts[device->irq];
  }
  return true;
}

static volatile uint16_t* usedEvent(const struct Virtq* queue) {
  return &queue->avail->ring[queue->size];
}

static volatile uint16_t* availEvent(const struct Virtq* queue) {
  return (volatile uint16_t*)&queue->used->ring[queue->size];
}

bool virtqSetup(struct VirtioDevice* device, struct Virtq* queue, uint16_t index, uint32_t max_size,
                uint16_t max_chain, const struct GuestConfig* config, char* why, size_t why_size) {
  *queue = (struct Virtq){.device = device, .index = index, .max_chain = max_chain};
  setReg(device, VIRTIO_MMIO_QUEUE_SEL, index);
  if (reg(device, VIRTIO_MMIO_QUEUE_READY) != 0) {
    format(why, why_size, "queue %u is in use after the reset (QueueReady=1)", index);
    return false;
  }
  uint32_t size = reg(device, VIRTIO_MMIO_QUEUE_NUM_MAX);
  if (size == 0) {
    format(why, why_size, "queue %u is not available (QueueNumMax=0)", index);
    return false;
  }
  if (size > 32768) size = 32768;
  if (config->virtio_queue_size != 0 && config->virtio_queue_size < size) {
    size = (uint32_t)config->virtio_queue_size;
  }
  if (max_size != 0 && max_size < size) size = max_size;
  while (size & (size - 1)) size &= size - 1;  // a power of 2 (section 2.7)
  // Section 2.7.5.3.1: no chain, indirect or not, is longer than the queue.
  if (max_chain > size) max_chain = (uint16_t)size;
  queue->max_chain = max_chain;
  queue->size = (uint16_t)size;

  // Section 2.7: descriptor table 16-byte aligned, driver area 2, device area 4. Each gets
  // pages of its own, which satisfies all three.
  queue->desc = virtioAlloc(sizeof(struct VirtqDesc) * size, PAGE_SIZE, "a descriptor table");
  queue->avail = virtioAlloc(sizeof(struct VirtqAvail) + 2 * size + 2, PAGE_SIZE, "an avail ring");
  queue->used = virtioAlloc(sizeof(struct VirtqUsed) + sizeof(struct VirtqUsedElem) * size + 2,
                            PAGE_SIZE, "a used ring");
  queue->next_free = virtioAlloc(2 * size, 8, "queue state");
  queue->chain_length = virtioAlloc(2 * size, 8, "queue state");
  queue->cookies = virtioAlloc(sizeof(void*) * size, 8, "queue state");
  if (device->indirect) {
    queue->indirect_tables = virtioAlloc((uint64_t)sizeof(struct VirtqDesc) * size * max_chain,
                                         PAGE_SIZE, "indirect descriptor tables");
  }
  for (uint32_t i = 0; i < size; ++i) queue->next_free[i] = (uint16_t)(i + 1);
  queue->free_head = 0;
  queue->free_count = (uint16_t)size;

  // Used buffer notifications: wanted only in interrupt mode. Without EVENT_IDX the flag
  // suppresses them; with it the flag must stay 0 (section 2.7.7) and used_event does the job:
  // last_used - 1 means "not before 65535 more".
  if (device->event_idx) {
    *usedEvent(queue) = device->irq_mode ? 0 : 0xffff;
  } else {
    queue->avail->flags = device->irq_mode ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
  }

  setReg(device, VIRTIO_MMIO_QUEUE_NUM, size);
  const uint64_t desc = (uint64_t)queue->desc, driver = (uint64_t)queue->avail,
                 used = (uint64_t)queue->used;
  setReg(device, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
  setReg(device, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
  setReg(device, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)driver);
  setReg(device, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(driver >> 32));
  setReg(device, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used);
  setReg(device, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
  compilerBarrier();  // the zeroed rings before the device may look at them
  setReg(device, VIRTIO_MMIO_QUEUE_READY, 1);
  return true;
}

void virtioDriverOk(struct VirtioDevice* device) {
  setReg(device, VIRTIO_MMIO_STATUS, reg(device, VIRTIO_MMIO_STATUS) | STATUS_DRIVER_OK);
}

uint32_t virtioStatus(const struct VirtioDevice* device) {
  return reg(device, VIRTIO_MMIO_STATUS);
}

// --- configuration space ---

uint8_t virtioConfig8(const struct VirtioDevice* device, uint32_t offset) {
  return mmioRead8(device->base + VIRTIO_MMIO_CONFIG + offset);
}

uint16_t virtioConfig16(const struct VirtioDevice* device, uint32_t offset) {
  return mmioRead16(device->base + VIRTIO_MMIO_CONFIG + offset);
}

uint32_t virtioConfig32(const struct VirtioDevice* device, uint32_t offset) {
  return mmioRead32(device->base + VIRTIO_MMIO_CONFIG + offset);
}

uint32_t virtioConfigGeneration(const struct VirtioDevice* device) {
  return reg(device, VIRTIO_MMIO_CONFIG_GENERATION);
}

uint64_t virtioConfig64(const struct VirtioDevice* device, uint32_t offset) {
  // Two 32-bit reads (the transport allows no 64-bit access), retried until ConfigGeneration
  // shows that no change fell between them.
  for (;;) {
    const uint32_t before = virtioConfigGeneration(device);
    const uint64_t low = virtioConfig32(device, offset);
    const uint64_t high = virtioConfig32(device, offset + 4);
    if (virtioConfigGeneration(device) == before) return low | high << 32;
  }
}

// --- virtqueues ---

bool virtqHasRoom(const struct Virtq* queue, uint16_t count) {
  if (queue->indirect_tables != 0 && count > 1) return queue->free_count >= 1;
  return queue->free_count >= count;
}

bool virtqAdd(struct Virtq* queue, const struct VirtqBuffer* buffers, uint16_t count,
              void* cookie) {
  if (count == 0 || count > queue->max_chain || !virtqHasRoom(queue, count)) return false;
  const uint16_t head = queue->free_head;
  if (queue->indirect_tables != 0 && count > 1) {
    // One ring descriptor pointing at this head's table (section 2.7.5.3); the table's
    // entries chain by index within the table.
    struct VirtqDesc* table = queue->indirect_tables + (uint32_t)head * queue->max_chain;
    for (uint16_t i = 0; i < count; ++i) {
      table[i].addr = buffers[i].addr;
      table[i].len = buffers[i].length;
      table[i].flags = (uint16_t)((buffers[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
                                  (i + 1 < count ? VIRTQ_DESC_F_NEXT : 0));
      table[i].next = (uint16_t)(i + 1 < count ? i + 1 : 0);
    }
    queue->desc[head].addr = (uint64_t)table;
    queue->desc[head].len = (uint32_t)(sizeof(struct VirtqDesc) * count);
    queue->desc[head].flags = VIRTQ_DESC_F_INDIRECT;
    queue->desc[head].next = 0;
    queue->free_head = queue->next_free[head];
    queue->free_count--;
    queue->chain_length[head] = 1;
  } else {
    // The chain follows the free list, whose links the driver keeps in next_free.
    uint16_t d = head;
    for (uint16_t i = 0; i < count; ++i) {
      queue->desc[d].addr = buffers[i].addr;
      queue->desc[d].len = buffers[i].length;
      queue->desc[d].flags = (uint16_t)((buffers[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
                                        (i + 1 < count ? VIRTQ_DESC_F_NEXT : 0));
      queue->desc[d].next = i + 1 < count ? queue->next_free[d] : 0;
      d = queue->next_free[d];
    }
    queue->free_head = d;
    queue->free_count = (uint16_t)(queue->free_count - count);
    queue->chain_length[head] = count;
  }
  queue->cookies[head] = cookie;
  queue->avail->ring[queue->avail_idx % queue->size] = head;
  queue->avail_idx++;
  queue->in_flight++;
  return true;
}

void virtqKick(struct Virtq* queue) {
  if (queue->avail_idx == queue->kicked_idx) return;
  compilerBarrier();  // descriptors and ring entries before the index (stores stay in order)
  queue->avail->idx = queue->avail_idx;
  fullBarrier();  // the index store before reading the device's suppression state
  bool notify;
  if (queue->device->event_idx) {
    // Section 2.7.10: notify when avail_event lies in [old, new).
    const uint16_t event = *availEvent(queue);
    notify =
        (uint16_t)(queue->avail_idx - event - 1) < (uint16_t)(queue->avail_idx - queue->kicked_idx);
  } else {
    notify = (queue->used->flags & VIRTQ_USED_F_NO_NOTIFY) == 0;
  }
  queue->kicked_idx = queue->avail_idx;
  if (notify) {
    setReg(queue->device, VIRTIO_MMIO_QUEUE_NOTIFY, queue->index);
    queue->notifications++;
  }
}

bool virtqHasUsed(const struct Virtq* queue) {
  return queue->used->idx != queue->last_used;
}

__attribute__((noreturn)) static void deviceBroken(const struct Virtq* queue, const char* what,
                                                   uint64_t value) {
  report("error virtio %s queue %u: %s (%lu; %u chains in flight, last used index %u)",
         queue->device->name, queue->index, what, value, queue->in_flight, queue->last_used);
  exitGuest(GUEST_EXIT_CHECK_FAILED);
}

bool virtqGetUsed(struct Virtq* queue, void** cookie, uint32_t* length) {
  const uint16_t used_idx = queue->used->idx;
  if (used_idx == queue->last_used) return false;
  if ((uint16_t)(used_idx - queue->last_used) > queue->in_flight) {
    deviceBroken(queue, "the used index ran ahead of the chains in flight", used_idx);
  }
  compilerBarrier();  // the index before the entry it covers (loads stay in order)
  const volatile struct VirtqUsedElem* element = &queue->used->ring[queue->last_used % queue->size];
  const uint32_t id = element->id;
  const uint32_t used_length = element->len;
  if (id >= queue->size || queue->chain_length[id] == 0) {
    deviceBroken(queue, "the device used a descriptor id that is not the head of a chain in flight",
                 id);
  }
  *cookie = queue->cookies[id];
  *length = used_length;
  // Back onto the free list, following the driver's own links.
  uint16_t tail = (uint16_t)id;
  for (uint16_t i = 1; i < queue->chain_length[id]; ++i) tail = queue->next_free[tail];
  queue->next_free[tail] = queue->free_head;
  queue->free_head = (uint16_t)id;
  queue->free_count = (uint16_t)(queue->free_count + queue->chain_length[id]);
  queue->chain_length[id] = 0;
  queue->last_used++;
  queue->in_flight--;
  if (queue->device->event_idx && !queue->device->irq_mode) {
    *usedEvent(queue) = (uint16_t)(queue->last_used - 1);  // still no interrupts, please
  }
  return true;
}

// --- waiting and interrupts ---

// Reads InterruptStatus and acknowledges what it shows until it reads 0: an event that sets
// a bit between the read and the acknowledgement keeps the (edge-triggered) line high, and
// without a further acknowledgement no new edge, and so no interrupt, would ever come.
static void acknowledgeInterrupts(struct VirtioDevice* device) {
  for (int round = 0; round < 16; ++round) {
    const uint32_t status = reg(device, VIRTIO_MMIO_INTERRUPT_STATUS) &
                            (INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE);
    if (status == 0) return;
    setReg(device, VIRTIO_MMIO_INTERRUPT_ACK, status);
    if (status & INTERRUPT_USED_BUFFER) device->used_interrupts++;
    if (status & INTERRUPT_CONFIG_CHANGE) device->config_changes++;
  }
}

uint64_t virtioInterrupts(const struct VirtioDevice* device) {
  return device->irq_mode ? virtio_irq_counts[device->irq] : 0;
}

uint64_t virtioPollConfigChanges(struct VirtioDevice* device) {
  if (!device->irq_mode) acknowledgeInterrupts(device);
  return device->config_changes;
}

static bool anyUsed(struct Virtq* const* queues, int count) {
  for (int i = 0; i < count; ++i) {
    if (virtqHasUsed(queues[i])) return true;
  }
  return false;
}

// `int $3` spelled as bytes, like guest.c's service gate calls; the gate returns with every
// register intact.
static void sleepUnlessChanged(volatile uint64_t* counter, uint64_t seen) {
  __asm__ volatile(".byte 0xcd, 0x03"
                   :
                   : "a"((uint64_t)SERVICE_WAIT_INTERRUPT), "D"(counter), "S"(seen)
                   : "memory");
}

void virtioWait(struct VirtioDevice* device, struct Virtq* const* queues, int count) {
  if (!device->irq_mode) {
    const uint64_t until = rdtsc() + microsecondsToTsc(1000);
    while (!anyUsed(queues, count) && rdtsc() < until) cpuRelax();
    return;
  }
  volatile uint64_t* counter = &virtio_irq_counts[device->irq];
  const uint64_t seen = *counter;
  if (seen != device->irq_acked) {
    device->irq_acked = seen;
    const uint64_t config_changes = device->config_changes;
    acknowledgeInterrupts(device);
    if (device->config_changes != config_changes) return;  // news for the caller
  }
  if (device->event_idx) {
    // Ask for an interrupt at the next used entry (section 2.7.10), then look once more:
    // an entry used before the device could see used_event raises no interrupt.
    for (int i = 0; i < count; ++i) *usedEvent(queues[i]) = queues[i]->last_used;
    fullBarrier();
  }
  if (anyUsed(queues, count)) return;
  sleepUnlessChanged(counter, seen);
}
