// VirtioBlock: a virtio-blk device (virtio 1.2 section 5.2) on a storage::BlockBackend (raw
// file, iSCSI). One request queue; requests go to the backend asynchronously with their
// buffers in guest memory, and complete on the backend's thread.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "common/log.h"
#include "storage/block_backend.h"
#include "vmm/devices/virtio/blk_request.h"
#include "vmm/devices/virtio/device.h"

namespace flotilla::vmm::virtio {

class VirtioBlock final : public VirtioDevice, public storage::BlockCompletionSink {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Data segments per request the driver may use (two more carry the header and status).
  static constexpr uint32_t kSegMax = kQueueSize - 2;

  // `serial` is what GET_ID returns (at most 20 bytes are used).
  VirtioBlock(std::string id, std::unique_ptr<storage::BlockBackend> backend, std::string serial);
  ~VirtioBlock() override;

  // Resizes the disk (the backend) and tells the driver (configuration-change interrupt).
  absl::StatusOr<uint64_t> resize(uint64_t bytes);
  uint64_t capacityBytes() const;
  const storage::BlockBackend& backend() const { return *backend_; }

  // VirtioDevice.
  uint32_t type() const override { return kDeviceBlock; }
  uint64_t offeredFeatures() const override;
  std::vector<uint16_t> queueMaxSizes() const override { return {kQueueSize}; }
  void bind(VirtioContext& context) override { context_ = &context; }
  void readConfig(uint64_t offset, std::span<uint8_t> data) override;
  void activate() override {}
  void process(size_t index) override;
  void quiesce() override;
  void reset() override;
  void saveState(flotilla::v1::VirtioDeviceState& state) const override;
  absl::Status restoreState(const flotilla::v1::VirtioDeviceState& state) override;

  // storage::BlockCompletionSink (the backend's thread).
  void completed(std::span<const storage::BlockCompletion> completions) override;

 private:
  struct InFlight {
    uint8_t* status;
    uint32_t used_length;
  };
  BlockDiskInfo diskInfo() const;
  std::vector<uint8_t> configBytes() const;

  const std::string id_;
  const Logger log_;
  const std::string serial_;
  VirtioContext* context_ = nullptr;
  // Guarded by the context's mutex.
  uint64_t capacity_sectors_;
  absl::flat_hash_map<uint16_t, InFlight> in_flight_;  // by chain head
  bool quiescing_ = false;
  uint64_t completed_ = 0;
  // Last, so that it goes first: a backend being destroyed may still report completions.
  const std::unique_ptr<storage::BlockBackend> backend_;
};

}  // namespace flotilla::vmm::virtio
