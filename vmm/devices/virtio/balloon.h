// VirtioBalloon: a virtio memory balloon (virtio 1.2 section 5.5). The VMM sets a target
// (setTarget); the driver inflates the balloon by handing pages over, which the device gives
// back to the host (GuestMemory::discard: the memfd's pages are freed), and deflates it by
// taking pages back (they fault in as zeroes). With VIRTIO_BALLOON_F_STATS_VQ the driver
// reports memory statistics, refreshed on request.
#pragma once

#include <map>

#include "common/log.h"
#include "vmm/devices/virtio/device.h"

namespace flotilla::vmm::virtio {

class VirtioBalloon final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 128;
  static constexpr size_t kInflateQueue = 0;
  static constexpr size_t kDeflateQueue = 1;
  static constexpr size_t kStatsQueue = 2;

  explicit VirtioBalloon(std::string id);

  // The balloon's target size in bytes (a multiple of 4 KiB, at most the VM's memory):
  // configuration-change interrupt.
  absl::Status setTarget(uint64_t bytes);
  struct Info {
    uint64_t target_bytes = 0;
    uint64_t actual_bytes = 0;           // what the driver says the balloon holds
    uint64_t freed_bytes = 0;            // pages given back to the host so far
    std::map<uint16_t, uint64_t> stats;  // VIRTIO_BALLOON_S_* tag -> value
  };
  Info info() const;
  // Returns the driver's statistics buffer, so that it sends fresh statistics (read them
  // with info() a moment later).
  void requestStats();

  // VirtioDevice.
  uint32_t type() const override { return kDeviceBalloon; }
  uint64_t offeredFeatures() const override;
  std::vector<uint16_t> queueMaxSizes() const override {
    return {kQueueSize, kQueueSize, kQueueSize};
  }
  void bind(VirtioContext& context) override { context_ = &context; }
  void readConfig(uint64_t offset, std::span<uint8_t> data) override;
  void writeConfig(uint64_t offset, std::span<const uint8_t> data) override;
  void activate() override {}
  void process(size_t index) override;
  void quiesce() override;
  void reset() override;
  void saveState(flotilla::v1::VirtioDeviceState& state) const override;
  absl::Status restoreState(const flotilla::v1::VirtioDeviceState& state) override;

 private:
  void changePages(size_t index);
  void receiveStats();
  void returnStatsBuffer();

  const std::string id_;
  const Logger log_;
  VirtioContext* context_ = nullptr;
  // Guarded by the context's mutex.
  uint32_t num_pages_ = 0;
  uint32_t actual_ = 0;
  uint64_t freed_bytes_ = 0;
  std::map<uint16_t, uint64_t> stats_;
  std::optional<uint16_t> stats_head_;  // the driver's statistics buffer, while held
};

}  // namespace flotilla::vmm::virtio
