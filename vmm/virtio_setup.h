// The virtio devices of a VM on KVM: opens their backends (disk images, iSCSI LUNs, taps),
// places each device's virtio-mmio window and interrupt, wires notifications (ioeventfd)
// and interrupts (irqfd) through KVM, and drives them through the VM's life (start, pause,
// resume, snapshot, shutdown).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/vm_state.pb.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/virtio/balloon.h"
#include "vmm/devices/virtio/blk.h"
#include "vmm/devices/virtio/net.h"
#include "vmm/devices/virtio/transport.h"
#include "vmm/kvm/kvm.h"
#include "vmm/vm_config.h"

namespace flotilla::vmm {

// Device windows from 0xd0000000, 4 KiB apart, in the 32-bit MMIO hole.
inline constexpr uint64_t kVirtioMmioBase = 0xd000'0000;
// ISA interrupts no other device uses; the MP table routes each to the same IOAPIC pin.
inline constexpr std::array<uint32_t, 10> kVirtioIrqs = {5, 6, 7, 9, 10, 11, 12, 13, 14, 15};

// KVM ioeventfds for the transports' QueueNotify registers.
class KvmNotifyWiring final : public virtio::NotifyWiring {
 public:
  explicit KvmNotifyWiring(const VmFd& vm) : vm_(vm) {}
  absl::Status attach(uint64_t address, uint32_t value, int eventfd) override;
  void detach(uint64_t address, uint32_t value, int eventfd) override;

 private:
  const VmFd& vm_;
};

class VirtioDevices {
 public:
  // Opens every device of `config` (disks, NICs, rng, balloon, in that order) and adds its
  // window to `mmio_bus`. Errors name the device and carry an exit code (exit_codes.h).
  static absl::StatusOr<std::unique_ptr<VirtioDevices>> create(const VmConfig& config,
                                                               const GuestMemory& memory,
                                                               const VmFd& vm, Bus& mmio_bus);
  ~VirtioDevices();

  // "virtio_mmio.device=4K@0xd0000000:5 ..." for the kernel command line.
  std::string kernelCmdline() const;

  void start();
  void pause();
  void resume();
  void shutdown();
  absl::Status saveState(flotilla::v1::VmSnapshot& snapshot);
  absl::Status restoreState(const flotilla::v1::VmSnapshot& snapshot);

  // Makes every NIC's MAC known to the network again (after a migration): a guest that
  // negotiated VIRTIO_NET_F_GUEST_ANNOUNCE is asked to announce itself, for the others the
  // device sends a RARP and a gratuitous ARP. Returns how many guests were asked.
  absl::StatusOr<uint32_t> announceNics();
  const std::vector<std::shared_ptr<virtio::VirtioMmio>>& transports() const { return transports_; }
  // The devices by kind, in configuration order (owned by their transports).
  const std::vector<virtio::VirtioBlock*>& disks() const { return disks_; }
  const std::vector<virtio::VirtioNet*>& nics() const { return nics_; }
  virtio::VirtioBalloon* balloon() const { return balloon_; }

 private:
  explicit VirtioDevices(const VmFd& vm) : wiring_(vm) {}
  absl::Status add(std::string id, std::unique_ptr<virtio::VirtioDevice> device,
                   const GuestMemory& memory, const VmFd& vm, Bus& mmio_bus);

  KvmNotifyWiring wiring_;
  std::vector<std::shared_ptr<virtio::VirtioMmio>> transports_;
  std::vector<virtio::VirtioBlock*> disks_;
  std::vector<virtio::VirtioNet*> nics_;
  virtio::VirtioBalloon* balloon_ = nullptr;
};

}  // namespace flotilla::vmm
