// VirtioRng: a virtio entropy device (virtio 1.2 section 5.4) that fills the driver's buffers
// from the host kernel's getrandom().
#pragma once

#include "vmm/devices/virtio/device.h"

namespace flotilla::vmm::virtio {

class VirtioRng final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 64;
  // At most this many bytes per request: a driver asking for more gets this much.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  uint32_t type() const override { return kDeviceRng; }
  uint64_t offeredFeatures() const override { return 0; }
  std::vector<uint16_t> queueMaxSizes() const override { return {kQueueSize}; }
  void bind(VirtioContext& context) override { context_ = &context; }
  void readConfig(uint64_t /*offset*/, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), uint8_t{0});
  }
  void activate() override {}
  void process(size_t index) override;
  void quiesce() override {}
  void reset() override {}
  void saveState(flotilla::v1::VirtioDeviceState& /*state*/) const override {}
  absl::Status restoreState(const flotilla::v1::VirtioDeviceState& /*state*/) override {
    return absl::OkStatus();
  }

 private:
  VirtioContext* context_ = nullptr;
};

}  // namespace flotilla::vmm::virtio
