// Tap devices and host-side link administration (see tap.h).
#include "network/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::network {
namespace {

// Guest receive feature bits of virtio-net (virtio 1.3 section 5.1.3). <linux/virtio_net.h>
// cannot be included from C++ (it has a field named `class`) and lacks the USO bits.
constexpr int kVirtioNetFGuestCsum = 1;
constexpr int kVirtioNetFGuestTso4 = 7;
constexpr int kVirtioNetFGuestTso6 = 8;
constexpr int kVirtioNetFGuestEcn = 9;
constexpr int kVirtioNetFGuestUfo = 10;
constexpr int kVirtioNetFGuestUso4 = 54;
constexpr int kVirtioNetFGuestUso6 = 55;

static_assert(kTunOffloadCsum == TUN_F_CSUM && kTunOffloadTso4 == TUN_F_TSO4 &&
              kTunOffloadTso6 == TUN_F_TSO6 && kTunOffloadTsoEcn == TUN_F_TSO_ECN &&
              kTunOffloadUfo == TUN_F_UFO);

// The smallest header TUNSETVNETHDRSZ accepts: the legacy struct virtio_net_hdr, without
// num_buffers.
constexpr uint32_t kMinVnetHeaderBytes = 10;

bool hasFeature(uint64_t features, int bit) {
  return (features >> bit) & 1;
}

// An ifreq naming `name` (already validated: it fits with its terminating NUL).
ifreq interfaceRequest(std::string_view name) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), std::min(name.size(), size_t{IFNAMSIZ - 1}));
  return ifr;
}

absl::StatusOr<UniqueFd> openTunDevice(std::string_view what) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (fd.valid()) return fd;
  const int error = errno;
  switch (error) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return absl::FailedPreconditionError(
          fmt::format("{}: /dev/net/tun missing (load the tun module: modprobe tun)", what));
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(fmt::format(
          "{}: no permission to open /dev/net/tun (run as root, or let the agent pass an open "
          "tap descriptor)",
          what));
    default:
      return errnoStatus(error, fmt::format("{}: opening /dev/net/tun", what));
  }
}

// A socket for interface ioctls, in the calling thread's network namespace.
absl::StatusOr<UniqueFd> controlSocket() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return errnoStatus(errno, "creating a socket for interface ioctls");
  return fd;
}

absl::Status interfaceIoctlError(int error, std::string_view name, std::string_view what) {
  switch (error) {
    case ENODEV:
    case ENXIO:
      return absl::NotFoundError(
          fmt::format("{} {}: no network interface of that name in this namespace", what, name));
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(
          fmt::format("{} {}: permission denied (needs CAP_NET_ADMIN)", what, name));
    default:
      return errnoStatus(error, fmt::format("{} {}", what, name));
  }
}

absl::StatusOr<short> interfaceFlags(int socket, std::string_view name) {
  ifreq ifr = interfaceRequest(name);
  if (::ioctl(socket, SIOCGIFFLAGS, &ifr) != 0) {
    return interfaceIoctlError(errno, name, "reading the flags of");
  }
  return ifr.ifr_flags;
}

absl::Status changeLinkUp(std::string_view name, bool up) {
  RETURN_IF_ERROR(validateInterfaceName(name));
  ASSIGN_OR_RETURN(UniqueFd socket, controlSocket());
  ASSIGN_OR_RETURN(short flags, interfaceFlags(socket.get(), name));
  ifreq ifr = interfaceRequest(name);
  // ifr_flags is a short holding the low 16 bits of the flags; IFF_UP is bit 0.
  ifr.ifr_flags = static_cast<short>(up ? (flags | IFF_UP) : (flags & ~IFF_UP));
  if (::ioctl(socket.get(), SIOCSIFFLAGS, &ifr) != 0) {
    return interfaceIoctlError(errno, name, up ? "setting up" : "setting down");
  }
  return absl::OkStatus();
}

// TUNSETIFF flags (ifr_flags is a short; IFF_TUN_EXCL is its sign bit).
short tunFlags(unsigned int flags) {
  return static_cast<short>(static_cast<unsigned short>(flags));
}

}  // namespace

