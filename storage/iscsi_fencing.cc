// Reservation keys of generations and the opener's plan (see iscsi_fencing.h).
#include "storage/iscsi_fencing.h"

#include <algorithm>

#include "fmt/format.h"

namespace flotilla::storage {

absl::StatusOr<uint64_t> fencingKey(uint64_t generation) {
  if (generation > kMaxFencingGeneration) {
    return absl::InvalidArgumentError(
        fmt::format("generation {} is too large for an iSCSI reservation key: at most {}",
                    generation, kMaxFencingGeneration));
  }
  return (uint64_t{kFencingKeyTag} << 32) | (generation + 1);
}

std::optional<uint64_t> fencingGeneration(uint64_t key) {
  const uint64_t low = key & 0xffffffffull;
  if ((key >> 32) != kFencingKeyTag || low == 0) return std::nullopt;
  return low - 1;
}

FencingPlan planFencing(std::span<const uint64_t> registered, uint64_t generation) {
  FencingPlan plan;
  for (uint64_t key : registered) {
    std::optional<uint64_t> of = fencingGeneration(key);
    if (!of) continue;
    if (*of > generation) {
      plan.newer_generation = std::max(plan.newer_generation.value_or(0), *of);
    } else if (*of < generation &&
               std::find(plan.preempt.begin(), plan.preempt.end(), key) == plan.preempt.end()) {
      plan.preempt.push_back(key);
    }
  }
  // Keys carry the generation in their low half under a common tag: key order is age order.
  std::sort(plan.preempt.begin(), plan.preempt.end());
  if (plan.newer_generation) plan.preempt.clear();  // this opener does not run: it takes nothing
  return plan;
}

absl::Status newerGenerationError(std::string_view lun, uint64_t generation, uint64_t newer) {
  return absl::FailedPreconditionError(
      fmt::format("iSCSI LUN {} is held by generation {} of its VM, this VMM has generation {}: "
                  "this VM was restarted elsewhere as generation {}; this copy must not run",
                  lun, newer, generation, newer));
}

}  // namespace flotilla::storage
