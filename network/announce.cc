// RARP and gratuitous ARP announcements (see announce.h). Layout of both (RFC 826, RFC 903):
//   0  destination MAC (ff:ff:ff:ff:ff:ff)   6  source MAC   12  ethertype
//   14 htype (1, Ethernet)   16 ptype (0x0800)   18 hlen (6)   19 plen (4)   20 opcode
//   22 sender MAC   28 sender IPv4   32 target MAC   38 target IPv4   42 padding to 60
#include "network/announce.h"

#include <arpa/inet.h>

#include <algorithm>

#include "fmt/format.h"

namespace flotilla::network {
namespace {

constexpr uint16_t kArpHardwareEthernet = 1;
constexpr uint16_t kArpOpRequest = 1;
constexpr uint16_t kArpOpReply = 2;
constexpr uint16_t kArpOpReverseRequest = 3;

constexpr size_t kOffsetDestination = 0;
constexpr size_t kOffsetSource = 6;
constexpr size_t kOffsetEtherType = 12;
constexpr size_t kOffsetHardwareType = 14;
constexpr size_t kOffsetProtocolType = 16;
constexpr size_t kOffsetHardwareLength = 18;
constexpr size_t kOffsetProtocolLength = 19;
constexpr size_t kOffsetOpcode = 20;
constexpr size_t kOffsetSenderMac = 22;
constexpr size_t kOffsetSenderIp = 28;
constexpr size_t kOffsetTargetMac = 32;
constexpr size_t kOffsetTargetIp = 38;
constexpr size_t kArpFrameEnd = 42;

void put16(std::vector<uint8_t>& frame, size_t at, uint16_t value) {
  frame[at] = static_cast<uint8_t>(value >> 8);
  frame[at + 1] = static_cast<uint8_t>(value & 0xff);
}

uint16_t get16(std::span<const uint8_t> frame, size_t at) {
  return static_cast<uint16_t>((frame[at] << 8) | frame[at + 1]);
}

void putMac(std::vector<uint8_t>& frame, size_t at, const MacAddress& mac) {
  std::copy(mac.bytes().begin(), mac.bytes().end(), frame.begin() + static_cast<ptrdiff_t>(at));
}

void putIp(std::vector<uint8_t>& frame, size_t at, const Ipv4Address& ip) {
  std::copy(ip.octets.begin(), ip.octets.end(), frame.begin() + static_cast<ptrdiff_t>(at));
}

MacAddress getMac(std::span<const uint8_t> frame, size_t at) {
  MacAddress::Bytes bytes{};
  std::copy_n(frame.begin() + static_cast<ptrdiff_t>(at), bytes.size(), bytes.begin());
  return MacAddress(bytes);
}

Ipv4Address getIp(std::span<const uint8_t> frame, size_t at) {
  Ipv4Address ip;
  std::copy_n(frame.begin() + static_cast<ptrdiff_t>(at), ip.octets.size(), ip.octets.begin());
  return ip;
}

// A broadcast ARP-format frame with every address field zero; padding stays zero.
std::vector<uint8_t> arpFrame(const MacAddress& source, uint16_t ether_type, uint16_t opcode) {
  std::vector<uint8_t> frame(kMinEthernetFrameBytes, 0);
  putMac(frame, kOffsetDestination, MacAddress::broadcast());
  putMac(frame, kOffsetSource, source);
  put16(frame, kOffsetEtherType, ether_type);
  put16(frame, kOffsetHardwareType, kArpHardwareEthernet);
  put16(frame, kOffsetProtocolType, kEtherTypeIpv4);
  frame[kOffsetHardwareLength] = MacAddress::kSize;
  frame[kOffsetProtocolLength] = 4;
  put16(frame, kOffsetOpcode, opcode);
  return frame;
}

}  // namespace

absl::StatusOr<Ipv4Address> Ipv4Address::parse(std::string_view text) {
  in_addr address{};
  std::string copy(text);
  if (text.size() > 15 || ::inet_pton(AF_INET, copy.c_str(), &address) != 1) {
    return absl::InvalidArgumentError(fmt::format(
        "invalid IPv4 address \"{}\": expected four decimal numbers 0-255 separated by '.', "
        "e.g. 10.0.0.5",
        text));
  }
  Ipv4Address ip;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&address.s_addr);  // network order
  std::copy_n(bytes, ip.octets.size(), ip.octets.begin());
  return ip;
}

