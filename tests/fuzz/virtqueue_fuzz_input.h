// Shared by the virtio fuzz targets (virtqueue_fuzz.cc, virtio_blk_fuzz.cc): the guest RAM
// they run on, how an input becomes a split virtqueue (virtio 1.2 section 2.7) and the guest
// memory under it, a driver loop that checks Virtqueue's contract (queue.h) around every call
// against a model read through GuestMemory's checked accessors, and a builder for seeds.
//
// An input (little-endian) is a QueueInputHeader followed by memory writes, each a
// MemoryWriteHeader and its bytes. Inputs shorter than a header read as zero-padded; the last
// write takes what is left of the input.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "vmm/devices/virtio/queue.h"
#include "vmm/devices/virtio/spec.h"
#include "vmm/memory/guest_memory.h"

// Aborts naming the broken invariant; libFuzzer then saves the input as a crash.
#define VIRTIO_FUZZ_CHECK(condition)                                                     \
  do {                                                                                   \
    if (!(condition)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (false)

namespace flotilla::vmm::virtio::fuzz {

inline constexpr uint64_t kRamBytes = uint64_t{32} << 20;  // one region, [0, 32 MiB)
inline constexpr uint64_t kMaxChainBytes = uint64_t{1} << 32;

// Created once: a GuestMemory per input would cost a memfd and a mapping each time.
inline const GuestMemory& guestMemory() {
  static const GuestMemory* const kMemory = [] {
    auto created = GuestMemory::create(kRamBytes, {});
    if (!created.ok()) std::abort();
    return new GuestMemory(std::move(*created));
  }();
  return *kMemory;
}

// Whether the host bytes [data, data + length) lie inside the mapping of one RAM region.
inline bool insideGuestMemory(const void* data, uint64_t length) {
  const GuestMemory& memory = guestMemory();
  const auto address = reinterpret_cast<uintptr_t>(data);
  for (size_t i = 0; i < memory.regions().size(); ++i) {
    const auto base = reinterpret_cast<uintptr_t>(memory.hostAddress(i));
    const uint64_t size = memory.regions()[i].size;
    if (address >= base && address - base <= size && length <= size - (address - base)) {
      return true;
    }
  }
  return false;
}

// The host address of guest `address`, which the caller knows to be in RAM.
inline uint8_t* hostPointer(uint64_t address, uint64_t length) {
  auto span = guestMemory().span(GuestAddress{address}, length);
  VIRTIO_FUZZ_CHECK(span.ok());
  return span->data();
}

template <typename T>
T readGuest(uint64_t address) {
  auto value = guestMemory().readObject<T>(GuestAddress{address});
  VIRTIO_FUZZ_CHECK(value.ok());
  return *value;
}

#pragma pack(push, 1)
struct QueueInputHeader {
  uint8_t features = 0;     // kInputIndirect | kInputEventIdx
  uint8_t mode = 0;         // kMode* bits
  uint16_t size = 0;        // the queue size with kModeRawSize, else log2 of it (low 4 bits)
  uint16_t max_size = 0;    // activate()'s max_size with kModeRawSize, else kMaxQueueSize
  uint16_t next_avail = 0;  // the starting QueuePosition, as a snapshot would restore it
  uint16_t next_used = 0;
  uint16_t signalled_used = 0;
  uint8_t pops = 0;          // at most this many pop() calls
  uint8_t rewind_every = 0;  // give every n-th chain back once with rewind(1) (0: never)
  uint16_t reserved = 0;
  // Ring addresses: as is with kModeRawAddresses, else modulo the RAM size, aligned down.
  uint64_t desc = 0;
  uint64_t avail = 0;
  uint64_t used = 0;
};
struct MemoryWriteHeader {
  uint8_t base = 0;  // MemoryBase (modulo 4): what `offset` counts from
  uint32_t offset = 0;
  uint16_t length = 0;
};
#pragma pack(pop)
static_assert(sizeof(QueueInputHeader) == 40);
static_assert(sizeof(MemoryWriteHeader) == 7);

inline constexpr uint8_t kInputIndirect = 1;
inline constexpr uint8_t kInputEventIdx = 2;

inline constexpr uint8_t kModeRawSize = 1;
inline constexpr uint8_t kModeRawAddresses = 2;
inline constexpr uint8_t kModeDeferUsed = 4;  // return chains at the end, last popped first
inline constexpr uint8_t kModeSignalledValid = 8;

// Writes relative to the rings follow them when a mutation moves a ring.
enum MemoryBase : uint8_t { kBaseDesc = 0, kBaseAvail = 1, kBaseUsed = 2, kBaseAbsolute = 3 };

// Reads the input front to back; past its end everything reads as zero.
class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : rest_(bytes) {}

  template <typename T>
  T take() {
    T value{};
    const size_t n = std::min(sizeof(T), rest_.size());
    std::memcpy(&value, rest_.data(), n);
    rest_ = rest_.subspan(n);
    return value;
  }
  std::span<const uint8_t> takeBytes(size_t n) {
    n = std::min(n, rest_.size());
    std::span<const uint8_t> bytes = rest_.first(n);
    rest_ = rest_.subspan(n);
    return bytes;
  }
  bool empty() const { return rest_.empty(); }

 private:
  std::span<const uint8_t> rest_;
};

// Guest memory one input touched (its writes, the used ring, status bytes), zeroed again when
// the input is done so that every input starts from all-zero RAM and crashes reproduce.
class GuestScratch {
 public:
  GuestScratch() = default;
  GuestScratch(const GuestScratch&) = delete;
  GuestScratch& operator=(const GuestScratch&) = delete;
  ~GuestScratch() {
    for (const auto& [data, length] : dirty_) std::memset(data, 0, length);
  }

  // Copies `bytes` to guest `address` (modulo the RAM size; cut at the end of RAM).
  void write(uint64_t address, std::span<const uint8_t> bytes) {
    address %= kRamBytes;
    const size_t length =
        static_cast<size_t>(std::min<uint64_t>(bytes.size(), kRamBytes - address));
    if (length == 0) return;
    uint8_t* host = hostPointer(address, length);
    std::memcpy(host, bytes.data(), length);
    note(host, length);
  }
  void note(uint8_t* data, size_t length) { dirty_.emplace_back(data, length); }

 private:
  std::vector<std::pair<uint8_t*, size_t>> dirty_;
};

struct QueueInput {
  QueueLayout layout;
  uint16_t max_size = kMaxQueueSize;
  uint64_t features = 0;
  QueuePosition position;
  uint8_t mode = 0;
  uint8_t pops = 0;
  uint8_t rewind_every = 0;

  bool eventIdx() const { return hasFeature(features, kFeatureEventIdx); }
  bool indirect() const { return hasFeature(features, kFeatureIndirectDesc); }
};

// Reads a QueueInputHeader and the memory writes after it, which go to guest memory.
inline QueueInput decodeQueueInput(ByteReader& reader, GuestScratch& scratch) {
  const auto header = reader.take<QueueInputHeader>();
  QueueInput input;
  const bool raw_size = (header.mode & kModeRawSize) != 0;
  input.layout.size = raw_size ? header.size : static_cast<uint16_t>(1u << (header.size & 15));
  input.max_size = raw_size ? header.max_size : kMaxQueueSize;
  const bool raw_addresses = (header.mode & kModeRawAddresses) != 0;
  auto place = [&](uint64_t value, uint64_t alignment) {
    return raw_addresses ? value : (value % kRamBytes) & ~(alignment - 1);
  };
  input.layout.desc = place(header.desc, 16);
  input.layout.avail = place(header.avail, 2);
  input.layout.used = place(header.used, 4);
  input.features = featureBit(kFeatureVersion1);
  if ((header.features & kInputIndirect) != 0) input.features |= featureBit(kFeatureIndirectDesc);
  if ((header.features & kInputEventIdx) != 0) input.features |= featureBit(kFeatureEventIdx);
  input.position.next_avail = header.next_avail;
  input.position.next_used = header.next_used;
  input.position.signalled_used = header.signalled_used;
  input.position.signalled_used_valid = (header.mode & kModeSignalledValid) != 0;
  input.mode = header.mode;
  input.pops = header.pops;
  input.rewind_every = header.rewind_every;

  while (!reader.empty()) {
    const auto write = reader.take<MemoryWriteHeader>();
    const uint64_t bases[] = {input.layout.desc, input.layout.avail, input.layout.used, 0};
    // Unsigned wrap-around is intended: raw addresses may be anything.
    scratch.write(bases[write.base % 4] + write.offset, reader.takeBytes(write.length));
  }
  return input;
}

// --- The model: what Virtqueue must do, read independently of it. ---

// Whether activate() must accept the layout: a power-of-two size up to max_size, aligned
// rings (2.7: 16, 2 and 4 bytes), each ring inside guest memory.
inline bool modelLayoutValid(const QueueInput& input) {
  const QueueLayout& layout = input.layout;
  const uint16_t size = layout.size;
  if (size == 0 || size > input.max_size || (size & (size - 1)) != 0) return false;
  if (layout.desc % 16 != 0 || layout.avail % 2 != 0 || layout.used % 4 != 0) return false;
  const GuestMemory& memory = guestMemory();
  return memory.contains(GuestAddress{layout.desc}, descriptorTableBytes(size)) &&
         memory.contains(GuestAddress{layout.avail}, availRingBytes(size)) &&
         memory.contains(GuestAddress{layout.used}, usedRingBytes(size));
}

struct ModelBuffer {
  uint64_t address = 0;
  uint32_t length = 0;
  bool writable = false;
};

// The non-empty buffers of the chain at `head` in order, or nullopt when the chain breaks one
// of the rules queue.h enforces (then pop() must fail): head and next indices inside their
// table; at most table-size descriptors per table (this is what stops loops); an indirect
// descriptor only with VIRTIO_F_INDIRECT_DESC, not inside an indirect table, without NEXT
// (so last in the descriptor table, possibly after direct ones: 2.7.5.3.2), naming a whole
// number of descriptors (at most kMaxQueueSize) in guest memory; buffers in guest memory; no
// device-readable buffer after a device-writable one; at most 4 GiB in all.
inline std::optional<std::vector<ModelBuffer>> modelChain(const QueueInput& input, uint16_t head) {
  const GuestMemory& memory = guestMemory();
  if (head >= input.layout.size) return std::nullopt;
  uint64_t table = input.layout.desc;
  uint64_t table_entries = input.layout.size;
  bool in_indirect = false;
  uint64_t index = head;
  uint64_t walked = 0;
  uint64_t total = 0;
  bool any_writable = false;
  std::vector<ModelBuffer> buffers;
  while (true) {
    if (++walked > table_entries) return std::nullopt;
    const auto desc = readGuest<Descriptor>(table + 16 * index);
    if ((desc.flags & kDescIndirect) != 0) {
      if (!input.indirect() || in_indirect || (desc.flags & kDescNext) != 0 || desc.len == 0 ||
          desc.len % 16 != 0 || desc.len / 16 > kMaxQueueSize ||
          !memory.contains(GuestAddress{desc.addr}, desc.len)) {
        return std::nullopt;
      }
      table = desc.addr;
      table_entries = desc.len / 16;
      in_indirect = true;
      index = 0;
      walked = 0;
      continue;
    }
    total += desc.len;
    if (total > kMaxChainBytes) return std::nullopt;
    if (desc.len > 0) {
      if (!memory.contains(GuestAddress{desc.addr}, desc.len)) return std::nullopt;
      const bool writable = (desc.flags & kDescWrite) != 0;
      if (!writable && any_writable) return std::nullopt;
      any_writable = any_writable || writable;
      buffers.push_back({desc.addr, desc.len, writable});
    }
    if ((desc.flags & kDescNext) == 0) return buffers;
    index = desc.next;
    if (index >= table_entries) return std::nullopt;
  }
}

inline bool sameBuffers(const std::vector<ChainBuffer>& a, const std::vector<ChainBuffer>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const ChainBuffer& x, const ChainBuffer& y) {
                      return x.data == y.data && x.length == y.length;
                    });
}

