// VirtioNet (see net.h).
#include "vmm/devices/virtio/net.h"

#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/status.h"
#include "fmt/format.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/virtio/blk_request.h"
#include "vmm/devices/virtio/net_frames.h"

namespace flotilla::vmm::virtio {
namespace {

// A frame with its header: at most a 64 KiB GSO packet plus its Ethernet and virtio headers.
constexpr size_t kMaxFrame = sizeof(net::Header) + 65535 + 14 + 4;
constexpr uint64_t kOffloadFeatures =
    featureBit(net::kFeatureCsum) | featureBit(net::kFeatureGuestCsum) |
    featureBit(net::kFeatureGuestTso4) | featureBit(net::kFeatureGuestTso6) |
    featureBit(net::kFeatureGuestEcn) | featureBit(net::kFeatureGuestUfo) |
    featureBit(net::kFeatureHostTso4) | featureBit(net::kFeatureHostTso6) |
    featureBit(net::kFeatureHostEcn) | featureBit(net::kFeatureHostUfo);

}  // namespace

VirtioNet::VirtioNet(std::string id, std::unique_ptr<NetBackend> backend, NetConfig config)
    : id_(std::move(id)),
      log_(Logger("virtio-net").with("device", id_)),
      limiter_(systemClock(), 5, absl::Minutes(1)),
      backend_(std::move(backend)),
      config_(config),
      status_(net::kStatusLinkUp),
      frame_(kMaxFrame) {}

VirtioNet::~VirtioNet() = default;

uint64_t VirtioNet::offeredFeatures() const {
  uint64_t features = featureBit(net::kFeatureMac) | featureBit(net::kFeatureStatus) |
                      featureBit(net::kFeatureMrgRxbuf) | featureBit(net::kFeatureCtrlVq) |
                      featureBit(net::kFeatureGuestAnnounce);
  if (config_.offloads) features |= kOffloadFeatures;
  return features;
}

void VirtioNet::bind(VirtioContext& context) {
  context_ = &context;
  absl::Status added = context.loop().add(backend_->fd(), EPOLLIN | EPOLLOUT | EPOLLET,
                                          [this](uint32_t events) { onBackendEvent(events); });
  if (!added.ok()) log_.error("cannot watch {}: {}", backend_->describe(), added.message());
}

void VirtioNet::readConfig(uint64_t offset, std::span<uint8_t> data) {
  std::array<uint8_t, net::kConfigBytes> config{};
  std::memcpy(config.data() + net::kConfigMac, config_.mac.data(), config_.mac.size());
  storeLittleEndian(status_, std::span<uint8_t>(config).subspan(net::kConfigStatus, 2));
  storeLittleEndian(1, std::span<uint8_t>(config).subspan(net::kConfigMaxQueuePairs, 2));
  readConfigBytes(config, offset, data);
}

void VirtioNet::activate() {
  absl::Status applied = backend_->setGuestOffloads(context_->features());
  if (!applied.ok()) {
    log_.error("cannot set the offloads of {}: {}", backend_->describe(), applied.message());
  }
  rx_waiting_ = true;  // read whatever the backend queued meanwhile
}

void VirtioNet::process(size_t index) {
  switch (index) {
    case kRxQueue:
      if (rx_waiting_) receive();
      return;
    case kTxQueue:
      transmit();
      return;
    case kCtrlQueue:
      control();
      return;
    default:
      return;
  }
}

void VirtioNet::onBackendEvent(uint32_t events) {
  absl::MutexLock lock(&context_->mutex());
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) rx_waiting_ = true;
  if (!context_->running()) return;  // resume() processes every queue
  if (rx_waiting_) receive();
  if ((events & EPOLLOUT) != 0 && tx_waiting_) transmit();
}