uint32_t tunOffloadsForGuestFeatures(uint64_t guest_features) {
  // Without GUEST_CSUM the guest must get complete checksums, and every segmentation offload
  // hands it packets with partial ones: nothing else is allowed (the kernel refuses TSO/USO
  // without CSUM; virtio 5.1.3.1 makes GUEST_TSO*/UFO/USO depend on GUEST_CSUM).
  if (!hasFeature(guest_features, kVirtioNetFGuestCsum)) return 0;
  uint32_t offloads = kTunOffloadCsum;
  if (hasFeature(guest_features, kVirtioNetFGuestTso4)) offloads |= kTunOffloadTso4;
  if (hasFeature(guest_features, kVirtioNetFGuestTso6)) offloads |= kTunOffloadTso6;
  // ECN qualifies TSO; alone the kernel refuses it.
  if (hasFeature(guest_features, kVirtioNetFGuestEcn) &&
      (offloads & (kTunOffloadTso4 | kTunOffloadTso6)) != 0) {
    offloads |= kTunOffloadTsoEcn;
  }
  // Linux accepts UFO for compatibility and no longer produces UFO packets.
  if (hasFeature(guest_features, kVirtioNetFGuestUfo)) offloads |= kTunOffloadUfo;
  // The kernel enables USO only for both families at once (tun.c set_offload).
  if (hasFeature(guest_features, kVirtioNetFGuestUso4) &&
      hasFeature(guest_features, kVirtioNetFGuestUso6)) {
    offloads |= kTunOffloadUso4 | kTunOffloadUso6;
  }
  return offloads;
}

std::string describeTunOffloads(uint32_t offloads) {
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {kTunOffloadCsum, "csum"},      {kTunOffloadTso4, "tso4"}, {kTunOffloadTso6, "tso6"},
      {kTunOffloadTsoEcn, "tso_ecn"}, {kTunOffloadUfo, "ufo"},   {kTunOffloadUso4, "uso4"},
      {kTunOffloadUso6, "uso6"}};
  std::string text;
  for (const auto& [bit, name] : kNames) {
    if ((offloads & bit) == 0) continue;
    if (!text.empty()) text += ',';
    text += name;
    offloads &= ~bit;
  }
  if (offloads != 0) text += fmt::format("{}{:#x}", text.empty() ? "" : ",", offloads);
  return text.empty() ? "none" : text;
}

