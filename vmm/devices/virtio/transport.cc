// VirtioMmio (see transport.h).
#include "vmm/devices/virtio/transport.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::vmm::virtio {
namespace {

constexpr uint64_t kTransportFeatures =
    featureBit(kFeatureVersion1) | featureBit(kFeatureIndirectDesc) | featureBit(kFeatureEventIdx);

uint32_t low32(uint64_t value) {
  return static_cast<uint32_t>(value);
}
uint32_t high32(uint64_t value) {
  return static_cast<uint32_t>(value >> 32);
}
uint64_t setLow32(uint64_t value, uint32_t low) {
  return (value & ~uint64_t{0xffffffff}) | low;
}
uint64_t setHigh32(uint64_t value, uint32_t high) {
  return (value & uint64_t{0xffffffff}) | (uint64_t{high} << 32);
}

}  // namespace

absl::StatusOr<std::shared_ptr<VirtioMmio>> VirtioMmio::create(
    std::string id, std::unique_ptr<VirtioDevice> device, const GuestMemory& memory,
    MmioPlacement placement, std::unique_ptr<InterruptTrigger> interrupt, NotifyWiring* wiring) {
  ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, EventLoop::create(id));
  std::shared_ptr<VirtioMmio> transport(new VirtioMmio(std::move(id), std::move(device), memory,
                                                       placement, std::move(interrupt), wiring,
                                                       std::move(loop)));
  absl::MutexLock lock(&transport->mu_);
  const std::vector<uint16_t> sizes = transport->device_->queueMaxSizes();
  transport->queues_.resize(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    QueueRegisters& queue = transport->queues_[i];
    queue.max_size = sizes[i];
    queue.notify = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!queue.notify.valid()) {
      return errnoStatus(errno,
                         fmt::format("virtio device {}: creating an eventfd", transport->id_));
    }
    const int fd = queue.notify.get();
    VirtioMmio* raw = transport.get();
    RETURN_IF_ERROR(transport->loop_->add(fd, EPOLLIN, [raw, fd, i](uint32_t) {
      uint64_t count;
      while (::read(fd, &count, sizeof(count)) < 0 && errno == EINTR) {
      }
      raw->processQueue(i);
    }));
    if (wiring != nullptr) {
      RETURN_IF_ERROR(
          wiring->attach(placement.base + mmio::kQueueNotify, static_cast<uint32_t>(i), fd));
    }
  }
  transport->device_->bind(*transport);
  return transport;
}

VirtioMmio::VirtioMmio(std::string id, std::unique_ptr<VirtioDevice> device,
                       const GuestMemory& memory, MmioPlacement placement,
                       std::unique_ptr<InterruptTrigger> interrupt, NotifyWiring* wiring,
                       std::unique_ptr<EventLoop> loop)
    : id_(std::move(id)),
      log_(Logger("virtio").with("device", id_)),
      device_(std::move(device)),
      memory_(memory),
      placement_(placement),
      interrupt_(std::move(interrupt)),
      wiring_(wiring),
      loop_(std::move(loop)) {}

VirtioMmio::~VirtioMmio() {
  shutdown();
}

void VirtioMmio::start() {
  loop_->start();
}

void VirtioMmio::shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  device_->quiesce();
  loop_->stop();
  absl::MutexLock lock(&mu_);
  if (wiring_ != nullptr) {
    for (size_t i = 0; i < queues_.size(); ++i) {
      wiring_->detach(placement_.base + mmio::kQueueNotify, static_cast<uint32_t>(i),
                      queues_[i].notify.get());
    }
    wiring_ = nullptr;  // it may go away before this transport does
  }
}

std::string VirtioMmio::cmdlineArgument() const {
  return fmt::format("virtio_mmio.device=4K@{:#x}:{}", placement_.base, placement_.irq);
}

uint64_t VirtioMmio::offeredFeatures() const {
  return device_->offeredFeatures() | kTransportFeatures;
}

VirtioMmio::QueueRegisters* VirtioMmio::selectedQueue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

