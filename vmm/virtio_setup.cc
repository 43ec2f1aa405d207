// VirtioDevices (see virtio_setup.h).
#include "vmm/virtio_setup.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "network/announce.h"
#include "network/mac_address.h"
#include "network/tap.h"
#include "storage/block_backend.h"
#include "vmm/devices/virtio/rng.h"
#include "vmm/exit_codes.h"

namespace flotilla::vmm {
namespace {

// An edge on a GSI through KVM_IRQFD.
class IrqfdTrigger final : public virtio::InterruptTrigger {
 public:
  static absl::StatusOr<std::unique_ptr<IrqfdTrigger>> create(const VmFd& vm, uint32_t gsi) {
    UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd.valid()) return errnoStatus(errno, "creating an eventfd for an interrupt");
    RETURN_IF_ERROR(vm.irqfd(fd.get(), gsi, true));
    return std::unique_ptr<IrqfdTrigger>(new IrqfdTrigger(vm, gsi, std::move(fd)));
  }
  ~IrqfdTrigger() override { (void)vm_.irqfd(fd_.get(), gsi_, false); }
  void trigger() override {
    const uint64_t one = 1;
    while (::write(fd_.get(), &one, sizeof(one)) < 0 && errno == EINTR) {
    }
  }

 private:
  IrqfdTrigger(const VmFd& vm, uint32_t gsi, UniqueFd fd)
      : vm_(vm), gsi_(gsi), fd_(std::move(fd)) {}
  const VmFd& vm_;
  const uint32_t gsi_;
  UniqueFd fd_;
};

class TapBackend final : public virtio::NetBackend {
 public:
  explicit TapBackend(network::Tap tap) : tap_(std::move(tap)) {}
  int fd() const override { return tap_.fd(); }
  absl::Status setGuestOffloads(uint64_t guest_features) override {
    return tap_.setOffloads(network::tunOffloadsForGuestFeatures(guest_features));
  }
  std::string describe() const override { return fmt::format("tap {}", tap_.name()); }

 private:
  network::Tap tap_;
};

// Bad configuration (a missing file, a malformed URL) is the user's to fix; anything else
// (an unreachable target, no permission) is the host's.
absl::Status deviceError(const absl::Status& status, std::string_view device) {
  const bool usage = absl::IsInvalidArgument(status) || absl::IsNotFound(status) ||
                     absl::IsFailedPrecondition(status);
  return withExitCode(annotate(status, fmt::format("device {}", device)),
                      usage ? kExitUsage : kExitNoResources);
}

}  // namespace

absl::Status KvmNotifyWiring::attach(uint64_t address, uint32_t value, int eventfd) {
  return vm_.ioeventfd(eventfd, address, value, true);
}

void KvmNotifyWiring::detach(uint64_t address, uint32_t value, int eventfd) {
  (void)vm_.ioeventfd(eventfd, address, value, false);
}

absl::StatusOr<std::unique_ptr<VirtioDevices>> VirtioDevices::create(const VmConfig& config,
                                                                     const GuestMemory& memory,
                                                                     const VmFd& vm,
                                                                     Bus& mmio_bus) {
  const size_t count =
      config.disks.size() + config.nics.size() + (config.rng ? 1 : 0) + (config.balloon ? 1 : 0);
  if (count > kVirtioIrqs.size()) {
    return withExitCode(absl::InvalidArgumentError(fmt::format(
                            "{} virtio devices (disks, NICs, rng, balloon) are too many: a VM has "
                            "at most {}",
                            count, kVirtioIrqs.size())),
                        kExitUsage);
  }
  std::unique_ptr<VirtioDevices> devices(new VirtioDevices(vm));
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskConfig& disk = config.disks[i];
    const std::string id = fmt::format("disk{}", i);
    absl::StatusOr<std::unique_ptr<storage::BlockBackend>> backend;
    if (!disk.path.empty()) {
      backend = storage::openRawFile(disk.path, {.read_only = disk.read_only});
    } else {
      storage::IscsiOptions options;
      options.read_only = disk.read_only;
      options.generation = disk.generation;
      backend = storage::openIscsi(disk.iscsi, options);
    }
    if (!backend.ok()) return deviceError(backend.status(), id);
    auto device = std::make_unique<virtio::VirtioBlock>(id, std::move(*backend),
                                                        disk.serial.empty() ? id : disk.serial);
    virtio::VirtioBlock* raw = device.get();
    RETURN_IF_ERROR(devices->add(id, std::move(device), memory, vm, mmio_bus));
    devices->disks_.push_back(raw);
  }
  for (size_t i = 0; i < config.nics.size(); ++i) {
    const NicConfig& nic = config.nics[i];
    const std::string id = fmt::format("net{}", i);
    absl::StatusOr<network::Tap> tap;
    if (nic.tap.empty()) {
      UniqueFd fd(::fcntl(nic.fd, F_DUPFD_CLOEXEC, 0));
      if (!fd.valid()) {
        return deviceError(absl::InvalidArgumentError(fmt::format(
                               "--net fd={}: descriptor {} is not open in this process: pass the "
                               "tap's descriptor to flotilla-vmm",
                               nic.fd, nic.fd)),
                           id);
      }
      tap = network::Tap::fromFd(std::move(fd));
    } else {
      tap = network::Tap::open(nic.tap);
    }
    if (!tap.ok()) return deviceError(tap.status(), id);
    auto mac = network::MacAddress::parse(nic.mac);
    if (!mac.ok()) return deviceError(mac.status(), id);
    virtio::NetConfig net_config;
    std::copy(mac->bytes().begin(), mac->bytes().end(), net_config.mac.begin());
    net_config.offloads = nic.offload;
    auto device = std::make_unique<virtio::VirtioNet>(
        id, std::make_unique<TapBackend>(std::move(*tap)), net_config);
    virtio::VirtioNet* raw = device.get();
    RETURN_IF_ERROR(devices->add(id, std::move(device), memory, vm, mmio_bus));
    devices->nics_.push_back(raw);
  }
  if (config.rng) {
    RETURN_IF_ERROR(
        devices->add("rng0", std::make_unique<virtio::VirtioRng>(), memory, vm, mmio_bus));
  }
  if (config.balloon) {
    auto device = std::make_unique<virtio::VirtioBalloon>("balloon0");
    devices->balloon_ = device.get();
    RETURN_IF_ERROR(devices->add("balloon0", std::move(device), memory, vm, mmio_bus));
  }
  return devices;
}