absl::Status validateInterfaceName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("an interface name cannot be empty");
  if (name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(
        fmt::format("interface name \"{}\" is {} characters long; Linux allows at most {}", name,
                    name.size(), IFNAMSIZ - 1));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(fmt::format("\"{}\" is not a valid interface name", name));
  }
  for (char c : name) {
    if (c == '/' || c == ':' || c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
        c == '\f' || c == '\v') {
      return absl::InvalidArgumentError(fmt::format(
          "interface name \"{}\" contains '/', ':', a NUL or whitespace, which Linux refuses",
          name));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Tap> Tap::open(std::string_view name, const TapOptions& options) {
  const std::string what = fmt::format("cannot open tap {}", name.empty() ? "(any name)" : name);
  if (!name.empty()) RETURN_IF_ERROR(annotate(validateInterfaceName(name), what));
  ASSIGN_OR_RETURN(UniqueFd fd, openTunDevice(what));

  ifreq ifr = interfaceRequest(name);
  ifr.ifr_flags = tunFlags(IFF_TAP | IFF_NO_PI | (options.vnet_header ? IFF_VNET_HDR : 0u));
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    const int error = errno;
    switch (error) {
      case EPERM:
      case EACCES:
        return absl::PermissionDeniedError(fmt::format(
            "{}: permission denied (needs CAP_NET_ADMIN, or to run as the user or group that "
            "owns the persistent tap)",
            what));
      case EBUSY:
        return absl::FailedPreconditionError(fmt::format(
            "{}: it is already attached to another process (a single-queue tap takes one "
            "reader; is another VMM using it?)",
            what));
      case EINVAL:
        if (!name.empty() && linkExists(name)) {
          return absl::FailedPreconditionError(fmt::format(
              "{}: a network interface of that name exists and is not a (single-queue) tap "
              "device",
              what));
        }
        return errnoStatus(error, fmt::format("{}: TUNSETIFF", what));
      default:
        return errnoStatus(error, fmt::format("{}: TUNSETIFF", what));
    }
  }
  Tap tap(std::move(fd), std::string(ifr.ifr_name), options.vnet_header);
  RETURN_IF_ERROR(tap.configure(options));
  return tap;
}

absl::StatusOr<Tap> Tap::fromFd(UniqueFd fd, const TapOptions& options) {
  if (!fd.valid()) {
    return absl::InvalidArgumentError("cannot use tap descriptor: no descriptor was given");
  }
  const int number = fd.get();
  ifreq ifr{};
  if (::ioctl(number, TUNGETIFF, &ifr) != 0) {
    const int error = errno;
    if (error == EBADF) {
      return absl::InvalidArgumentError(fmt::format("fd {} is not an open descriptor", number));
    }
    if (error == EBADFD) {
      return absl::InvalidArgumentError(fmt::format(
          "fd {} is /dev/net/tun but not attached to any device (TUNSETIFF was not called)",
          number));
    }
    return absl::InvalidArgumentError(
        fmt::format("fd {} is not a tap device (TUNGETIFF: {})", number, std::strerror(error)));
  }
  const std::string name(ifr.ifr_name);
  const auto flags = static_cast<unsigned short>(ifr.ifr_flags);
  if ((flags & IFF_TAP) == 0) {
    return absl::InvalidArgumentError(fmt::format(
        "fd {} is not a tap device: {} is a tun (layer 3) device; Flotilla needs IFF_TAP", number,
        name));
  }
  if ((flags & IFF_NO_PI) == 0) {
    return absl::InvalidArgumentError(fmt::format(
        "tap {} (fd {}) was opened without IFF_NO_PI: its frames carry a packet-info prefix", name,
        number));
  }
  const bool has_vnet_header = (flags & IFF_VNET_HDR) != 0;
  if (has_vnet_header != options.vnet_header) {
    return absl::InvalidArgumentError(fmt::format(
        "tap {} (fd {}) was opened {} IFF_VNET_HDR, but this device expects it {}", name, number,
        has_vnet_header ? "with" : "without", options.vnet_header ? "set" : "clear"));
  }
  Tap tap(std::move(fd), name, has_vnet_header);
  RETURN_IF_ERROR(tap.configure(options));
  return tap;
}

absl::Status Tap::configure(const TapOptions& options) {
  if (vnet_header_) RETURN_IF_ERROR(setVnetHeaderBytes(options.vnet_header_bytes));
  RETURN_IF_ERROR(setOffloads(0));
  return setNonBlocking(options.non_blocking);
}

absl::Status Tap::setVnetHeaderBytes(uint32_t bytes) {
  if (!vnet_header_) {
    return absl::FailedPreconditionError(fmt::format(
        "tap {}: cannot set a virtio-net header size on a tap without IFF_VNET_HDR", name_));
  }
  if (bytes < kMinVnetHeaderBytes) {
    return absl::InvalidArgumentError(
        fmt::format("tap {}: a virtio-net header is at least {} bytes, not {}", name_,
                    kMinVnetHeaderBytes, bytes));
  }
  int size = static_cast<int>(bytes);
  if (::ioctl(fd_.get(), TUNSETVNETHDRSZ, &size) != 0) {
    return errnoStatus(errno, fmt::format("tap {}: TUNSETVNETHDRSZ {}", name_, bytes));
  }
  vnet_header_bytes_ = bytes;
  return absl::OkStatus();
}

absl::Status Tap::setOffloads(uint32_t offloads) {
  if (offloads != 0 && !vnet_header_) {
    return absl::FailedPreconditionError(fmt::format(
        "tap {}: offloads ({}) need a virtio-net header to describe them, and this tap has none",
        name_, describeTunOffloads(offloads)));
  }
  // TUNSETOFFLOAD takes the mask as the ioctl argument itself, not through a pointer.
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(offloads)) != 0) {
    const int error = errno;
    if (error == EINVAL) {
      return absl::InvalidArgumentError(fmt::format(
          "tap {}: the kernel refuses offloads {} (TSO needs CSUM, ECN needs TSO, USO needs "
          "both families and Linux 6.2)",
          name_, describeTunOffloads(offloads)));
    }
    return errnoStatus(
        error, fmt::format("tap {}: TUNSETOFFLOAD {}", name_, describeTunOffloads(offloads)));
  }
  offloads_ = offloads;
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Tap::probeOffloads() {
  static constexpr uint32_t kGroups[] = {
      kTunOffloadCsum,
      kTunOffloadCsum | kTunOffloadTso4,
      kTunOffloadCsum | kTunOffloadTso6,
      kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTsoEcn,
      kTunOffloadCsum | kTunOffloadUfo,
      kTunOffloadCsum | kTunOffloadUso4 | kTunOffloadUso6,
  };
  uint32_t supported = 0;
  for (uint32_t group : kGroups) {
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(group)) == 0) {
      supported |= group;
    } else if (errno != EINVAL) {
      return errnoStatus(
          errno, fmt::format("tap {}: TUNSETOFFLOAD {}", name_, describeTunOffloads(group)));
    }
  }
  RETURN_IF_ERROR(setOffloads(0));
  return supported;
}

