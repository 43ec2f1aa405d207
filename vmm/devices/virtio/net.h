// VirtioNet: a virtio-net device (virtio 1.2 section 5.1) on a tap: receive, transmit and
// control queues; the MAC from the VM's configuration; link status; checksum and segmentation
// offloads negotiated with the guest and applied to the tap, or all switched off; and
// announcements after a migration (VIRTIO_NET_F_GUEST_ANNOUNCE, plus frames the VMM sends
// itself).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "common/log.h"
#include "vmm/devices/virtio/device.h"

namespace flotilla::vmm::virtio {

// The host side of a NIC: a tap opened with IFF_VNET_HDR and a 12-byte virtio_net_hdr, or
// (in tests) a datagram socket. Each read returns one frame, each write sends one frame,
// both with the header in front; the fd is non-blocking.
class NetBackend {
 public:
  virtual ~NetBackend() = default;
  virtual int fd() const = 0;
  // Which offloaded packets the host may hand to the guest: those the guest's negotiated
  // VIRTIO_NET_F_GUEST_* features allow (TUNSETOFFLOAD on a tap); none for 0.
  virtual absl::Status setGuestOffloads(uint64_t guest_features) = 0;
  virtual std::string describe() const = 0;
};

struct NetConfig {
  std::array<uint8_t, 6> mac{};
  bool offloads = true;  // offer checksum and segmentation offloads to the guest
};

class VirtioNet final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;
  static constexpr size_t kCtrlQueue = 2;

  VirtioNet(std::string id, std::unique_ptr<NetBackend> backend, NetConfig config);
  ~VirtioNet() override;

  // Tells the guest the link went up or down (configuration-change interrupt).
  void setLinkUp(bool up);
  bool linkUp() const;
  // After a migration: asks the guest to announce itself (when it negotiated
  // VIRTIO_NET_F_GUEST_ANNOUNCE) and sends `frames` (RARP, gratuitous ARP; without a header)
  // on the tap. Returns whether the guest was asked.
  bool announce(const std::vector<std::vector<uint8_t>>& frames);
  const NetConfig& config() const { return config_; }

  struct Counters {
    uint64_t rx_frames = 0;
    uint64_t rx_bytes = 0;
    uint64_t rx_dropped = 0;  // frames the guest had no room for, or too short
    uint64_t tx_frames = 0;
    uint64_t tx_bytes = 0;
    uint64_t tx_errors = 0;
  };
  Counters counters() const;

  // VirtioDevice.
  uint32_t type() const override { return kDeviceNet; }
  uint64_t offeredFeatures() const override;
  std::vector<uint16_t> queueMaxSizes() const override { return {kQueueSize, kQueueSize, 64}; }
  void bind(VirtioContext& context) override;
  void readConfig(uint64_t offset, std::span<uint8_t> data) override;
  void activate() override;
  void process(size_t index) override;
  void quiesce() override {}
  void reset() override;
  void saveState(flotilla::v1::VirtioDeviceState& state) const override;
  absl::Status restoreState(const flotilla::v1::VirtioDeviceState& state) override;

 private:
  void onBackendEvent(uint32_t events);
  void receive();
  void transmit();
  void control();
  // Copies the pending frame into receive chains; false when the guest has no room yet.
  bool deliverPending();

  const std::string id_;
  const Logger log_;
  LogRateLimiter limiter_;
  const std::unique_ptr<NetBackend> backend_;
  const NetConfig config_;
  VirtioContext* context_ = nullptr;
  // Guarded by the context's mutex.
  uint16_t status_;
  bool offloads_applied_ = false;
  std::vector<uint8_t> frame_;  // a frame read from the backend, not yet delivered
  size_t frame_length_ = 0;     // 0: none pending
  bool rx_waiting_ = false;     // the guest had no receive buffers
  bool tx_waiting_ = false;     // the backend would block
  Counters counters_;
};

}  // namespace flotilla::vmm::virtio