bool VirtioNet::deliverPending() {
  Virtqueue* queue = context_->queue(kRxQueue);
  if (queue == nullptr) return false;
  const bool mergeable = hasFeature(context_->features(), net::kFeatureMrgRxbuf);
  std::vector<DescriptorChain> chains;
  uint64_t room = 0;
  while (room < frame_length_) {
    std::optional<DescriptorChain> chain = popChain(*context_, *queue);
    if (!chain.has_value()) {
      if (!context_->running()) {
        frame_length_ = 0;  // a malformed queue: the frame cannot be delivered
      } else {
        queue->rewind(static_cast<uint16_t>(chains.size()));
      }
      return false;
    }
    room += chain->writableBytes();
    chains.push_back(std::move(*chain));
    if (!mergeable) break;
  }
  if (room < frame_length_) {
    // Without mergeable buffers each buffer must hold a whole frame: this one cannot be
    // delivered.
    ++counters_.rx_dropped;
    queue->addUsed(chains.front().head, 0);
    frame_length_ = 0;
    return true;
  }
  storeLittleEndian(chains.size(),
                    std::span<uint8_t>(frame_).subspan(offsetof(net::Header, num_buffers), 2));
  size_t offset = 0;
  for (const DescriptorChain& chain : chains) {
    const size_t written = scatterFrame(
        chain, std::span<const uint8_t>(frame_).subspan(offset, frame_length_ - offset));
    queue->addUsed(chain.head, static_cast<uint32_t>(written));
    offset += written;
  }
  ++counters_.rx_frames;
  counters_.rx_bytes += frame_length_ - sizeof(net::Header);
  frame_length_ = 0;
  return true;
}

void VirtioNet::receive() {
  Virtqueue* queue = context_->queue(kRxQueue);
  if (queue == nullptr) return;
  bool delivered = false;
  while (true) {
    if (frame_length_ == 0) {
      const ssize_t n = ::read(backend_->fd(), frame_.data(), frame_.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) {
          log_.limited(limiter_, LogLevel::kError, "reading from {}: {}", backend_->describe(),
                       std::strerror(errno));
        }
        rx_waiting_ = false;
        break;
      }
      if (static_cast<size_t>(n) <= sizeof(net::Header)) {
        ++counters_.rx_dropped;
        continue;
      }
      frame_length_ = static_cast<size_t>(n);
    }
    if (deliverPending()) {
      delivered = true;
      continue;
    }
    if (!context_->running()) break;  // a malformed queue
    // No room: ask the driver to notify when it adds buffers, then look once more.
    if (!queue->enableNotifications()) break;
  }
  if (delivered) context_->signalUsed(kRxQueue);
}

void VirtioNet::transmit() {
  Virtqueue* queue = context_->queue(kTxQueue);
  if (queue == nullptr) return;
  bool sent = false;
  tx_waiting_ = false;
  do {
    while (true) {
      std::optional<DescriptorChain> chain = popChain(*context_, *queue);
      if (!chain.has_value()) break;
      const DescriptorChain& frame = *chain;
      const uint64_t bytes = frame.readableBytes();
      std::vector<iovec> iov = transmitBuffers(frame);
      if (iov.empty()) {
        ++counters_.tx_errors;
        queue->addUsed(frame.head, 0);
        sent = true;
        continue;
      }
      const ssize_t n = ::writev(backend_->fd(), iov.data(), static_cast<int>(iov.size()));
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        queue->rewind(1);
        tx_waiting_ = true;
        break;
      }
      if (n < 0) {
        ++counters_.tx_errors;
        log_.limited(limiter_, LogLevel::kWarn, "sending a frame of {} bytes on {}: {}", bytes,
                     backend_->describe(), std::strerror(errno));
      } else {
        ++counters_.tx_frames;
        counters_.tx_bytes += bytes - sizeof(net::Header);
      }
      queue->addUsed(frame.head, 0);
      sent = true;
    }
  } while (!tx_waiting_ && context_->running() && queue->enableNotifications());
  if (sent) context_->signalUsed(kTxQueue);
}

