// Page data compression (see compression.h).
#include "migration/compression.h"

#include <lz4.h>
#include <zstd.h>

#include <limits>

#include "fmt/format.h"

namespace flotilla::migration {

constexpr int kZstdLevel = 1;

struct Codec::Contexts {
  ZSTD_CCtx* compress = nullptr;
  ZSTD_DCtx* decompress = nullptr;
  ~Contexts() {
    ZSTD_freeCCtx(compress);
    ZSTD_freeDCtx(decompress);
  }
};

absl::StatusOr<Compression> parseCompression(std::string_view name) {
  if (name == "none") return Compression::kNone;
  if (name == "zstd") return Compression::kZstd;
  if (name == "lz4") return Compression::kLz4;
  return absl::InvalidArgumentError(
      fmt::format("unknown compression '{}': use none, zstd or lz4", name));
}

const char* compressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kZstd:
      return "zstd";
    case Compression::kLz4:
      return "lz4";
  }
  return "?";
}

uint64_t capabilityOf(Compression compression) {
  switch (compression) {
    case Compression::kZstd:
      return kCapabilityZstd;
    case Compression::kLz4:
      return kCapabilityLz4;
    case Compression::kNone:
      break;
  }
  return 0;
}

uint16_t frameFlagOf(Compression compression) {
  switch (compression) {
    case Compression::kZstd:
      return kFlagZstd;
    case Compression::kLz4:
      return kFlagLz4;
    case Compression::kNone:
      break;
  }
  return 0;
}

absl::StatusOr<Compression> compressionOfFlags(uint16_t flags) {
  switch (flags) {
    case 0:
      return Compression::kNone;
    case kFlagZstd:
      return Compression::kZstd;
    case kFlagLz4:
      return Compression::kLz4;
    default:
      return absl::DataLossError(fmt::format("a page batch with unknown flags {:#x}", flags));
  }
}

Codec::Codec(Compression compression)
    : compression_(compression), contexts_(std::make_unique<Contexts>()) {}

Codec::~Codec() = default;

bool Codec::compress(std::span<const uint8_t> input, std::vector<uint8_t>& output) {
  switch (compression_) {
    case Compression::kNone:
      return false;
    case Compression::kZstd: {
      if (contexts_->compress == nullptr) {
        contexts_->compress = ZSTD_createCCtx();
        if (contexts_->compress == nullptr) return false;
        ZSTD_CCtx_setParameter(contexts_->compress, ZSTD_c_compressionLevel, kZstdLevel);
      }
      output.resize(ZSTD_compressBound(input.size()));
      const size_t n = ZSTD_compress2(contexts_->compress, output.data(), output.size(),
                                      input.data(), input.size());
      if (ZSTD_isError(n) || n >= input.size()) return false;
      output.resize(n);
      return true;
    }
    case Compression::kLz4: {
      if (input.size() > static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) return false;
      const int bound = LZ4_compressBound(static_cast<int>(input.size()));
      output.resize(static_cast<size_t>(bound));
      const int n = LZ4_compress_default(reinterpret_cast<const char*>(input.data()),
                                         reinterpret_cast<char*>(output.data()),
                                         static_cast<int>(input.size()), bound);
      if (n <= 0 || static_cast<size_t>(n) >= input.size()) return false;
      output.resize(static_cast<size_t>(n));
      return true;
    }
  }
  return false;
}

absl::Status Codec::decompress(std::span<const uint8_t> input, std::span<uint8_t> output) {
  switch (compression_) {
    case Compression::kNone:
      break;
    case Compression::kZstd: {
      if (contexts_->decompress == nullptr) contexts_->decompress = ZSTD_createDCtx();
      if (contexts_->decompress == nullptr) return absl::ResourceExhaustedError("ZSTD_createDCtx");
      const size_t n = ZSTD_decompressDCtx(contexts_->decompress, output.data(), output.size(),
                                           input.data(), input.size());
      if (ZSTD_isError(n) || n != output.size()) {
        return absl::DataLossError(
            fmt::format("zstd page data did not decompress to {} bytes: {}", output.size(),
                        ZSTD_isError(n) ? ZSTD_getErrorName(n) : fmt::format("{} bytes", n)));
      }
      return absl::OkStatus();
    }
    case Compression::kLz4: {
      if (input.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
          output.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
        return absl::DataLossError("lz4 page data too large");
      }
      const int n = LZ4_decompress_safe(
          reinterpret_cast<const char*>(input.data()), reinterpret_cast<char*>(output.data()),
          static_cast<int>(input.size()), static_cast<int>(output.size()));
      if (n < 0 || static_cast<size_t>(n) != output.size()) {
        return absl::DataLossError(
            fmt::format("lz4 page data did not decompress to {} bytes", output.size()));
      }
      return absl::OkStatus();
    }
  }
  return absl::InternalError("decompressing data that is not compressed");
}

}  // namespace flotilla::migration
