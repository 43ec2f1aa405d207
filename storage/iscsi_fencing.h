// Fencing by generation on iSCSI LUNs (docs/storage.md "Fencing by generation"): the SCSI-3
// persistent reservation key Flotilla registers for a VM's generation, and the decision an
// opener takes from the keys registered on a LUN. The iSCSI backend (iscsi_login.cc) carries
// the decision out; this part is pure so that it is tested without a target.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::storage {

// "FLOT": the high half of every reservation key Flotilla registers. Keys without it are
// another initiator's: never preempted, never taken for a generation.
inline constexpr uint32_t kFencingKeyTag = 0x464c4f54;
// The low half is generation + 1, so that no key is 0 (SPC: a key of 0 means "none").
inline constexpr uint64_t kMaxFencingGeneration = 0xfffffffeull;

// The reservation key of `generation`; InvalidArgument past kMaxFencingGeneration.
absl::StatusOr<uint64_t> fencingKey(uint64_t generation);
// The generation `key` stands for; nullopt for a key that is not Flotilla's.
std::optional<uint64_t> fencingGeneration(uint64_t key);

struct FencingPlan {
  // The newest generation registered, when it is newer than the opener's: the opener is a
  // copy of the VM that was restarted elsewhere and must not run.
  std::optional<uint64_t> newer_generation;
  // The distinct keys of older generations, oldest first: the opener preempts each one, which
  // removes every registration (every old session) with that key.
  std::vector<uint64_t> preempt;
};

// What an opener of `generation` does about the keys registered on a LUN (READ KEYS lists one
// entry per registration: the same key appears once per session that registered it).
FencingPlan planFencing(std::span<const uint64_t> registered, uint64_t generation);

// FailedPrecondition for an opener of `generation` on a LUN a newer generation holds.
absl::Status newerGenerationError(std::string_view lun, uint64_t generation, uint64_t newer);

}  // namespace flotilla::storage
