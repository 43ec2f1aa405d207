// Post-migration announcements: the frames a VMM sends on a VM's behalf right after the VM
// resumed on another host, so that switches (OVS's MAC learning table, physical switches)
// learn the VM's MAC on its new port at once instead of flooding or black-holing its traffic
// until the guest speaks. Same frames as QEMU's announce_self (net/announce.c): a RARP
// request from the VM's MAC, plus a gratuitous ARP when the VM's IPv4 address is known
// (RFC 5227 section 3 "ARP Announcement"). Frames are plain Ethernet, padded to the 60-byte
// minimum, without the virtio-net header (the caller prepends it).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "network/mac_address.h"

namespace flotilla::network {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeRarp = 0x8035;
// Ethernet's minimum frame without the FCS (the NIC adds it).
inline constexpr size_t kMinEthernetFrameBytes = 60;

struct Ipv4Address {
  std::array<uint8_t, 4> octets{};

  // Dotted quad ("10.0.0.5"); InvalidArgument quoting the text otherwise.
  static absl::StatusOr<Ipv4Address> parse(std::string_view text);
  std::string toString() const;
  auto operator<=>(const Ipv4Address&) const = default;
};

// A RARP request ("reverse request", opcode 3) broadcast from `mac`: sender and target
// hardware address `mac`, both protocol addresses 0.0.0.0. 60 bytes.
std::vector<uint8_t> buildRarpAnnouncement(const MacAddress& mac);

// A gratuitous ARP request broadcast from `mac`: sender hardware address `mac`, sender and
// target protocol address `ip`, target hardware address zero. 60 bytes.
std::vector<uint8_t> buildGratuitousArp(const MacAddress& mac, const Ipv4Address& ip);

// The frames of one announcement round: the RARP, then the gratuitous ARP when `ip` is known.
std::vector<std::vector<uint8_t>> buildAnnouncements(const MacAddress& mac,
                                                     std::optional<Ipv4Address> ip);

// When to send: QEMU's defaults (migration parameters announce-initial, -max, -rounds,
// -step): round k (0-based) is followed by a pause of min(initial + k * step, max).
struct AnnounceSchedule {
  int rounds = 5;
  absl::Duration initial = absl::Milliseconds(50);
  absl::Duration max = absl::Milliseconds(550);
  absl::Duration step = absl::Milliseconds(100);
};

// The pause after round `round` (0-based) of `schedule`.
absl::Duration announcePauseAfter(const AnnounceSchedule& schedule, int round);

// What parseAnnouncement() recognised.
struct Announcement {
  enum class Kind { kRarp, kGratuitousArp };
  Kind kind = Kind::kRarp;
  MacAddress mac;                 // the announced (sender) MAC
  std::optional<Ipv4Address> ip;  // the announced address (gratuitous ARP only)
};

// Recognises an Ethernet frame (no virtio-net header) as an announcement: a broadcast RARP
// reverse request whose Ethernet source, sender and target hardware addresses agree, or a
// broadcast ARP request (or reply) whose sender and target protocol addresses are equal and
// whose Ethernet source is the sender. Anything else, including truncated or 802.1Q-tagged
// frames: nullopt. Safe on any input.
std::optional<Announcement> parseAnnouncement(std::span<const uint8_t> frame);

// True when `frame` is a RARP or gratuitous ARP announcement of `mac`.
bool isAnnouncementFor(std::span<const uint8_t> frame, const MacAddress& mac);

}  // namespace flotilla::network