absl::Status Tap::setNonBlocking(bool non_blocking) {
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags < 0) return errnoStatus(errno, fmt::format("tap {}: F_GETFL", name_));
  flags = non_blocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd_.get(), F_SETFL, flags) != 0) {
    return errnoStatus(errno, fmt::format("tap {}: F_SETFL", name_));
  }
  return absl::OkStatus();
}

namespace {

absl::Status readError(int error, const std::string& name) {
  if (error == EBADFD) {
    return absl::UnavailableError(
        fmt::format("reading tap {}: the device is gone or detached", name));
  }
  return errnoStatus(error, fmt::format("reading tap {}", name));
}

absl::Status writeResult(ssize_t written, size_t expected, int error, const std::string& name) {
  if (written >= 0) {
    if (static_cast<size_t>(written) == expected) return absl::OkStatus();
    // A tap takes a frame whole or not at all; cannot happen.
    return absl::InternalError(
        fmt::format("writing tap {}: wrote {} of {} bytes", name, written, expected));
  }
  if (error == EINVAL) {
    return absl::InvalidArgumentError(fmt::format(
        "writing tap {}: the kernel refused a frame of {} bytes (shorter than the virtio-net "
        "header, or a malformed header)",
        name, expected));
  }
  if (error == EIO) {
    // tun_get_user refuses frames while the interface is down.
    return absl::UnavailableError(
        fmt::format("writing tap {}: the interface is down (set it up), frame of {} bytes dropped",
                    name, expected));
  }
  if (error == EBADFD) {
    return absl::UnavailableError(
        fmt::format("writing tap {}: the device is gone or detached", name));
  }
  return errnoStatus(error, fmt::format("writing a frame of {} bytes to tap {}", expected, name));
}

size_t totalLength(std::span<const iovec> buffers) {
  size_t total = 0;
  for (const iovec& buffer : buffers) total += buffer.iov_len;
  return total;
}

}  // namespace

absl::StatusOr<size_t> Tap::read(std::span<uint8_t> buffer) {
  while (true) {
    ssize_t got = ::read(fd_.get(), buffer.data(), buffer.size());
    if (got >= 0) return static_cast<size_t>(got);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return readError(errno, name_);
  }
}

absl::StatusOr<size_t> Tap::readv(std::span<const iovec> buffers) {
  while (true) {
    ssize_t got = ::readv(fd_.get(), buffers.data(), static_cast<int>(buffers.size()));
    if (got >= 0) return static_cast<size_t>(got);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return readError(errno, name_);
  }
}

absl::Status Tap::write(std::span<const uint8_t> frame) {
  while (true) {
    ssize_t written = ::write(fd_.get(), frame.data(), frame.size());
    if (written < 0 && errno == EINTR) continue;
    return writeResult(written, frame.size(), errno, name_);
  }
}

absl::Status Tap::writev(std::span<const iovec> buffers) {
  while (true) {
    ssize_t written = ::writev(fd_.get(), buffers.data(), static_cast<int>(buffers.size()));
    if (written < 0 && errno == EINTR) continue;
    return writeResult(written, totalLength(buffers), errno, name_);
  }
}

absl::Status createPersistentTap(std::string_view name, std::optional<uid_t> owner) {
  const std::string what = fmt::format("cannot create persistent tap {}", name);
  RETURN_IF_ERROR(annotate(validateInterfaceName(name), what));
  if (linkExists(name)) {
    return absl::AlreadyExistsError(
        fmt::format("{}: a network interface of that name already exists", what));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, openTunDevice(what));
  ifreq ifr = interfaceRequest(name);
  // IFF_TUN_EXCL: fail instead of attaching when the device appeared in the meantime.
  ifr.ifr_flags = tunFlags(IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL);
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    const int error = errno;
    if (error == EBUSY) {
      return absl::AlreadyExistsError(
          fmt::format("{}: a network interface of that name already exists", what));
    }
    if (error == EPERM) {
      return absl::PermissionDeniedError(
          fmt::format("{}: permission denied (needs CAP_NET_ADMIN)", what));
    }
    return errnoStatus(error, fmt::format("{}: TUNSETIFF", what));
  }
  // Until TUNSETPERSIST succeeds the tap vanishes with `fd`, so failures leave nothing behind.
  if (owner.has_value() &&
      ::ioctl(fd.get(), TUNSETOWNER, static_cast<unsigned long>(*owner)) != 0) {
    return errnoStatus(errno, fmt::format("{}: TUNSETOWNER {}", what, *owner));
  }
  if (::ioctl(fd.get(), TUNSETPERSIST, 1UL) != 0) {
    return errnoStatus(errno, fmt::format("{}: TUNSETPERSIST", what));
  }
  return absl::OkStatus();
}

