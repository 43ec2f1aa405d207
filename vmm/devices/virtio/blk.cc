// VirtioBlock (see blk.h).
#include "vmm/devices/virtio/blk.h"

#include <cstring>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/devices/bus.h"

namespace flotilla::vmm::virtio {
namespace {

// Largest DISCARD / WRITE_ZEROES range per request: 1 GiB.
constexpr uint32_t kMaxRangeSectors = (uint32_t{1} << 30) / blk::kSectorSize;

uint8_t statusOf(storage::BlockResult result) {
  switch (result) {
    case storage::BlockResult::kOk:
      return blk::kStatusOk;
    case storage::BlockResult::kUnsupported:
      return blk::kStatusUnsupported;
    case storage::BlockResult::kIoError:
      break;
  }
  return blk::kStatusIoErr;
}

storage::BlockOp opOf(uint32_t type) {
  switch (type) {
    case blk::kTypeIn:
      return storage::BlockOp::kRead;
    case blk::kTypeOut:
      return storage::BlockOp::kWrite;
    case blk::kTypeDiscard:
      return storage::BlockOp::kDiscard;
    case blk::kTypeWriteZeroes:
      // With the unmap flag the range may also be deallocated, but must still read back as
      // zeroes, which a discard does not promise (an iSCSI LUN without LBPRZ).
      return storage::BlockOp::kWriteZeroes;
    default:
      return storage::BlockOp::kFlush;
  }
}

}  // namespace

VirtioBlock::VirtioBlock(std::string id, std::unique_ptr<storage::BlockBackend> backend,
                         std::string serial)
    : id_(std::move(id)),
      log_(Logger("virtio-blk").with("device", id_)),
      serial_(std::move(serial)),
      capacity_sectors_(backend->sizeBytes() / blk::kSectorSize),
      backend_(std::move(backend)) {
  backend_->setCompletionSink(this);
}

VirtioBlock::~VirtioBlock() = default;

uint64_t VirtioBlock::offeredFeatures() const {
  const storage::BlockCapabilities capabilities = backend_->capabilities();
  uint64_t features = featureBit(blk::kFeatureSegMax) | featureBit(blk::kFeatureBlkSize) |
                      featureBit(blk::kFeatureFlush);
  if (backend_->readOnly()) features |= featureBit(blk::kFeatureRo);
  if (capabilities.discard && !backend_->readOnly()) features |= featureBit(blk::kFeatureDiscard);
  if (capabilities.write_zeroes && !backend_->readOnly()) {
    features |= featureBit(blk::kFeatureWriteZeroes);
  }
  return features;
}

BlockDiskInfo VirtioBlock::diskInfo() const {
  const uint64_t features = context_->features();
  BlockDiskInfo info;
  info.capacity_sectors = capacity_sectors_;
  info.read_only = backend_->readOnly();
  info.flush = hasFeature(features, blk::kFeatureFlush);
  info.discard = hasFeature(features, blk::kFeatureDiscard);
  info.write_zeroes = hasFeature(features, blk::kFeatureWriteZeroes);
  info.max_discard_sectors = kMaxRangeSectors;
  info.max_write_zeroes_sectors = kMaxRangeSectors;
  return info;
}

std::vector<uint8_t> VirtioBlock::configBytes() const {
  std::vector<uint8_t> config(blk::kConfigBytes, 0);
  auto put = [&config](uint64_t offset, uint64_t value, size_t bytes) {
    storeLittleEndian(value, std::span<uint8_t>(config).subspan(offset, bytes));
  };
  put(blk::kConfigCapacity, capacity_sectors_, 8);
  put(blk::kConfigSegMax, kSegMax, 4);
  put(blk::kConfigBlkSize, backend_->blockSize(), 4);
  put(blk::kConfigMaxDiscardSectors, kMaxRangeSectors, 4);
  put(blk::kConfigMaxDiscardSeg, 1, 4);
  put(blk::kConfigDiscardSectorAlignment, backend_->blockSize() / blk::kSectorSize, 4);
  put(blk::kConfigMaxWriteZeroesSectors, kMaxRangeSectors, 4);
  put(blk::kConfigMaxWriteZeroesSeg, 1, 4);
  put(blk::kConfigWriteZeroesMayUnmap, 1, 1);
  return config;
}

void VirtioBlock::readConfig(uint64_t offset, std::span<uint8_t> data) {
  readConfigBytes(configBytes(), offset, data);
}

void VirtioBlock::process(size_t index) {
  Virtqueue* queue = context_->queue(index);
  if (queue == nullptr || quiescing_) return;
  const BlockDiskInfo disk = diskInfo();
  std::vector<storage::BlockRequest> batch;
  bool answered = false;
  do {
    while (true) {
      std::optional<DescriptorChain> chain = popChain(*context_, *queue);
      if (!chain.has_value()) break;
      const DescriptorChain& request = *chain;
      auto plan = parseBlockRequest(request, disk);
      if (!plan.ok()) {
        context_->needsReset(plan.status());
        break;  // the requests already popped still go to the backend
      }
      if (plan->type == blk::kTypeGetId && !plan->immediate_status.has_value()) {
        uint8_t id[blk::kIdBytes] = {};
        std::memcpy(id, serial_.data(), std::min<size_t>(serial_.size(), sizeof(id)));
        size_t done = 0;
        for (const iovec& piece : plan->data) {
          std::memcpy(piece.iov_base, id + done, piece.iov_len);
          done += piece.iov_len;
        }
        plan->immediate_status = blk::kStatusOk;
      }
      if (plan->immediate_status.has_value()) {
        *plan->status = *plan->immediate_status;
        queue->addUsed(request.head,
                       plan->immediate_status == blk::kStatusOk ? plan->used_length : 1);
        answered = true;
        continue;
      }
      storage::BlockRequest backend_request;
      backend_request.tag = request.head;
      backend_request.op = opOf(plan->type);
      backend_request.offset = plan->type == blk::kTypeFlush ? 0 : plan->offset;
      if (plan->type == blk::kTypeIn || plan->type == blk::kTypeOut) {
        backend_request.iov = std::move(plan->data);
      } else {
        backend_request.length = plan->data_bytes;
      }
      if (!in_flight_.try_emplace(request.head, InFlight{plan->status, plan->used_length}).second) {
        context_->needsReset(absl::DataLossError(fmt::format(
            "block request {}: the driver made the chain available again while it was in flight",
            request.head)));
        break;
      }
      batch.push_back(std::move(backend_request));
    }
  } while (context_->running() && queue->enableNotifications());
  if (!batch.empty()) backend_->submit(batch);
  if (answered) context_->signalUsed(index);
}

void VirtioBlock::completed(std::span<const storage::BlockCompletion> completions) {
  absl::MutexLock lock(&context_->mutex());
  Virtqueue* queue = context_->queue(0);
  for (const storage::BlockCompletion& completion : completions) {
    auto it = in_flight_.find(static_cast<uint16_t>(completion.tag));
    if (it == in_flight_.end()) {
      log_.error("the backend completed request {}, which is not in flight", completion.tag);
      continue;
    }
    const uint8_t status = statusOf(completion.result);
    *it->second.status = status;
    if (queue != nullptr) {
      queue->addUsed(it->first, status == blk::kStatusOk ? it->second.used_length : 1);
    }
    in_flight_.erase(it);
    ++completed_;
  }
  if (queue != nullptr) context_->signalUsed(0);
}

void VirtioBlock::quiesce() {
  {
    absl::MutexLock lock(&context_->mutex());
    quiescing_ = true;
  }
  absl::Status drained = backend_->drain();
  if (!drained.ok()) log_.error("draining {} failed: {}", backend_->describe(), drained.message());
  absl::MutexLock lock(&context_->mutex());
  context_->mutex().Await(absl::Condition(
      +[](absl::flat_hash_map<uint16_t, InFlight>* in_flight) { return in_flight->empty(); },
      &in_flight_));
  quiescing_ = false;
}

void VirtioBlock::reset() {
  in_flight_.clear();
}

uint64_t VirtioBlock::capacityBytes() const {
  absl::MutexLock lock(&context_->mutex());
  return capacity_sectors_ * blk::kSectorSize;
}

absl::StatusOr<uint64_t> VirtioBlock::resize(uint64_t bytes) {
  if (bytes == 0 || bytes % backend_->blockSize() != 0) {
    return absl::InvalidArgumentError(
        fmt::format("disk {}: the new size {} is not a positive multiple of the block size {}", id_,
                    bytes, backend_->blockSize()));
  }
  ASSIGN_OR_RETURN(uint64_t size, backend_->resize(bytes));
  absl::MutexLock lock(&context_->mutex());
  capacity_sectors_ = size / blk::kSectorSize;
  context_->signalConfigChange();
  log_.info("resized {} to {} bytes", backend_->describe(), size);
  return size;
}

void VirtioBlock::saveState(flotilla::v1::VirtioDeviceState& state) const {
  state.mutable_block()->set_capacity_bytes(capacity_sectors_ * blk::kSectorSize);
}

absl::Status VirtioBlock::restoreState(const flotilla::v1::VirtioDeviceState& state) {
  const uint64_t saved = state.block().capacity_bytes();
  const uint64_t now = capacity_sectors_ * blk::kSectorSize;
  if (saved != now) {
    // The guest keeps using the size it knew; a smaller disk would fail its I/O.
    if (now < saved) {
      return absl::FailedPreconditionError(
          fmt::format("disk {} ({}) has {} bytes, less than the {} bytes the saved VM used", id_,
                      backend_->describe(), now, saved));
    }
    log_.warn("disk {} grew from {} to {} bytes while the VM was saved", id_, saved, now);
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm::virtio
