// Test frames for the network integration tests: broadcast Ethernet frames of a local
// experimental ethertype carrying a tag, so that a test recognises its own frames among
// whatever else an interface sees, and the virtio-net header a VMM puts in front of them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "network/announce.h"
#include "network/mac_address.h"
#include "network/tap.h"

namespace flotilla::network::testframes {

// IEEE 802 "local experimental ethertype 1".
inline constexpr uint16_t kTestEtherType = 0x88b5;
inline constexpr size_t kEthernetHeaderBytes = 14;

// A frame from `source` to `destination` whose payload is `tag`, padded to 60 bytes.
inline std::vector<uint8_t> testFrame(const MacAddress& destination, const MacAddress& source,
                                      std::string_view tag) {
  std::vector<uint8_t> frame;
  frame.insert(frame.end(), destination.bytes().begin(), destination.bytes().end());
  frame.insert(frame.end(), source.bytes().begin(), source.bytes().end());
  frame.push_back(static_cast<uint8_t>(kTestEtherType >> 8));
  frame.push_back(static_cast<uint8_t>(kTestEtherType & 0xff));
  frame.insert(frame.end(), tag.begin(), tag.end());
  if (frame.size() < kMinEthernetFrameBytes) frame.resize(kMinEthernetFrameBytes, 0);
  return frame;
}

inline std::vector<uint8_t> broadcastFrame(const MacAddress& source, std::string_view tag) {
  return testFrame(MacAddress::broadcast(), source, tag);
}

// The tag of a test frame (trailing padding removed), or "" when `frame` is not one.
inline std::string tagOf(std::span<const uint8_t> frame) {
  if (frame.size() < kEthernetHeaderBytes) return "";
  if (frame[12] != (kTestEtherType >> 8) || frame[13] != (kTestEtherType & 0xff)) return "";
  std::string tag(frame.begin() + kEthernetHeaderBytes, frame.end());
  while (!tag.empty() && tag.back() == '\0') tag.pop_back();
  return tag;
}

// `frame` behind a zeroed virtio-net header of `header_bytes` (no offloads, num_buffers 0).
inline std::vector<uint8_t> withVnetHeader(std::span<const uint8_t> frame,
                                           size_t header_bytes = kVirtioNetHeaderBytes) {
  std::vector<uint8_t> out(header_bytes, 0);
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

// The frame after a virtio-net header of `header_bytes` (empty when too short).
inline std::span<const uint8_t> withoutVnetHeader(std::span<const uint8_t> data,
                                                  size_t header_bytes = kVirtioNetHeaderBytes) {
  return data.size() < header_bytes ? std::span<const uint8_t>() : data.subspan(header_bytes);
}

// Tags of the test frames among `frames` read from a tap with a `header_bytes` header.
inline std::vector<std::string> tagsFromTap(const std::vector<std::vector<uint8_t>>& frames,
                                            size_t header_bytes = kVirtioNetHeaderBytes) {
  std::vector<std::string> tags;
  for (const auto& frame : frames) {
    std::string tag = tagOf(withoutVnetHeader(frame, header_bytes));
    if (!tag.empty()) tags.push_back(tag);
  }
  return tags;
}

// The one's-complement sum of big-endian 16-bit words, folded (RFC 1071).
inline uint32_t onesComplementSum(std::span<const uint8_t> bytes, uint32_t sum = 0) {
  for (size_t i = 0; i < bytes.size(); i += 2) {
    sum += static_cast<uint32_t>(bytes[i] << 8) | (i + 1 < bytes.size() ? bytes[i + 1] : 0u);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

inline constexpr size_t kIpv4HeaderBytes = 20;
inline constexpr size_t kUdpOffset = kEthernetHeaderBytes + kIpv4HeaderBytes;
inline constexpr size_t kUdpChecksumOffset = 6;  // within the UDP header

// The pseudo-header part of a UDP checksum (source, destination, protocol, length).
inline uint32_t udpPseudoHeaderSum(std::span<const uint8_t> ethernet_frame) {
  const uint8_t* ip = ethernet_frame.data() + kEthernetHeaderBytes;
  const uint32_t udp_length =
      static_cast<uint32_t>((ip[kIpv4HeaderBytes + 4] << 8) | ip[kIpv4HeaderBytes + 5]);
  return onesComplementSum(std::span<const uint8_t>(ip + 12, 8), 17 + udp_length);
}

// Whether `ethernet_frame` is IPv4 (no options) / UDP with a correct UDP checksum.
inline bool udpChecksumValid(std::span<const uint8_t> ethernet_frame) {
  if (ethernet_frame.size() < kUdpOffset + 8) return false;
  const uint8_t* udp = ethernet_frame.data() + kUdpOffset;
  const size_t length = static_cast<size_t>((udp[4] << 8) | udp[5]);
  if (kUdpOffset + length > ethernet_frame.size()) return false;
  return onesComplementSum(std::span<const uint8_t>(udp, length),
                           udpPseudoHeaderSum(ethernet_frame)) == 0xffff;
}

// A broadcast IPv4/UDP frame 10.0.0.1:4660 → 10.0.0.2:7777 carrying `payload`, whose UDP
// checksum is left partial (only the pseudo-header sum, as a stack leaves it for the NIC),
// behind a virtio-net header that says so: VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start at the UDP
// header, csum_offset at its checksum field. What a guest sends when it negotiated
// VIRTIO_NET_F_CSUM.
inline std::vector<uint8_t> udpFrameNeedingChecksum(const MacAddress& source,
                                                    std::string_view payload) {
  std::vector<uint8_t> out(kVirtioNetHeaderBytes, 0);
  out[0] = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
  out[6] = static_cast<uint8_t>(kUdpOffset);
  out[8] = static_cast<uint8_t>(kUdpChecksumOffset);
  std::vector<uint8_t> frame = testFrame(MacAddress::broadcast(), source, "");
  frame.resize(kEthernetHeaderBytes);
  frame[12] = 0x08;  // IPv4
  frame[13] = 0x00;
  const auto udp_length = static_cast<uint16_t>(8 + payload.size());
  const auto total_length = static_cast<uint16_t>(kIpv4HeaderBytes + udp_length);
  const uint8_t ip[kIpv4HeaderBytes] = {0x45,
                                        0,
                                        static_cast<uint8_t>(total_length >> 8),
                                        static_cast<uint8_t>(total_length & 0xff),
                                        0,
                                        0,
                                        0,
                                        0,
                                        64,
                                        17,
                                        0,
                                        0,
                                        10,
                                        0,
                                        0,
                                        1,
                                        10,
                                        0,
                                        0,
                                        2};
  frame.insert(frame.end(), ip, ip + kIpv4HeaderBytes);
  const auto ip_checksum = static_cast<uint16_t>(~onesComplementSum(ip) & 0xffff);
  frame[kEthernetHeaderBytes + 10] = static_cast<uint8_t>(ip_checksum >> 8);
  frame[kEthernetHeaderBytes + 11] = static_cast<uint8_t>(ip_checksum & 0xff);
  frame.insert(frame.end(), {0x12, 0x34, 0x1e, 0x61, static_cast<uint8_t>(udp_length >> 8),
                             static_cast<uint8_t>(udp_length & 0xff), 0, 0});
  frame.insert(frame.end(), payload.begin(), payload.end());
  const uint32_t partial = udpPseudoHeaderSum(frame);
  frame[kUdpOffset + kUdpChecksumOffset] = static_cast<uint8_t>(partial >> 8);
  frame[kUdpOffset + kUdpChecksumOffset + 1] = static_cast<uint8_t>(partial & 0xff);
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

}  // namespace flotilla::network::testframes