void VirtioNet::control() {
  Virtqueue* queue = context_->queue(kCtrlQueue);
  if (queue == nullptr) return;
  bool answered = false;
  // As on every queue: after the last chain, enableNotifications() and look again. With
  // VIRTIO_F_EVENT_IDX a driver notifies only when its avail index passes avail_event: were it
  // never published, only the first command would be notified (avail_event 0 in a zeroed
  // ring), and e.g. the announcement ack after a VM's second migration would wait for ever.
  do {
    while (true) {
      std::optional<DescriptorChain> chain = popChain(*context_, *queue);
      if (!chain.has_value()) break;
      const DescriptorChain& command = *chain;
      uint8_t header[2] = {};
      if (gatherBytes(command.readable, 0, header) != sizeof(header) || command.writable.empty()) {
        context_->needsReset(absl::DataLossError(fmt::format(
            "control command {}: no class and command, or no buffer for the ack", command.head)));
        return;
      }
      uint8_t ack = net::kCtrlErr;
      if (header[0] == net::kCtrlAnnounce && header[1] == net::kCtrlAnnounceAck) {
        status_ = static_cast<uint16_t>(status_ & ~net::kStatusAnnounce);
        ack = net::kCtrlOk;
      }
      const ChainBuffer& last = command.writable.back();
      last.data[last.length - 1] = ack;
      queue->addUsed(command.head, 1);
      answered = true;
    }
  } while (context_->running() && queue->enableNotifications());
  if (answered) context_->signalUsed(kCtrlQueue);
}

void VirtioNet::reset() {
  frame_length_ = 0;
  rx_waiting_ = false;
  tx_waiting_ = false;
  status_ = static_cast<uint16_t>(status_ & net::kStatusLinkUp);
}

void VirtioNet::setLinkUp(bool up) {
  absl::MutexLock lock(&context_->mutex());
  const auto status =
      static_cast<uint16_t>(up ? status_ | net::kStatusLinkUp : status_ & ~net::kStatusLinkUp);
  if (status == status_) return;
  status_ = status;
  context_->signalConfigChange();
}

bool VirtioNet::linkUp() const {
  absl::MutexLock lock(&context_->mutex());
  return (status_ & net::kStatusLinkUp) != 0;
}

bool VirtioNet::announce(const std::vector<std::vector<uint8_t>>& frames) {
  for (const std::vector<uint8_t>& frame : frames) {
    net::Header header{};
    iovec iov[2] = {{&header, sizeof(header)}, {const_cast<uint8_t*>(frame.data()), frame.size()}};
    if (::writev(backend_->fd(), iov, 2) < 0) {
      log_.warn("sending an announcement on {}: {}", backend_->describe(), std::strerror(errno));
    }
  }
  absl::MutexLock lock(&context_->mutex());
  const uint64_t features = context_->features();
  if (!context_->running() || !hasFeature(features, net::kFeatureGuestAnnounce) ||
      !hasFeature(features, net::kFeatureCtrlVq)) {
    return false;
  }
  status_ |= net::kStatusAnnounce;
  context_->signalConfigChange();
  return true;
}

VirtioNet::Counters VirtioNet::counters() const {
  absl::MutexLock lock(&context_->mutex());
  return counters_;
}

void VirtioNet::saveState(flotilla::v1::VirtioDeviceState& state) const {
  flotilla::v1::VirtioNetState* saved = state.mutable_net();
  saved->set_mac(std::string(config_.mac.begin(), config_.mac.end()));
  saved->set_status(status_);
}

absl::Status VirtioNet::restoreState(const flotilla::v1::VirtioDeviceState& state) {
  const std::string& mac = state.net().mac();
  if (mac != std::string(config_.mac.begin(), config_.mac.end())) {
    return absl::FailedPreconditionError(fmt::format(
        "NIC {}: the saved VM's MAC differs from this one's: give the NIC the MAC it had", id_));
  }
  status_ = static_cast<uint16_t>(state.net().status());
  return absl::OkStatus();
}

}  // namespace flotilla::vmm::virtio
