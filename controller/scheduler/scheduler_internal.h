// Private to the scheduler's .cc files: what place() derives from a request once before it
// looks at the hosts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "controller/scheduler/scheduler.h"

namespace flotilla::controller {

// The id of a name no host has: in no host's sorted id list.
inline constexpr uint32_t kUnknownId = UINT32_MAX;

struct Scheduler::Prepared {
  const PlacementRequest* request = nullptr;
  uint32_t vcpus = 0;
  uint64_t memory = 0;
  std::optional<uint32_t> pinned;                           // host index
  std::vector<std::pair<std::string, std::string>> labels;  // sorted
  std::vector<uint32_t> label_ids;  // the same, interned (kUnknownId: no host has it)
  std::string cpu_model;            // a named model every target must offer ("": none)
  uint32_t cpu_model_id = kUnknownId;
  std::optional<uint32_t> source_host;  // live migration of cpu model "host": same CPU as this
  std::vector<std::string> pools;       // unique
  std::vector<uint32_t> pool_ids;
  std::vector<uint32_t> excluded;       // host indices, sorted
  const Claim* own = nullptr;           // the VM's current placement, if accounted
  const Claim* own_incoming = nullptr;  // the target of its own active migration, if any
  const GroupHosts* anti_affinity = nullptr;
  const GroupHosts* affinity = nullptr;

  // VMs of `group` on `host` other than the one being placed.
  uint32_t othersOfGroup(const GroupHosts* group, uint32_t host, bool anti) const;
  // The host's vCPUs and memory in use, without the VM being placed if it is accounted there.
  std::pair<uint64_t, uint64_t> usedWithoutSelf(const Host& host, uint32_t index) const;
};

}  // namespace flotilla::controller
