// libFuzzer target for the split virtqueue (vmm/devices/virtio/queue.h): an input is a queue
// layout, features and position plus the guest memory under it (format in
// virtqueue_fuzz_input.h). activate() must accept exactly the valid layouts; pop() must
// return exactly the chains a model reading guest memory through GuestMemory finds, with every
// buffer inside guest memory, and fail (never crash, hang or read outside RAM) on loops,
// out-of-range addresses or indices, nested or misplaced indirect tables, readable buffers
// after writable ones and chains over 4 GiB; addUsed, needsInterrupt, enableNotifications and
// rewind must do what queue.h says.
//
// The seed corpus (corpus/virtqueue/) is written by this target; after changing the format,
//   FLOTILLA_WRITE_SEED_CORPUS=tests/fuzz/corpus build/fuzz/bin/virtqueue_fuzz
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/fuzz/virtqueue_fuzz_input.h"

namespace {

using flotilla::vmm::virtio::Descriptor;
using flotilla::vmm::virtio::DescriptorChain;
using flotilla::vmm::virtio::kDescIndirect;
using flotilla::vmm::virtio::kDescNext;
using flotilla::vmm::virtio::kDescWrite;
namespace fuzz = flotilla::vmm::virtio::fuzz;

// Ring addresses of the seeds: descriptors at 0x1000, driver area at 0x3000, device area at
// 0x4000, indirect tables at 0x8000, buffers from 0x10000 on.
fuzz::QueueInputHeader seedHeader(uint8_t size_log2, uint8_t features) {
  fuzz::QueueInputHeader header;
  header.features = features;
  header.size = size_log2;
  header.pops = 16;
  header.desc = 0x1000;
  header.avail = 0x3000;
  header.used = 0x4000;
  return header;
}

std::vector<std::pair<std::string, std::vector<uint8_t>>> seeds() {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;

  // One chain: 64 readable bytes, then 128 writable ones.
  fuzz::QueueInputBuilder direct(seedHeader(4, 0));
  direct.descriptor(0, Descriptor{0x10000, 64, kDescNext, 1})
      .descriptor(1, Descriptor{0x20000, 128, kDescWrite, 0})
      .avail(0, 1, 0, {0});
  out.emplace_back("direct_chain", direct.bytes());

  // One indirect descriptor for a table of three: readable, readable, writable.
  fuzz::QueueInputBuilder indirect(seedHeader(4, fuzz::kInputIndirect));
  indirect.descriptor(3, Descriptor{0x8000, 48, kDescIndirect, 0})
      .indirectTable(0x8000,
                     {Descriptor{0x10000, 16, kDescNext, 1}, Descriptor{0x11000, 512, kDescNext, 2},
                      Descriptor{0x12000, 1, kDescWrite, 0}})
      .avail(0, 1, 0, {3});
  out.emplace_back("indirect_chain", indirect.bytes());

  // Direct descriptors, then an indirect table (unusual but valid: virtio 1.2 2.7.5.3.2).
  fuzz::QueueInputBuilder mixed(seedHeader(4, fuzz::kInputIndirect));
  mixed.descriptor(1, Descriptor{0x10000, 16, kDescNext, 4})
      .descriptor(4, Descriptor{0x8000, 32, kDescIndirect | kDescWrite, 0})
      .indirectTable(
          0x8000, {Descriptor{0x11000, 64, kDescNext, 1}, Descriptor{0x12000, 256, kDescWrite, 0}})
      .avail(0, 1, 0, {1});
  out.emplace_back("direct_then_indirect", mixed.bytes());

  // Three chains with VIRTIO_F_EVENT_IDX, returned last first, the second one given back once.
  fuzz::QueueInputHeader event_header = seedHeader(3, fuzz::kInputEventIdx | fuzz::kInputIndirect);
  event_header.mode = fuzz::kModeDeferUsed;
  event_header.rewind_every = 2;
  fuzz::QueueInputBuilder event_idx(event_header);
  event_idx.descriptor(0, Descriptor{0x10000, 4096, kDescWrite, 0})
      .descriptor(5, Descriptor{0x11000, 100, kDescNext, 6})
      .descriptor(6, Descriptor{0x12000, 200, kDescNext | kDescWrite, 7})
      .descriptor(7, Descriptor{0x13000, 300, kDescWrite, 0})
      .descriptor(2, Descriptor{0x8000, 32, kDescIndirect, 0})
      .indirectTable(
          0x8000, {Descriptor{0x14000, 10, kDescNext, 1}, Descriptor{0x15000, 20, kDescWrite, 0}})
      .avail(0, 3, 0, {0, 5, 2})
      .usedEvent(8, 1);
  out.emplace_back("event_idx_deferred_rewind", event_idx.bytes());

  // A queue restored from a snapshot just before its indices wrap around 65535.
  fuzz::QueueInputHeader wrap_header = seedHeader(8, 0);
  wrap_header.next_avail = 0xfffe;
  wrap_header.next_used = 0xfffd;
  wrap_header.signalled_used = 0xfffd;
  wrap_header.mode = fuzz::kModeSignalledValid;
  fuzz::QueueInputBuilder wrap(wrap_header);
  wrap.descriptor(10, Descriptor{0x10000, 8, 0, 0})
      .descriptor(11, Descriptor{0x11000, 8, kDescWrite, 0})
      .descriptor(12, Descriptor{0x12000, 0, kDescNext, 13})  // an empty buffer is skipped
      .descriptor(13, Descriptor{0x13000, 8, 0, 0})
      .avail(1, 0x0001, 254, {10, 11})
      .avail(1, 0x0001, 0, {12});
  out.emplace_back("index_wraparound", wrap.bytes());

  // Malformed: a loop through next, and an indirect table inside an indirect table.
  fuzz::QueueInputBuilder loop(seedHeader(2, 0));
  loop.descriptor(0, Descriptor{0x10000, 8, kDescNext, 1})
      .descriptor(1, Descriptor{0x11000, 8, kDescNext, 0})
      .avail(0, 1, 0, {0});
  out.emplace_back("loop", loop.bytes());
  fuzz::QueueInputBuilder nested(seedHeader(2, fuzz::kInputIndirect));
  nested.descriptor(0, Descriptor{0x8000, 16, kDescIndirect, 0})
      .indirectTable(0x8000, {Descriptor{0x9000, 16, kDescIndirect, 0}})
      .indirectTable(0x9000, {Descriptor{0x10000, 8, 0, 0}})
      .avail(0, 1, 0, {0});
  out.emplace_back("nested_indirect", nested.bytes());

  // The 4 GiB limit: 128 buffers of all of RAM make a chain of exactly 4 GiB (accepted);
  // an indirect table with one byte more is refused.
  constexpr uint32_t kAllRam = static_cast<uint32_t>(fuzz::kRamBytes);
  std::vector<Descriptor> whole(128, Descriptor{0, kAllRam, kDescWrite | kDescNext, 0});
  for (uint16_t i = 0; i < whole.size(); ++i) whole[i].next = static_cast<uint16_t>(i + 1);
  whole.back().flags = kDescWrite;
  std::vector<Descriptor> over = whole;
  over.back().flags = kDescWrite | kDescNext;
  over.push_back(Descriptor{0x10000, 1, kDescWrite, 0});
  fuzz::QueueInputBuilder limit(seedHeader(8, fuzz::kInputIndirect));
  limit.descriptors(0, whole)
      .descriptor(200,
                  Descriptor{0x8000, static_cast<uint32_t>(16 * over.size()), kDescIndirect, 0})
      .indirectTable(0x8000, over)
      .avail(0, 2, 0, {0, 200});
  out.emplace_back("chain_4gib_limit", limit.bytes());

  // Raw layout: a misaligned descriptor table.
  fuzz::QueueInputHeader raw_header = seedHeader(0, 0);
  raw_header.mode = fuzz::kModeRawSize | fuzz::kModeRawAddresses;
  raw_header.size = 16;
  raw_header.max_size = 256;
  raw_header.desc = 0x1008;
  out.emplace_back("misaligned_raw_layout", fuzz::QueueInputBuilder(raw_header).bytes());
  return out;
}

// A device that reports every writable byte as written.
std::optional<uint32_t> writeAll(const DescriptorChain& chain) {
  const uint64_t writable = chain.writableBytes();
  return static_cast<uint32_t>(std::min<uint64_t>(writable, std::numeric_limits<uint32_t>::max()));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  fuzz::writeSeedsIfAsked("virtqueue", seeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::GuestScratch scratch;
  fuzz::ByteReader reader({data, size});
  const fuzz::QueueInput input = fuzz::decodeQueueInput(reader, scratch);
  fuzz::runQueue(input, scratch, writeAll);
  return 0;
}
