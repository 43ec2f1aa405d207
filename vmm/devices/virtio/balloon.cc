// VirtioBalloon (see balloon.h).
#include "vmm/devices/virtio/balloon.h"

#include <cstring>

#include "fmt/format.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/virtio/blk_request.h"

namespace flotilla::vmm::virtio {

VirtioBalloon::VirtioBalloon(std::string id)
    : id_(std::move(id)), log_(Logger("virtio-balloon").with("device", id_)) {}

uint64_t VirtioBalloon::offeredFeatures() const {
  return featureBit(balloon::kFeatureStatsVq) | featureBit(balloon::kFeatureDeflateOnOom);
}

absl::Status VirtioBalloon::setTarget(uint64_t bytes) {
  absl::MutexLock lock(&context_->mutex());
  const uint64_t ram = context_->memory().ramBytes();
  if (bytes % balloon::kPageSize != 0 || bytes > ram) {
    return absl::InvalidArgumentError(fmt::format(
        "balloon {}: a target of {} bytes is not possible: give a multiple of 4 KiB of at most "
        "the VM's {} bytes of memory",
        id_, bytes, ram));
  }
  num_pages_ = static_cast<uint32_t>(bytes / balloon::kPageSize);
  context_->signalConfigChange();
  return absl::OkStatus();
}

VirtioBalloon::Info VirtioBalloon::info() const {
  absl::MutexLock lock(&context_->mutex());
  return Info{uint64_t{num_pages_} * balloon::kPageSize, uint64_t{actual_} * balloon::kPageSize,
              freed_bytes_, stats_};
}

void VirtioBalloon::readConfig(uint64_t offset, std::span<uint8_t> data) {
  uint8_t config[balloon::kConfigBytes] = {};
  storeLittleEndian(num_pages_, std::span<uint8_t>(config).subspan(balloon::kConfigNumPages, 4));
  storeLittleEndian(actual_, std::span<uint8_t>(config).subspan(balloon::kConfigActual, 4));
  readConfigBytes(config, offset, data);
}

void VirtioBalloon::writeConfig(uint64_t offset, std::span<const uint8_t> data) {
  if (offset == balloon::kConfigActual && data.size() == 4) {
    actual_ = static_cast<uint32_t>(loadLittleEndian(data));
  }
}

void VirtioBalloon::process(size_t index) {
  if (index == kStatsQueue) {
    receiveStats();
  } else {
    changePages(index);
  }
}

void VirtioBalloon::changePages(size_t index) {
  Virtqueue* queue = context_->queue(index);
  if (queue == nullptr) return;
  const bool inflate = index == kInflateQueue;
  bool answered = false;
  do {
    while (true) {
      std::optional<DescriptorChain> chain = popChain(*context_, *queue);
      if (!chain.has_value()) break;
      const DescriptorChain& pages = *chain;
      if (inflate) {
        // An array of 32-bit page frame numbers; runs of consecutive pages are freed at once.
        const uint64_t count = pages.readableBytes() / 4;
        uint64_t run_start = 0;
        uint64_t run_pages = 0;
        auto flush = [&] {
          if (run_pages == 0) return;
          auto freed = context_->memory().discard(GuestAddress{run_start * balloon::kPageSize},
                                                  run_pages * balloon::kPageSize);
          if (freed.ok() && *freed) freed_bytes_ += run_pages * balloon::kPageSize;
          if (!freed.ok()) log_.warn("inflating: {}", freed.status().message());
          run_pages = 0;
        };
        for (uint64_t i = 0; i < count; ++i) {
          uint32_t pfn;
          gatherBytes(pages.readable, i * 4, {reinterpret_cast<uint8_t*>(&pfn), sizeof(pfn)});
          if (run_pages > 0 && pfn == run_start + run_pages) {
            ++run_pages;
            continue;
          }
          flush();
          run_start = pfn;
          run_pages = 1;
        }
        flush();
      }
      queue->addUsed(pages.head, 0);
      answered = true;
    }
  } while (context_->running() && queue->enableNotifications());
  if (answered) context_->signalUsed(index);
}

void VirtioBalloon::receiveStats() {
  Virtqueue* queue = context_->queue(kStatsQueue);
  if (queue == nullptr) return;
  // enableNotifications() reports a buffer made available while the last pop found none: it
  // is taken too, or no notification would ever come for it (device.h).
  do {
    while (true) {
      std::optional<DescriptorChain> chain = popChain(*context_, *queue);
      if (!chain.has_value()) break;
      if (stats_head_.has_value()) {
        // The driver has one statistics buffer; a second one is returned at once.
        queue->addUsed(chain->head, 0);
        context_->signalUsed(kStatsQueue);
        continue;
      }
      const uint64_t count = chain->readableBytes() / sizeof(balloon::Stat);
      for (uint64_t i = 0; i < count; ++i) {
        balloon::Stat stat;
        gatherBytes(chain->readable, i * sizeof(stat),
                    {reinterpret_cast<uint8_t*>(&stat), sizeof(stat)});
        stats_[stat.tag] = stat.val;
      }
      stats_head_ = chain->head;
    }
  } while (context_->running() && queue->enableNotifications());
}

void VirtioBalloon::returnStatsBuffer() {
  Virtqueue* queue = context_->queue(kStatsQueue);
  if (!stats_head_.has_value() || queue == nullptr) return;
  queue->addUsed(*stats_head_, 0);
  stats_head_.reset();
  context_->signalUsed(kStatsQueue);
}

void VirtioBalloon::requestStats() {
  absl::MutexLock lock(&context_->mutex());
  if (context_->running()) returnStatsBuffer();
}

void VirtioBalloon::quiesce() {
  absl::MutexLock lock(&context_->mutex());
  returnStatsBuffer();
}

void VirtioBalloon::reset() {
  actual_ = 0;
  stats_head_.reset();
}

void VirtioBalloon::saveState(flotilla::v1::VirtioDeviceState& state) const {
  flotilla::v1::VirtioBalloonState* saved = state.mutable_balloon();
  saved->set_num_pages(num_pages_);
  saved->set_actual(actual_);
  for (const auto& [tag, value] : stats_) {
    flotilla::v1::BalloonStat* stat = saved->add_stats();
    stat->set_tag(tag);
    stat->set_value(value);
  }
}

absl::Status VirtioBalloon::restoreState(const flotilla::v1::VirtioDeviceState& state) {
  num_pages_ = state.balloon().num_pages();
  actual_ = state.balloon().actual();
  stats_.clear();
  for (const flotilla::v1::BalloonStat& stat : state.balloon().stats()) {
    stats_[static_cast<uint16_t>(stat.tag())] = stat.value();
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm::virtio