std::string Ipv4Address::toString() const {
  return fmt::format("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3]);
}

std::vector<uint8_t> buildRarpAnnouncement(const MacAddress& mac) {
  std::vector<uint8_t> frame = arpFrame(mac, kEtherTypeRarp, kArpOpReverseRequest);
  putMac(frame, kOffsetSenderMac, mac);
  putMac(frame, kOffsetTargetMac, mac);
  return frame;
}

std::vector<uint8_t> buildGratuitousArp(const MacAddress& mac, const Ipv4Address& ip) {
  std::vector<uint8_t> frame = arpFrame(mac, kEtherTypeArp, kArpOpRequest);
  putMac(frame, kOffsetSenderMac, mac);
  putIp(frame, kOffsetSenderIp, ip);
  putIp(frame, kOffsetTargetIp, ip);  // RFC 5227: target hardware address stays zero
  return frame;
}

std::vector<std::vector<uint8_t>> buildAnnouncements(const MacAddress& mac,
                                                     std::optional<Ipv4Address> ip) {
  std::vector<std::vector<uint8_t>> frames;
  frames.push_back(buildRarpAnnouncement(mac));
  if (ip.has_value()) frames.push_back(buildGratuitousArp(mac, *ip));
  return frames;
}

absl::Duration announcePauseAfter(const AnnounceSchedule& schedule, int round) {
  return std::min(schedule.initial + round * schedule.step, schedule.max);
}

std::optional<Announcement> parseAnnouncement(std::span<const uint8_t> frame) {
  if (frame.size() < kArpFrameEnd) return std::nullopt;
  if (getMac(frame, kOffsetDestination) != MacAddress::broadcast()) return std::nullopt;
  if (get16(frame, kOffsetHardwareType) != kArpHardwareEthernet ||
      get16(frame, kOffsetProtocolType) != kEtherTypeIpv4 ||
      frame[kOffsetHardwareLength] != MacAddress::kSize || frame[kOffsetProtocolLength] != 4) {
    return std::nullopt;
  }
  const MacAddress source = getMac(frame, kOffsetSource);
  const MacAddress sender = getMac(frame, kOffsetSenderMac);
  if (sender != source || source.isMulticast()) return std::nullopt;
  const uint16_t ether_type = get16(frame, kOffsetEtherType);
  const uint16_t opcode = get16(frame, kOffsetOpcode);

  Announcement announcement;
  announcement.mac = source;
  if (ether_type == kEtherTypeRarp && opcode == kArpOpReverseRequest) {
    if (getMac(frame, kOffsetTargetMac) != source) return std::nullopt;
    announcement.kind = Announcement::Kind::kRarp;
    return announcement;
  }
  if (ether_type == kEtherTypeArp && (opcode == kArpOpRequest || opcode == kArpOpReply)) {
    const Ipv4Address sender_ip = getIp(frame, kOffsetSenderIp);
    if (sender_ip != getIp(frame, kOffsetTargetIp)) return std::nullopt;
    announcement.kind = Announcement::Kind::kGratuitousArp;
    announcement.ip = sender_ip;
    return announcement;
  }
  return std::nullopt;
}

bool isAnnouncementFor(std::span<const uint8_t> frame, const MacAddress& mac) {
  std::optional<Announcement> announcement = parseAnnouncement(frame);
  return announcement.has_value() && announcement->mac == mac;
}

}  // namespace flotilla::network
