// DRBD volumes in the controller (see drbd_placement.h).
#include "controller/api/drbd_placement.h"

#include <vector>

#include "controller/store/store.h"
#include "fmt/format.h"

namespace flotilla::controller {

std::string drbdMinorClaimKey(uint32_t minor) {
  return kindPrefix("drbd-minors") + std::to_string(minor);
}

std::string drbdPortClaimKey(uint32_t port) {
  return kindPrefix("drbd-ports") + std::to_string(port);
}

absl::StatusOr<v1::DrbdPlacement> allocateDrbdPlacement(const std::set<uint32_t>& used_minors,
                                                        const std::set<uint32_t>& used_ports) {
  v1::DrbdPlacement placement;
  uint32_t minor = kDrbdFirstMinor;
  while (minor <= kDrbdLastMinor && used_minors.contains(minor)) ++minor;
  uint32_t port = kDrbdFirstPort;
  while (port <= kDrbdLastPort && used_ports.contains(port)) ++port;
  if (minor > kDrbdLastMinor || port > kDrbdLastPort) {
    return absl::ResourceExhaustedError(fmt::format(
        "no free DRBD {} is left (minors {}-{}, ports {}-{} are taken by DRBD volumes): delete "
        "unused DRBD volumes",
        minor > kDrbdLastMinor ? "device minor" : "port", kDrbdFirstMinor, kDrbdLastMinor,
        kDrbdFirstPort, kDrbdLastPort));
  }
  placement.set_minor(minor);
  placement.set_port(port);
  return placement;
}

absl::StatusOr<std::array<const HostView*, 2>> drbdPoolHosts(const ClusterView& view,
                                                             std::string_view pool) {
  std::vector<const HostView*> hosts;
  for (const auto& [name, host] : view.hosts) {
    if (!host.status) continue;
    for (const std::string& reported : host.status->inventory().pools()) {
      if (reported == pool) {
        hosts.push_back(&host);
        break;
      }
    }
  }
  std::string names;
  for (const HostView* host : hosts) names += (names.empty() ? "" : ", ") + host->name;
  if (hosts.size() != 2) {
    return absl::FailedPreconditionError(fmt::format(
        "DRBD pool {} needs its two hosts reporting it; {}: configure the pool on both hosts' "
        "agents (and only there) and start them",
        pool, hosts.empty() ? std::string("no host reports it") : "hosts reporting it: " + names));
  }
  for (const HostView* host : hosts) {
    if (!host->ready()) {
      return absl::FailedPreconditionError(fmt::format(
          "DRBD pool {}: host {} is not ready (its agent is unreachable or fenced); both hosts "
          "must be up to change the pool's volumes",
          pool, host->name));
    }
  }
  return std::array<const HostView*, 2>{hosts[0], hosts[1]};
}

}  // namespace flotilla::controller
