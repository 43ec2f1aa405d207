// The pieces between a virtio device (block, net, rng, balloon) and its transport
// (virtio-mmio, transport.h).
//
// Threading: every device has one event-loop thread of its own (its I/O thread) where queue
// notifications arrive; the transport's register accesses come from vCPU threads. One mutex
// per device (VirtioContext::mutex()) serializes the transport's registers, the queues and
// the device's state: the transport holds it when it calls into the device, and the device
// takes it in its own asynchronous paths (block completions, tap readiness).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/devices/virtio/queue.h"
#include "vmm/memory/guest_memory.h"

namespace flotilla::vmm::virtio {

// Raises the device's interrupt (an edge on its IOAPIC pin: KVM irqfd).
class InterruptTrigger {
 public:
  virtual ~InterruptTrigger() = default;
  virtual void trigger() = 0;
};

// Lets a guest write to a device register signal an eventfd without a VM exit (KVM
// ioeventfd). Without it (unit tests), notifications arrive as register writes.
class NotifyWiring {
 public:
  virtual ~NotifyWiring() = default;
  // Writes of the 4-byte `value` to guest physical `address` signal `eventfd`.
  virtual absl::Status attach(uint64_t address, uint32_t value, int eventfd) = 0;
  virtual void detach(uint64_t address, uint32_t value, int eventfd) = 0;
};

// What a device reaches of its transport.
class VirtioContext {
 public:
  virtual ~VirtioContext() = default;
  virtual absl::Mutex& mutex() = 0;
  virtual const GuestMemory& memory() const = 0;
  virtual EventLoop& loop() = 0;
  // The features the driver accepted (valid once the device is active).
  virtual uint64_t features() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex()) = 0;
  // Queue `index` when the driver activated it, else null.
  virtual Virtqueue* queue(size_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex()) = 0;
  // Interrupts the driver if queue `index` wants it after used buffers were added.
  virtual void signalUsed(size_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex()) = 0;
  // The configuration space changed: new generation, configuration-change interrupt.
  virtual void signalConfigChange() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex()) = 0;
  // The driver broke the protocol (a malformed queue): DEVICE_NEEDS_RESET, the device stops
  // using its queues until the driver resets it.
  virtual void needsReset(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex()) = 0;
  // Whether the queues may be used (DRIVER_OK, not paused, no reset needed).
  virtual bool running() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex()) = 0;
};

// The next chain the driver made available on `queue`, or nullopt: when there is none, and
// when the chain is malformed, which puts the device in NEEDS_RESET (context.running() is then
// false, so that callers stop polling the queue).
inline std::optional<DescriptorChain> popChain(VirtioContext& context, Virtqueue& queue)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(context.mutex()) {
  auto chain = queue.pop();
  if (!chain.ok()) {
    context.needsReset(chain.status());
    return std::nullopt;
  }
  return std::move(*chain);
}

// Copies the bytes of a configuration space `config` at `offset` into `data` (a driver's
// read); bytes beyond its end read as zero.
inline void readConfigBytes(std::span<const uint8_t> config, uint64_t offset,
                            std::span<uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = offset + i < config.size() ? config[offset + i] : 0;
  }
}

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t type() const = 0;
  // Device-specific features offered to the driver (the transport adds VERSION_1,
  // INDIRECT_DESC and EVENT_IDX).
  virtual uint64_t offeredFeatures() const = 0;
  // The maximum size of each of the device's queues (their count is the vector's size).
  virtual std::vector<uint16_t> queueMaxSizes() const = 0;

  // Called once, before the VM runs.
  virtual void bind(VirtioContext& context) = 0;

  // Configuration space accesses (offset relative to its start), under the device mutex.
  virtual void readConfig(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void writeConfig(uint64_t /*offset*/, std::span<const uint8_t> /*data*/) {}

  // The driver set DRIVER_OK (or a restored device resumes): queues are active. Under the
  // device mutex.
  virtual void activate() = 0;
  // Queue `index` was notified or has work; on the device's loop thread, under the mutex,
  // only while running(). Whenever the device then waits for the driver's next chain (it
  // took all there were), it must first call the queue's enableNotifications() and carry on
  // if that reports a chain (`do { pop until empty } while (enableNotifications())`): with
  // VIRTIO_F_EVENT_IDX the driver notifies only for chains past the avail_event published.
  virtual void process(size_t index) = 0;
  // Stops starting new work and waits until work in flight has completed (its buffers
  // returned to the driver). Called WITHOUT the mutex (completions need it), after the
  // transport stopped calling process(): on pause, reset and before the device goes away.
  virtual void quiesce() = 0;
  // Forgets everything the driver set up (after quiesce()), under the mutex.
  virtual void reset() = 0;

  // Device-specific state for snapshots, under the mutex, after quiesce().
  virtual void saveState(flotilla::v1::VirtioDeviceState& state) const = 0;
  virtual absl::Status restoreState(const flotilla::v1::VirtioDeviceState& state) = 0;
};

}  // namespace flotilla::vmm::virtio