// A chain pop() returned against the model's buffers.
inline void checkChain(const DescriptorChain& chain, const std::vector<ModelBuffer>& model) {
  VIRTIO_FUZZ_CHECK(chain.readable.size() + chain.writable.size() == model.size());
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
  for (size_t i = 0; i < model.size(); ++i) {
    const bool writable = i >= chain.readable.size();
    const ChainBuffer& buffer =
        writable ? chain.writable[i - chain.readable.size()] : chain.readable[i];
    VIRTIO_FUZZ_CHECK(model[i].writable == writable);  // readable ones first
    VIRTIO_FUZZ_CHECK(buffer.length == model[i].length && buffer.length > 0);
    VIRTIO_FUZZ_CHECK(insideGuestMemory(buffer.data, buffer.length));
    VIRTIO_FUZZ_CHECK(buffer.data == hostPointer(model[i].address, model[i].length));
    (writable ? writable_bytes : readable_bytes) += buffer.length;
  }
  VIRTIO_FUZZ_CHECK(readable_bytes + writable_bytes <= kMaxChainBytes);
  VIRTIO_FUZZ_CHECK(chain.readableBytes() == readable_bytes);
  VIRTIO_FUZZ_CHECK(chain.writableBytes() == writable_bytes);
}

// --- The driver loop. ---

