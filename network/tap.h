// Tap devices (/dev/net/tun, IFF_TAP) as the VMM's virtio-net backend: open or attach by
// name, adopt a descriptor passed by the agent, the virtio-net header size, offloads and
// non-blocking frame I/O. Also the host-side administration the agent does before starting a
// VMM: persistent taps with an owner, link up/down and MTU (ioctls, no shelling out).
//
// Kernel interface: Documentation/networking/tuntap.rst and drivers/net/tun.c; the header
// layout is virtio 1.x section 5.1.6 ("struct virtio_net_hdr").
//
// Namespaces: every function here acts on the network namespace of the calling thread (the
// namespace a tap is created in is the one of the thread that opens it).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace flotilla::network {

// TUNSETOFFLOAD flags (linux/if_tun.h; USO4/USO6 are Linux 6.2+ and missing from older
// headers). Each says which offloaded packets the tap may hand to its reader, i.e. to the
// VMM and on to the guest: the host→guest (receive) direction only. Frames the VMM writes
// may carry any offload the header describes, whatever is set here.
inline constexpr uint32_t kTunOffloadCsum = 0x01;    // partial checksums (NEEDS_CSUM)
inline constexpr uint32_t kTunOffloadTso4 = 0x02;    // TCP segmentation, IPv4
inline constexpr uint32_t kTunOffloadTso6 = 0x04;    // TCP segmentation, IPv6
inline constexpr uint32_t kTunOffloadTsoEcn = 0x08;  // TSO with the ECN (CWR) bit
inline constexpr uint32_t kTunOffloadUfo = 0x10;     // UDP fragmentation (accepted, unused)
inline constexpr uint32_t kTunOffloadUso4 = 0x20;    // UDP segmentation, IPv4 (with USO6)
inline constexpr uint32_t kTunOffloadUso6 = 0x40;    // UDP segmentation, IPv6 (with USO4)
inline constexpr uint32_t kTunOffloadAll = 0x7f;

// The TUNSETOFFLOAD mask for the virtio-net features the guest accepted (the negotiated
// feature bits, VIRTIO_NET_F_* as bit numbers, or the mask the guest set later through
// VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET). Maps GUEST_CSUM → CSUM, GUEST_TSO4/6 → TSO4/6,
// GUEST_ECN → TSO_ECN, GUEST_UFO → UFO, GUEST_USO4+GUEST_USO6 → USO4|USO6, and drops what
// the kernel would refuse with EINVAL: everything without GUEST_CSUM (a segmented packet
// always has a partial checksum), TSO_ECN without TSO4 or TSO6, and USO unless both
// families are accepted. Pure; the same rules as QEMU's virtio_net_apply_guest_offloads.
uint32_t tunOffloadsForGuestFeatures(uint64_t guest_features);

// "csum,tso4,tso6" (or "none"), for logs and messages.
std::string describeTunOffloads(uint32_t offloads);

// The virtio 1.x header (struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size,
// csum_start, csum_offset, num_buffers) that precedes every frame. Legacy devices without
// VIRTIO_NET_F_MRG_RXBUF use the first 10 bytes only.
inline constexpr uint32_t kVirtioNetHeaderBytes = 12;

struct TapOptions {
  // IFF_VNET_HDR: every frame read or written is preceded by a virtio-net header.
  bool vnet_header = true;
  // TUNSETVNETHDRSZ, when vnet_header. At least 10 (struct virtio_net_hdr). The kernel uses
  // only the first 10 bytes; beyond them it ignores what is written and does not fill in
  // what is read (num_buffers: the VMM's to set).
  uint32_t vnet_header_bytes = kVirtioNetHeaderBytes;
  // O_NONBLOCK: read() returns 0 instead of waiting when no frame is queued.
  bool non_blocking = true;
};

// Sole owner of a tap queue descriptor. Offloads start off (TUNSETOFFLOAD 0): the kernel
// completes checksums and segments packets before the VMM reads them, until setOffloads()
// says the guest can take them.
class Tap {
 public:
  // Attaches to the tap `name` in the calling thread's namespace, creating it (non-persistent:
  // it goes away with the last descriptor) when it does not exist. An empty name lets the
  // kernel pick one ("tap0", ...); name() returns it. Errors name the tap and say what to do:
  // /dev/net/tun missing (load the tun module), a name that is too long or invalid, no
  // permission (CAP_NET_ADMIN or the tap's owner), a device of that name that is not a tap,
  // a tap already attached to another process.
  static absl::StatusOr<Tap> open(std::string_view name, const TapOptions& options = {});