absl::Status deleteTap(std::string_view name) {
  const std::string what = fmt::format("cannot delete tap {}", name);
  RETURN_IF_ERROR(annotate(validateInterfaceName(name), what));
  if (!linkExists(name)) {
    return absl::NotFoundError(
        fmt::format("{}: no network interface of that name in this namespace", what));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, openTunDevice(what));
  ifreq ifr = interfaceRequest(name);
  ifr.ifr_flags = tunFlags(IFF_TAP | IFF_NO_PI);
  int result = ::ioctl(fd.get(), TUNSETIFF, &ifr);
  if (result != 0 && errno == EINVAL) {
    // A multi-queue tap only takes multi-queue attachments; its device goes away once the
    // last queue is closed.
    ifr = interfaceRequest(name);
    ifr.ifr_flags = tunFlags(IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
    result = ::ioctl(fd.get(), TUNSETIFF, &ifr);
  }
  if (result != 0) {
    const int error = errno;
    switch (error) {
      case EBUSY:
        return absl::FailedPreconditionError(fmt::format(
            "{}: a process still has it open (a running VMM?); stop that process first", what));
      case EINVAL:
        return absl::FailedPreconditionError(
            fmt::format("{}: the network interface of that name is not a tap device", what));
      case EPERM:
        return absl::PermissionDeniedError(
            fmt::format("{}: permission denied (needs CAP_NET_ADMIN or the tap's owner)", what));
      default:
        return errnoStatus(error, fmt::format("{}: TUNSETIFF", what));
    }
  }
  // Clearing IFF_PERSIST makes our descriptor the last reference: closing it deletes the tap.
  if (::ioctl(fd.get(), TUNSETPERSIST, 0UL) != 0) {
    return errnoStatus(errno, fmt::format("{}: TUNSETPERSIST 0", what));
  }
  return absl::OkStatus();
}

bool linkExists(std::string_view name) {
  if (!validateInterfaceName(name).ok()) return false;
  return ::if_nametoindex(std::string(name).c_str()) != 0;
}

absl::Status setLinkUp(std::string_view name) {
  return changeLinkUp(name, true);
}

absl::Status setLinkDown(std::string_view name) {
  return changeLinkUp(name, false);
}

absl::StatusOr<bool> isLinkUp(std::string_view name) {
  RETURN_IF_ERROR(validateInterfaceName(name));
  ASSIGN_OR_RETURN(UniqueFd socket, controlSocket());
  ASSIGN_OR_RETURN(short flags, interfaceFlags(socket.get(), name));
  return (flags & IFF_UP) != 0;
}

absl::Status setMtu(std::string_view name, uint32_t mtu) {
  RETURN_IF_ERROR(validateInterfaceName(name));
  ASSIGN_OR_RETURN(UniqueFd socket, controlSocket());
  ifreq ifr = interfaceRequest(name);
  ifr.ifr_mtu = static_cast<int>(mtu);
  if (::ioctl(socket.get(), SIOCSIFMTU, &ifr) != 0) {
    if (errno == EINVAL) {
      return absl::InvalidArgumentError(
          fmt::format("setting the MTU of {} to {}: out of range for that device", name, mtu));
    }
    return interfaceIoctlError(errno, name, fmt::format("setting the MTU ({}) of", mtu));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> linkMtu(std::string_view name) {
  RETURN_IF_ERROR(validateInterfaceName(name));
  ASSIGN_OR_RETURN(UniqueFd socket, controlSocket());
  ifreq ifr = interfaceRequest(name);
  if (::ioctl(socket.get(), SIOCGIFMTU, &ifr) != 0) {
    return interfaceIoctlError(errno, name, "reading the MTU of");
  }
  return static_cast<uint32_t>(ifr.ifr_mtu);
}

}  // namespace flotilla::network