// Runs a device over the queue the way the devices in vmm/devices/virtio do: pop until the
// ring is empty, re-enable notifications and pop again if a chain slipped in, return each
// chain with addUsed() and ask needsInterrupt(). `device(chain)` returns the byte count for
// the used element, or nullopt when the chain is not a valid request (the device stops, as
// it would after asking for a reset).
template <typename Device>
void runQueue(const QueueInput& input, GuestScratch& scratch, Device&& device) {
  const GuestMemory& memory = guestMemory();
  const QueueLayout& layout = input.layout;
  auto queue = Virtqueue::activate(memory, layout, input.max_size, input.features, input.position);
  VIRTIO_FUZZ_CHECK(queue.ok() == modelLayoutValid(input));
  if (!queue.ok()) {
    VIRTIO_FUZZ_CHECK(absl::IsDataLoss(queue.status()) && !queue.status().message().empty());
    return;
  }
  scratch.note(hostPointer(layout.used, usedRingBytes(layout.size)), usedRingBytes(layout.size));
  const uint16_t size = layout.size;
  const uint64_t avail_event = layout.used + 4 + 8 * uint64_t{size};
  const uint64_t used_event = layout.avail + 4 + 2 * uint64_t{size};

  auto add_used = [&](uint16_t head, uint32_t written) {
    const uint16_t before = queue->position().next_used;
    queue->addUsed(head, written);
    VIRTIO_FUZZ_CHECK(queue->position().next_used == static_cast<uint16_t>(before + 1));
    const auto element = readGuest<UsedElement>(layout.used + 4 + 8 * (uint64_t{before} % size));
    VIRTIO_FUZZ_CHECK(element.id == head && element.len == written);
    VIRTIO_FUZZ_CHECK(readGuest<uint16_t>(layout.used + 2) == queue->position().next_used);
  };
  auto needs_interrupt = [&] {
    const QueuePosition before = queue->position();
    bool expected = true;
    if (!input.eventIdx()) {
      expected = (readGuest<uint16_t>(layout.avail) & kAvailNoInterrupt) == 0;
    } else if (before.signalled_used_valid) {
      // vring_need_event(): whether used_event lies in (old, new].
      const uint16_t event = readGuest<uint16_t>(used_event);
      expected = static_cast<uint16_t>(before.next_used - event - 1) <
                 static_cast<uint16_t>(before.next_used - before.signalled_used);
    }
    VIRTIO_FUZZ_CHECK(queue->needsInterrupt() == expected);
    VIRTIO_FUZZ_CHECK(queue->position().signalled_used == before.next_used &&
                      queue->position().signalled_used_valid);
  };
  auto enable_notifications = [&] {
    const bool more = queue->enableNotifications();
    if (input.eventIdx()) {
      VIRTIO_FUZZ_CHECK(readGuest<uint16_t>(avail_event) == queue->position().next_avail);
    } else {
      VIRTIO_FUZZ_CHECK(readGuest<uint16_t>(layout.used) == 0);
    }
    // The used ring may overlap the driver area: read the index after the device's write.
    VIRTIO_FUZZ_CHECK(more ==
                      (readGuest<uint16_t>(layout.avail + 2) != queue->position().next_avail));
    VIRTIO_FUZZ_CHECK(more == queue->hasAvailable());
    return more;
  };

  std::vector<std::pair<uint16_t, uint32_t>> deferred;
  std::optional<DescriptorChain> rewound;  // given back: the next pop() must return it again
  uint32_t chains = 0;
  for (int pops = input.pops; pops > 0; --pops) {
    const QueuePosition before = queue->position();
    const uint16_t avail_idx = readGuest<uint16_t>(layout.avail + 2);
    auto popped = queue->pop();
    if (avail_idx == before.next_avail) {
      VIRTIO_FUZZ_CHECK(popped.ok() && !popped->has_value());
      VIRTIO_FUZZ_CHECK(queue->position().next_avail == before.next_avail);
      if (!enable_notifications()) break;
      continue;
    }
    std::optional<std::vector<ModelBuffer>> model;
    uint16_t head = 0;
    if (static_cast<uint16_t>(avail_idx - before.next_avail) <= size) {
      head = readGuest<uint16_t>(layout.avail + 4 + 2 * (uint64_t{before.next_avail} % size));
      model = modelChain(input, head);
    }
    VIRTIO_FUZZ_CHECK(popped.ok() == model.has_value());
    if (!popped.ok()) {
      VIRTIO_FUZZ_CHECK(absl::IsDataLoss(popped.status()) && !popped.status().message().empty());
      VIRTIO_FUZZ_CHECK(queue->position().next_avail == before.next_avail);
      return;  // the queue is broken until the driver resets it
    }
    VIRTIO_FUZZ_CHECK(popped->has_value());
    const DescriptorChain& chain = **popped;
    VIRTIO_FUZZ_CHECK(chain.head == head);
    VIRTIO_FUZZ_CHECK(queue->position().next_avail == static_cast<uint16_t>(before.next_avail + 1));
    checkChain(chain, *model);
    if (rewound.has_value()) {
      VIRTIO_FUZZ_CHECK(chain.head == rewound->head &&
                        sameBuffers(chain.readable, rewound->readable) &&
                        sameBuffers(chain.writable, rewound->writable));
      rewound.reset();
    } else if (input.rewind_every != 0 && ++chains % input.rewind_every == 0) {
      rewound = chain;
      queue->rewind(1);
      VIRTIO_FUZZ_CHECK(queue->position().next_avail == before.next_avail);
      continue;
    }
    const std::optional<uint32_t> written = device(chain);
    if (!written.has_value()) return;
    if ((input.mode & kModeDeferUsed) != 0) {
      deferred.emplace_back(chain.head, *written);
      VIRTIO_FUZZ_CHECK(queue->inFlight() ==
                        static_cast<uint16_t>(input.position.next_avail - input.position.next_used +
                                              deferred.size()));
    } else {
      add_used(chain.head, *written);
      needs_interrupt();
    }
  }
  for (auto it = deferred.rbegin(); it != deferred.rend(); ++it) add_used(it->first, it->second);
  needs_interrupt();
  enable_notifications();

  // A snapshot taken now restores to a queue in the same place.
  auto restored =
      Virtqueue::activate(memory, layout, input.max_size, input.features, queue->position());
  VIRTIO_FUZZ_CHECK(restored.ok());
  VIRTIO_FUZZ_CHECK(restored->inFlight() == queue->inFlight() &&
                    restored->hasAvailable() == queue->hasAvailable());
}

