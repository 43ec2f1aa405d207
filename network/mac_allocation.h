// Deterministic MAC addresses for VM NICs: the same seed ("vm-uid/nic-index") always yields
// the same address, on every host and controller replica, so a VM keeps its MACs across
// restarts, migrations and agent crashes without a central counter. Collisions are resolved
// by probing "seed#1", "seed#2", ... against the addresses already in use.
//
// Scheme (docs/network.md): the two-byte Flotilla prefix 02:f1 (locally administered unicast,
// IEEE 802c "administratively assigned" quadrant) followed by the first four bytes of
// SHA-256(seed), e.g. `printf %s vm-uid/0 | sha256sum | cut -c1-8` gives the last four.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string_view>

#include "absl/status/statusor.h"
#include "network/mac_address.h"

namespace flotilla::network {

// The first two bytes of every deterministic MAC: bit 0 of the first byte clear (unicast), bit
// 1 set (locally administered), bits 2-3 clear (SLAP quadrant AAI, administratively assigned).
inline constexpr std::array<uint8_t, 2> kFlotillaMacPrefix = {0x02, 0xf1};

// 02:f1 + the first four bytes of SHA-256(seed). Any seed is accepted (also empty).
MacAddress deterministicMac(std::string_view seed);

// Whether `mac` starts with kFlotillaMacPrefix.
bool isFlotillaMac(const MacAddress& mac);

// The first of deterministicMac(seed), deterministicMac(seed + "#1"), deterministicMac(seed +
// "#2"), ... for which `taken` returns false, trying at most `max_attempts` addresses.
// InvalidArgument when max_attempts < 1; ResourceExhausted naming the seed and the attempts
// when every candidate is taken.
absl::StatusOr<MacAddress> allocateMac(std::string_view seed,
                                       const std::function<bool(const MacAddress&)>& taken,
                                       int max_attempts = 16);

}  // namespace flotilla::network
