// DRBD volumes in the controller (docs/controller.md "DRBD volumes"): the two hosts of a DRBD
// pool (the ones whose agents report it) and the placement of a new volume's resource (device
// minor and TCP port, the same on both hosts), unique across the cluster through claim keys
// written in the transaction that creates the volume's record.
#pragma once

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "controller/model/cluster_view.h"
#include "flotilla/v1/types.pb.h"

namespace flotilla::controller {

// Minors from 100 (below: left to resources made by hand), ports from 7789 (DRBD's usual
// range starts at 7788).
inline constexpr uint32_t kDrbdFirstMinor = 100;
inline constexpr uint32_t kDrbdLastMinor = (1u << 20) - 1;
inline constexpr uint32_t kDrbdFirstPort = 7789;
inline constexpr uint32_t kDrbdLastPort = 65535;

// drbd-minors/MINOR and drbd-ports/PORT: "POOL/VOLUME" of the volume that holds them.
std::string drbdMinorClaimKey(uint32_t minor);
std::string drbdPortClaimKey(uint32_t port);

// The lowest free minor and the lowest free port; ResourceExhausted when none is left.
absl::StatusOr<v1::DrbdPlacement> allocateDrbdPlacement(const std::set<uint32_t>& used_minors,
                                                        const std::set<uint32_t>& used_ports);

// The two hosts whose agents report the DRBD pool, sorted by name; FailedPrecondition (naming
// the hosts that do) unless there are exactly two and both are ready.
absl::StatusOr<std::array<const HostView*, 2>> drbdPoolHosts(const ClusterView& view,
                                                             std::string_view pool);

}  // namespace flotilla::controller
