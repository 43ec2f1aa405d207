// VirtioMmio: the virtio-mmio transport, version 2 (virtio 1.2 section 4.2), for one device.
// It owns the registers the driver programs, the device's virtqueues, its I/O thread (an
// EventLoop) with one eventfd per queue for notifications, and its interrupt. Linux finds the
// device through `virtio_mmio.device=4K@BASE:IRQ` on its command line (cmdlineArgument()).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/virtio/device.h"

namespace flotilla::vmm::virtio {

struct MmioPlacement {
  uint64_t base = 0;  // of the 4 KiB register window
  uint32_t irq = 0;   // IOAPIC pin (GSI)
};

class VirtioMmio final : public BusDevice, public VirtioContext {
 public:
  // `id` names the device in logs, errors and snapshots ("disk0", "net0"). `wiring` may be
  // null (notifications then arrive only as register writes); it must live until shutdown().
  static absl::StatusOr<std::shared_ptr<VirtioMmio>> create(
      std::string id, std::unique_ptr<VirtioDevice> device, const GuestMemory& memory,
      MmioPlacement placement, std::unique_ptr<InterruptTrigger> interrupt, NotifyWiring* wiring);
  ~VirtioMmio() override;

  // Starts the device's I/O thread.
  void start();
  // Stops the device for good: waits for requests in flight, stops the I/O thread.
  void shutdown();

  // The VM pauses: no queue is processed until resume(); requests in flight complete first.
  void pause();
  void resume();

  // State for snapshots: the device must be paused (or not started).
  absl::Status saveState(flotilla::v1::VirtioDeviceState& state);
  // Before start(): the state a paused device of the same kind saved.
  absl::Status restoreState(const flotilla::v1::VirtioDeviceState& state);

  const std::string& id() const { return id_; }
  MmioPlacement placement() const { return placement_; }
  std::string cmdlineArgument() const;
  VirtioDevice& device() { return *device_; }

  // BusDevice (vCPU threads).
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // VirtioContext.
  absl::Mutex& mutex() override ABSL_LOCK_RETURNED(mu_) { return mu_; }
  const GuestMemory& memory() const override { return memory_; }
  EventLoop& loop() override { return *loop_; }
  uint64_t features() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return driver_features_; }
  Virtqueue* queue(size_t index) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void signalUsed(size_t index) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void signalConfigChange() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void needsReset(const absl::Status& why) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool running() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  struct QueueRegisters {
    uint16_t max_size = 0;
    QueueLayout layout;
    bool ready = false;
    std::optional<Virtqueue> queue;  // while the device is active
    UniqueFd notify;                 // eventfd, signalled by the guest's QueueNotify write
    bool pending = false;            // notified while the device could not process it
  };

  VirtioMmio(std::string id, std::unique_ptr<VirtioDevice> device, const GuestMemory& memory,
             MmioPlacement placement, std::unique_ptr<InterruptTrigger> interrupt,
             NotifyWiring* wiring, std::unique_ptr<EventLoop> loop);
  uint32_t readRegister(uint64_t offset) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void writeRegister(uint64_t offset, uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns true when the driver asked for a reset, which write() then performs unlocked.
  bool writeStatus(uint32_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void reset();
  // Activates every ready queue from its layout and `positions`, then the device.
  void activate(const std::vector<QueuePosition>& positions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void processQueue(size_t index);
  void kickAll() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t offeredFeatures() const;
  QueueRegisters* selectedQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string id_;
  const Logger log_;
  const std::unique_ptr<VirtioDevice> device_;
  const GuestMemory& memory_;
  const MmioPlacement placement_;
  const std::unique_ptr<InterruptTrigger> interrupt_;
  NotifyWiring* wiring_;  // until shutdown()
  std::unique_ptr<EventLoop> loop_;

  absl::Mutex mu_;
  uint32_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t device_features_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t driver_features_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t driver_features_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t queue_sel_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t interrupt_status_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t config_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool active_ ABSL_GUARDED_BY(mu_) = false;  // queues live (DRIVER_OK, no reset needed)
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<QueueRegisters> queues_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::vmm::virtio
