// MacAddress: an Ethernet (IEEE 802) MAC address as a value type: parsing and formatting in
// the usual "52:54:00:12:34:56" form, the multicast / broadcast / locally-administered bits,
// and random locally-administered unicast addresses for VMs that were given none.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace flotilla::network {

class MacAddress {
 public:
  static constexpr size_t kSize = 6;
  using Bytes = std::array<uint8_t, kSize>;

  // Fills its argument with random bytes. Production code passes nothing (the kernel's
  // getrandom(2)); tests inject a deterministic source.
  using RandomSource = std::function<void(std::span<uint8_t>)>;

  // 00:00:00:00:00:00.
  constexpr MacAddress() = default;
  constexpr explicit MacAddress(const Bytes& bytes) : bytes_(bytes) {}

  // Six two-digit hex bytes separated by ':' ("52:54:00:12:34:56"; upper or lower case).
  // InvalidArgument quoting the text and saying what is wrong otherwise.
  static absl::StatusOr<MacAddress> parse(std::string_view text);

  // The first six bytes of `bytes` (e.g. an Ethernet header); InvalidArgument when shorter.
  static absl::StatusOr<MacAddress> fromBytes(std::span<const uint8_t> bytes);

  static constexpr MacAddress broadcast() {
    return MacAddress(Bytes{0xff, 0xff, 0xff, 0xff, 0xff, 0xff});
  }

  // A random unicast address with the locally-administered bit set (bit 1 of the first byte
  // on, bit 0 off), so that it cannot collide with any vendor-assigned (OUI) address. Dies
  // if getrandom(2) fails (it does not once the kernel's pool is initialised).
  static MacAddress randomLocal();
  static MacAddress randomLocal(const RandomSource& source);

  // Lower-case "52:54:00:12:34:56".
  std::string toString() const;

  const Bytes& bytes() const { return bytes_; }

  // The I/G bit: a group (multicast) address; broadcast is also multicast.
  constexpr bool isMulticast() const { return (bytes_[0] & 0x01) != 0; }
  constexpr bool isUnicast() const { return !isMulticast(); }
  constexpr bool isBroadcast() const { return *this == broadcast(); }
  // The U/L bit: the address was assigned locally, not by a vendor.
  constexpr bool isLocallyAdministered() const { return (bytes_[0] & 0x02) != 0; }
  constexpr bool isZero() const { return *this == MacAddress(); }

  constexpr auto operator<=>(const MacAddress&) const = default;

 private:
  Bytes bytes_{};
};

}  // namespace flotilla::network

template <>
struct std::hash<flotilla::network::MacAddress> {
  size_t operator()(const flotilla::network::MacAddress& mac) const noexcept {
    uint64_t value = 0;
    for (uint8_t byte : mac.bytes()) value = (value << 8) | byte;
    return std::hash<uint64_t>()(value);
  }
};