// --- Seeds. ---

// Builds inputs in the format above.
class QueueInputBuilder {
 public:
  explicit QueueInputBuilder(const QueueInputHeader& header) { append(header); }

  QueueInputBuilder& write(MemoryBase base, uint32_t offset, std::span<const uint8_t> bytes) {
    MemoryWriteHeader write;
    write.base = base;
    write.offset = offset;
    write.length = static_cast<uint16_t>(bytes.size());
    append(write);
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  template <typename T>
  QueueInputBuilder& writeObject(MemoryBase base, uint32_t offset, const T& value) {
    return write(base, offset, {reinterpret_cast<const uint8_t*>(&value), sizeof(T)});
  }
  // Descriptor `index` of the queue's descriptor table.
  QueueInputBuilder& descriptor(uint16_t index, const Descriptor& desc) {
    return writeObject(kBaseDesc, 16u * index, desc);
  }
  // Descriptors `first`, `first` + 1, ... of the queue's descriptor table.
  QueueInputBuilder& descriptors(uint16_t first, const std::vector<Descriptor>& descs) {
    return write(
        kBaseDesc, 16u * first,
        {reinterpret_cast<const uint8_t*>(descs.data()), descs.size() * sizeof(Descriptor)});
  }
  // An indirect table at guest `address`.
  QueueInputBuilder& indirectTable(uint32_t address, const std::vector<Descriptor>& table) {
    return write(
        kBaseAbsolute, address,
        {reinterpret_cast<const uint8_t*>(table.data()), table.size() * sizeof(Descriptor)});
  }
  // The driver area: flags, idx and the heads made available from ring slot `first_slot` on.
  QueueInputBuilder& avail(uint16_t flags, uint16_t idx, uint16_t first_slot,
                           const std::vector<uint16_t>& heads) {
    const uint16_t header[] = {flags, idx};
    writeObject(kBaseAvail, 0, header);
    return write(kBaseAvail, 4u + 2u * first_slot,
                 {reinterpret_cast<const uint8_t*>(heads.data()), heads.size() * 2});
  }
  QueueInputBuilder& usedEvent(uint16_t queue_size, uint16_t event) {
    return writeObject(kBaseAvail, 4u + 2u * queue_size, event);
  }

  // `prefix` (a device's own header) followed by the queue input.
  std::vector<uint8_t> bytes(std::span<const uint8_t> prefix = {}) const {
    std::vector<uint8_t> out(prefix.begin(), prefix.end());
    out.insert(out.end(), bytes_.begin(), bytes_.end());
    return out;
  }

 private:
  template <typename T>
  void append(const T& value) {
    const auto* raw = reinterpret_cast<const uint8_t*>(&value);
    bytes_.insert(bytes_.end(), raw, raw + sizeof(T));
  }

  std::vector<uint8_t> bytes_;
};

// Seed inputs are written by the targets themselves, so that they always match the format
// above: FLOTILLA_WRITE_SEED_CORPUS=<corpus dir> <target> writes <corpus dir>/<name>/* and
// exits (see the target's header comment).
inline void writeSeedsIfAsked(
    const char* name, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& seeds) {
  const char* dir = std::getenv("FLOTILLA_WRITE_SEED_CORPUS");
  if (dir == nullptr) return;
  for (const auto& [file, bytes] : seeds) {
    const std::string path = std::string(dir) + "/" + name + "/" + file;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      std::exit(1);
    }
    std::fprintf(stderr, "wrote %s (%zu bytes)\n", path.c_str(), bytes.size());
  }
  std::exit(0);
}

}  // namespace flotilla::vmm::virtio::fuzz