void VirtioMmio::read(uint64_t offset, std::span<uint8_t> data) {
  absl::MutexLock lock(&mu_);
  if (offset >= mmio::kConfig) {
    device_->readConfig(offset - mmio::kConfig, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    // Registers are 32-bit (4.2.2.2): other accesses read as zero.
    std::fill(data.begin(), data.end(), uint8_t{0});
    return;
  }
  storeLittleEndian(readRegister(offset), data);
}

uint32_t VirtioMmio::readRegister(uint64_t offset) {
  switch (offset) {
    case mmio::kMagicValue:
      return mmio::kMagic;
    case mmio::kVersionReg:
      return mmio::kVersion;
    case mmio::kDeviceId:
      return device_->type();
    case mmio::kVendorIdReg:
      return mmio::kVendorId;
    case mmio::kDeviceFeatures: {
      const uint64_t features = offeredFeatures();
      if (device_features_sel_ == 0) return low32(features);
      if (device_features_sel_ == 1) return high32(features);
      return 0;
    }
    case mmio::kQueueNumMax: {
      QueueRegisters* queue = selectedQueue();
      return queue != nullptr ? queue->max_size : 0;
    }
    case mmio::kQueueReady: {
      QueueRegisters* queue = selectedQueue();
      return queue != nullptr && queue->ready ? 1 : 0;
    }
    case mmio::kInterruptStatus:
      return interrupt_status_;
    case mmio::kStatus:
      return status_;
    case mmio::kShmLenLow:
    case mmio::kShmLenHigh:
    case mmio::kShmBaseLow:
    case mmio::kShmBaseHigh:
      return 0xffffffff;  // no shared memory regions
    case mmio::kConfigGeneration:
      return config_generation_;
    default:
      return 0;
  }
}

void VirtioMmio::write(uint64_t offset, std::span<const uint8_t> data) {
  bool do_reset = false;
  {
    absl::MutexLock lock(&mu_);
    if (offset >= mmio::kConfig) {
      device_->writeConfig(offset - mmio::kConfig, data);
      return;
    }
    if (data.size() != 4 || offset % 4 != 0) return;
    const auto value = static_cast<uint32_t>(loadLittleEndian(data));
    if (offset == mmio::kStatus) {
      do_reset = writeStatus(value);
    } else {
      writeRegister(offset, value);
    }
  }
  if (do_reset) reset();
}

void VirtioMmio::writeRegister(uint64_t offset, uint32_t value) {
  QueueRegisters* queue = selectedQueue();
  // Queue registers may change only while the queue is not ready (4.2.2.3).
  const bool queue_writable = queue != nullptr && !queue->ready && (status_ & kStatusDriverOk) == 0;
  switch (offset) {
    case mmio::kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case mmio::kDriverFeatures:
      if ((status_ & kStatusFeaturesOk) != 0) return;  // frozen once accepted
      if (driver_features_sel_ == 0) driver_features_ = setLow32(driver_features_, value);
      if (driver_features_sel_ == 1) driver_features_ = setHigh32(driver_features_, value);
      return;
    case mmio::kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case mmio::kQueueSel:
      queue_sel_ = value;
      return;
    case mmio::kQueueNum:
      if (queue_writable)
        queue->layout.size = static_cast<uint16_t>(std::min<uint32_t>(value, 0xffff));
      return;
    case mmio::kQueueReady:
      if (queue != nullptr && (status_ & kStatusDriverOk) == 0) queue->ready = value == 1;
      return;
    case mmio::kQueueNotify:
      if (value < queues_.size()) {
        // Without ioeventfd (or a write that bypassed it): wake the I/O thread.
        uint64_t one = 1;
        while (::write(queues_[value].notify.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
        }
      }
      return;
    case mmio::kInterruptAck:
      interrupt_status_ &= ~value;
      return;
    case mmio::kQueueDescLow:
      if (queue_writable) queue->layout.desc = setLow32(queue->layout.desc, value);
      return;
    case mmio::kQueueDescHigh:
      if (queue_writable) queue->layout.desc = setHigh32(queue->layout.desc, value);
      return;
    case mmio::kQueueDriverLow:
      if (queue_writable) queue->layout.avail = setLow32(queue->layout.avail, value);
      return;
    case mmio::kQueueDriverHigh:
      if (queue_writable) queue->layout.avail = setHigh32(queue->layout.avail, value);
      return;
    case mmio::kQueueDeviceLow:
      if (queue_writable) queue->layout.used = setLow32(queue->layout.used, value);
      return;
    case mmio::kQueueDeviceHigh:
      if (queue_writable) queue->layout.used = setHigh32(queue->layout.used, value);
      return;
    default:
      return;  // read-only or reserved
  }
}

bool VirtioMmio::writeStatus(uint32_t value) {
  if (value == 0) return true;
  if ((status_ & kStatusFailed) != 0) return false;
  const uint32_t added = value & ~status_;
  if ((added & kStatusFeaturesOk) != 0) {
    const uint64_t offered = offeredFeatures();
    if ((driver_features_ & ~offered) != 0 || !hasFeature(driver_features_, kFeatureVersion1)) {
      log_.warn(
          "the driver accepted features {:#x} of {:#x} offered (VERSION_1 is required): "
          "refusing FEATURES_OK",
          driver_features_, offered);
      value &= ~kStatusFeaturesOk;
    }
  }
  if ((added & kStatusDriverOk) != 0 && (value & kStatusFeaturesOk) == 0) {
    value &= ~kStatusDriverOk;  // DRIVER_OK without accepted features is a driver bug
  }
  status_ = value;
  if ((added & kStatusDriverOk) != 0 && (status_ & kStatusDriverOk) != 0) {
    activate(std::vector<QueuePosition>(queues_.size()));
  }
  return false;
}

void VirtioMmio::activate(const std::vector<QueuePosition>& positions) {
  for (size_t i = 0; i < queues_.size(); ++i) {
    QueueRegisters& registers = queues_[i];
    if (!registers.ready) continue;
    auto queue = Virtqueue::activate(memory_, registers.layout, registers.max_size,
                                     driver_features_, positions[i]);
    if (!queue.ok()) {
      needsReset(annotate(queue.status(), fmt::format("queue {}", i)));
      return;
    }
    registers.queue.emplace(std::move(*queue));
  }
  active_ = true;
  device_->activate();
  kickAll();
}

void VirtioMmio::kickAll() {
  for (size_t i = 0; i < queues_.size(); ++i) {
    if (queues_[i].queue.has_value()) loop_->post([this, i] { processQueue(i); });
  }
}

void VirtioMmio::processQueue(size_t index) {
  absl::MutexLock lock(&mu_);
  if (index >= queues_.size()) return;
  if (!running() || !queues_[index].queue.has_value()) {
    queues_[index].pending = true;
    return;
  }
  queues_[index].pending = false;
  device_->process(index);
}

void VirtioMmio::reset() {
  {
    absl::MutexLock lock(&mu_);
    active_ = false;
  }
  device_->quiesce();
  absl::MutexLock lock(&mu_);
  device_->reset();
  status_ = 0;
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = 0;
  interrupt_status_ = 0;
  for (QueueRegisters& queue : queues_) {
    queue.layout = {};
    queue.ready = false;
    queue.queue.reset();
    queue.pending = false;
  }
}

Virtqueue* VirtioMmio::queue(size_t index) {
  if (index >= queues_.size() || !queues_[index].queue.has_value()) return nullptr;
  return &*queues_[index].queue;
}

void VirtioMmio::signalUsed(size_t index) {
  Virtqueue* queue = this->queue(index);
  if (queue == nullptr || !queue->needsInterrupt()) return;
  interrupt_status_ |= mmio::kInterruptUsedBuffer;
  interrupt_->trigger();
}

void VirtioMmio::signalConfigChange() {
  ++config_generation_;
  if ((status_ & kStatusDriverOk) == 0) return;
  interrupt_status_ |= mmio::kInterruptConfigChange;
  interrupt_->trigger();
}

void VirtioMmio::needsReset(const absl::Status& why) {
  log_.error("the driver broke the virtio protocol, the device needs a reset: {}", why.message());
  active_ = false;
  status_ |= kStatusNeedsReset;
  if ((status_ & kStatusDriverOk) != 0) {
    interrupt_status_ |= mmio::kInterruptConfigChange;
    interrupt_->trigger();
  }
}

bool VirtioMmio::running() const {
  return active_ && !paused_ && !shut_down_;
}

void VirtioMmio::pause() {
  {
    absl::MutexLock lock(&mu_);
    if (paused_) return;
    paused_ = true;
  }
  device_->quiesce();
}

void VirtioMmio::resume() {
  absl::MutexLock lock(&mu_);
  if (!paused_) return;
  paused_ = false;
  if (active_) kickAll();
}

absl::Status VirtioMmio::saveState(flotilla::v1::VirtioDeviceState& state) {
  absl::MutexLock lock(&mu_);
  if (active_ && !paused_) {
    return absl::FailedPreconditionError(
        fmt::format("virtio device {} must be paused to save its state", id_));
  }
  state.set_device_type(device_->type());
  state.set_id(id_);
  state.set_status(status_);
  state.set_driver_features(driver_features_);
  state.set_device_features_sel(device_features_sel_);
  state.set_driver_features_sel(driver_features_sel_);
  state.set_queue_sel(queue_sel_);
  state.set_interrupt_status(interrupt_status_);
  state.set_config_generation(config_generation_);
  for (const QueueRegisters& registers : queues_) {
    flotilla::v1::VirtioQueueState* queue = state.add_queues();
    queue->set_size(registers.layout.size);
    queue->set_desc(registers.layout.desc);
    queue->set_avail(registers.layout.avail);
    queue->set_used(registers.layout.used);
    queue->set_ready(registers.ready);
    if (registers.queue.has_value()) {
      const QueuePosition position = registers.queue->position();
      queue->set_next_avail(position.next_avail);
      queue->set_next_used(position.next_used);
      queue->set_signalled_used(position.signalled_used);
      queue->set_signalled_used_valid(position.signalled_used_valid);
    }
  }
  device_->saveState(state);
  return absl::OkStatus();
}

absl::Status VirtioMmio::restoreState(const flotilla::v1::VirtioDeviceState& state) {
  absl::MutexLock lock(&mu_);
  if (state.device_type() != device_->type() || state.id() != id_) {
    return absl::FailedPreconditionError(fmt::format(
        "the snapshot has virtio device {} of type {} where this VM has {} of type {}: give the "
        "VM the same devices, in the same order, as when it was saved",
        state.id(), state.device_type(), id_, device_->type()));
  }
  if (static_cast<size_t>(state.queues_size()) != queues_.size()) {
    return absl::DataLossError(fmt::format("the snapshot of virtio device {} has {} queues, not {}",
                                           id_, state.queues_size(), queues_.size()));
  }
  status_ = state.status();
  driver_features_ = state.driver_features();
  device_features_sel_ = state.device_features_sel();
  driver_features_sel_ = state.driver_features_sel();
  queue_sel_ = state.queue_sel();
  interrupt_status_ = state.interrupt_status();
  config_generation_ = state.config_generation();
  std::vector<QueuePosition> positions(queues_.size());
  for (size_t i = 0; i < queues_.size(); ++i) {
    const flotilla::v1::VirtioQueueState& saved = state.queues(static_cast<int>(i));
    QueueRegisters& registers = queues_[i];
    registers.layout =
        QueueLayout{static_cast<uint16_t>(saved.size()), saved.desc(), saved.avail(), saved.used()};
    registers.ready = saved.ready();
    positions[i] = QueuePosition{
        static_cast<uint16_t>(saved.next_avail()), static_cast<uint16_t>(saved.next_used()),
        static_cast<uint16_t>(saved.signalled_used()), saved.signalled_used_valid()};
  }
  RETURN_IF_ERROR(device_->restoreState(state));
  if ((status_ & kStatusDriverOk) != 0 && (status_ & kStatusNeedsReset) == 0) {
    activate(positions);
    if (!active_) {
      return absl::DataLossError(
          fmt::format("the snapshot's queues of virtio device {} are not valid", id_));
    }
  }
  return absl::OkStatus();
}

}  // namespace flotilla::vmm::virtio