  // Adopts a descriptor another process opened and passed on (the agent passes the VMM its
  // tap). Checks with TUNGETIFF that it is a tap attached to a device, without packet-info
  // headers, and that IFF_VNET_HDR is set exactly when options.vnet_header asks for it; then
  // applies the header size, offloads off and non-blocking mode. The descriptor is closed
  // on failure.
  static absl::StatusOr<Tap> fromFd(UniqueFd fd, const TapOptions& options = {});

  Tap(Tap&&) noexcept = default;
  Tap& operator=(Tap&&) noexcept = default;
  Tap(const Tap&) = delete;
  Tap& operator=(const Tap&) = delete;
  ~Tap() = default;

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  bool hasVnetHeader() const { return vnet_header_; }
  // 0 without IFF_VNET_HDR.
  uint32_t vnetHeaderBytes() const { return vnet_header_ ? vnet_header_bytes_ : 0; }
  // The last mask applied with setOffloads().
  uint32_t offloads() const { return offloads_; }

  // TUNSETVNETHDRSZ (10 for legacy headers without num_buffers, 12 for virtio 1.x).
  absl::Status setVnetHeaderBytes(uint32_t bytes);

  // TUNSETOFFLOAD with a mask of kTunOffload* flags (usually tunOffloadsForGuestFeatures()).
  // Needs a vnet header when non-zero. The kernel rejects inconsistent masks (TSO without
  // CSUM) and flags it does not know (USO before Linux 6.2) with InvalidArgument.
  absl::Status setOffloads(uint32_t offloads);
  // Offloads off: only complete, checksummed frames of at most the MTU reach the reader.
  absl::Status disableOffloads() { return setOffloads(0); }
  // Which kTunOffload* flags this kernel accepts (tried one group at a time), for deciding
  // which VIRTIO_NET_F_GUEST_* features to offer. Leaves offloads off.
  absl::StatusOr<uint32_t> probeOffloads();

  absl::Status setNonBlocking(bool non_blocking);

  // Reads one frame (header included) into `buffer`; a frame longer than the buffer is
  // truncated. Returns its length, or 0 when none is queued (EAGAIN on a non-blocking tap;
  // also while the interface is down). Unavailable when the device is gone or detached.
  absl::StatusOr<size_t> read(std::span<uint8_t> buffer);
  absl::StatusOr<size_t> readv(std::span<const iovec> buffers);

  // Writes one frame (header included). The kernel refuses malformed headers (for instance a
  // GSO type it does not know, or hdr_len beyond the frame) and frames shorter than the
  // header with InvalidArgument: such frames come from the guest, so callers count or log
  // them rate-limited and go on. Unavailable while the interface is down (the frame is
  // dropped; also a normal condition, e.g. before the agent set the link up). A tap never
  // blocks a writer: when its queue towards the host stack is full the kernel drops frames.
  absl::Status write(std::span<const uint8_t> frame);
  absl::Status writev(std::span<const iovec> buffers);

  // Gives up the descriptor (e.g. to pass it to a child process).
  UniqueFd release() { return std::move(fd_); }

 private:
  Tap(UniqueFd fd, std::string name, bool vnet_header)
      : fd_(std::move(fd)), name_(std::move(name)), vnet_header_(vnet_header) {}
  absl::Status configure(const TapOptions& options);

  UniqueFd fd_;
  std::string name_;
  bool vnet_header_ = false;
  uint32_t vnet_header_bytes_ = 0;
  uint32_t offloads_ = 0;
};

// Host-side administration, in the calling thread's network namespace.

// Checks that `name` can be a network interface name: 1 to 15 characters (IFNAMSIZ - 1), no
// '/', ':' or whitespace, not "." or "..".
absl::Status validateInterfaceName(std::string_view name);

// Creates a persistent tap (TUNSETPERSIST) that outlives this process, owned by `owner` when
// given so that an unprivileged VMM running as that user can attach to it (TUNSETOWNER).
// AlreadyExists when a device of that name exists.
absl::Status createPersistentTap(std::string_view name, std::optional<uid_t> owner = std::nullopt);

// Deletes a persistent tap. NotFound when there is no such device; FailedPrecondition when
// it is not a tap or a process (a VMM) still has it open.
absl::Status deleteTap(std::string_view name);

// True when a network interface of that name exists.
bool linkExists(std::string_view name);

// SIOCSIFFLAGS: sets or clears IFF_UP.
absl::Status setLinkUp(std::string_view name);
absl::Status setLinkDown(std::string_view name);
// SIOCGIFFLAGS: whether IFF_UP is set.
absl::StatusOr<bool> isLinkUp(std::string_view name);

// SIOCSIFMTU / SIOCGIFMTU.
absl::Status setMtu(std::string_view name, uint32_t mtu);
absl::StatusOr<uint32_t> linkMtu(std::string_view name);

}  // namespace flotilla::network
