// Page data compression for the migration stream: zstd (level 1: the best ratio per CPU
// second of the fast levels) or lz4 (the least CPU), negotiated at hello as capability bits.
// A batch whose data does not shrink goes uncompressed, so incompressible memory costs only
// the attempt.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::migration {

enum class Compression { kNone, kZstd, kLz4 };

// "none", "zstd", "lz4".
absl::StatusOr<Compression> parseCompression(std::string_view name);
const char* compressionName(Compression compression);

// The capability bit (MigrationHello.capabilities) and the kPages frame flag of each.
inline constexpr uint64_t kCapabilityZstd = 1u << 0;
inline constexpr uint64_t kCapabilityLz4 = 1u << 1;
inline constexpr uint16_t kFlagZstd = 1u << 0;
inline constexpr uint16_t kFlagLz4 = 1u << 1;
uint64_t capabilityOf(Compression compression);
uint16_t frameFlagOf(Compression compression);
// The compression a kPages frame's flags name; an error for unknown or several bits.
absl::StatusOr<Compression> compressionOfFlags(uint16_t flags);

// One compressing or decompressing context, reused from batch to batch (not thread-safe).
class Codec {
 public:
  explicit Codec(Compression compression);
  ~Codec();
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;

  Compression compression() const { return compression_; }
  // `input` compressed into `output` (resized to what it holds); false when it would not
  // be smaller than the input (send it uncompressed then).
  bool compress(std::span<const uint8_t> input, std::vector<uint8_t>& output);
  // Exactly output.size() bytes from `input`; DataLoss for anything else.
  absl::Status decompress(std::span<const uint8_t> input, std::span<uint8_t> output);

 private:
  Compression compression_;
  struct Contexts;
  std::unique_ptr<Contexts> contexts_;
};

}  // namespace flotilla::migration
