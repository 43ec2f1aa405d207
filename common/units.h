// Human-readable quantities in configuration and on command lines: byte sizes ("512M",
// "2GiB") and durations ("1500ms", "30s", "1h30m").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flotilla {

// Parses a byte size: a non-negative integer with an optional binary suffix, case-insensitive:
// K/KiB (2^10), M/MiB (2^20), G/GiB (2^30), T/TiB (2^40), or B/none for bytes. "512M",
// "2GiB", "4096". Spaces or tabs may surround the text and separate the number from the
// suffix ("2 GiB"). Decimal fractions, negative numbers, overflow of uint64, unknown suffixes
// and the ambiguous KB/MB/GB/TB are errors whose message quotes the text and shows a valid
// example: "expected a byte size such as 4096, 512M or 2GiB, found '1.5G' (fractions ...)".
absl::StatusOr<uint64_t> parseByteSize(std::string_view text);

// Formats a byte size with the largest binary suffix that divides it exactly ("512M", "3G",
// "1536K", "100"), so that parseByteSize(formatByteSize(n)) == n.
std::string formatByteSize(uint64_t bytes);

// Parses a non-negative duration in Go/absl syntax ("250ms", "30s", "1h30m", "1.5s"; units
// ns, us, ms, s, m, h), ignoring surrounding spaces. A bare number without a unit is an error
// (it names the units to use), except "0", accepted as zero like absl and Go do. A negative
// duration (even "-0s"), an infinite one ("inf") and one too large for absl::Duration are
// errors; messages have the same "expected ..., found '<text>' (<why>)" shape as above.
absl::StatusOr<absl::Duration> parseDuration(std::string_view text);

}  // namespace flotilla