absl::Status VirtioDevices::add(std::string id, std::unique_ptr<virtio::VirtioDevice> device,
                                const GuestMemory& memory, const VmFd& vm, Bus& mmio_bus) {
  const size_t index = transports_.size();
  const virtio::MmioPlacement placement{kVirtioMmioBase + index * virtio::mmio::kWindowSize,
                                        kVirtioIrqs[index]};
  auto internal = [&](const absl::Status& status) {
    return withExitCode(annotate(status, fmt::format("device {}", id)), kExitInternalError);
  };
  auto trigger = IrqfdTrigger::create(vm, placement.irq);
  if (!trigger.ok()) return internal(trigger.status());
  auto transport = virtio::VirtioMmio::create(id, std::move(device), memory, placement,
                                              std::move(*trigger), &wiring_);
  if (!transport.ok()) return internal(transport.status());
  absl::Status added = mmio_bus.add(placement.base, virtio::mmio::kWindowSize, id, *transport);
  if (!added.ok()) return internal(added);
  transports_.push_back(std::move(*transport));
  return absl::OkStatus();
}

VirtioDevices::~VirtioDevices() {
  shutdown();
}

std::string VirtioDevices::kernelCmdline() const {
  std::string cmdline;
  for (const auto& transport : transports_) {
    if (!cmdline.empty()) cmdline += ' ';
    cmdline += transport->cmdlineArgument();
  }
  return cmdline;
}

void VirtioDevices::start() {
  for (const auto& transport : transports_) transport->start();
}

void VirtioDevices::pause() {
  for (const auto& transport : transports_) transport->pause();
}

void VirtioDevices::resume() {
  for (const auto& transport : transports_) transport->resume();
}

void VirtioDevices::shutdown() {
  for (const auto& transport : transports_) transport->shutdown();
}

absl::Status VirtioDevices::saveState(flotilla::v1::VmSnapshot& snapshot) {
  for (const auto& transport : transports_) {
    RETURN_IF_ERROR(transport->saveState(*snapshot.add_virtio()));
  }
  return absl::OkStatus();
}

absl::Status VirtioDevices::restoreState(const flotilla::v1::VmSnapshot& snapshot) {
  if (static_cast<size_t>(snapshot.virtio_size()) != transports_.size()) {
    return absl::FailedPreconditionError(fmt::format(
        "the snapshot has {} virtio devices and this VM {}: give the VM the same disks, NICs, "
        "rng and balloon as when it was saved",
        snapshot.virtio_size(), transports_.size()));
  }
  for (size_t i = 0; i < transports_.size(); ++i) {
    RETURN_IF_ERROR(transports_[i]->restoreState(snapshot.virtio(static_cast<int>(i))));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> VirtioDevices::announceNics() {
  uint32_t asked = 0;
  for (virtio::VirtioNet* nic : nics_) {
    ASSIGN_OR_RETURN(network::MacAddress mac, network::MacAddress::fromBytes(nic->config().mac));
    if (nic->announce(network::buildAnnouncements(mac, std::nullopt))) ++asked;
  }
  return asked;
}

}  // namespace flotilla::vmm
