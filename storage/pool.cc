// Name and size rules shared by every volume pool (see pool.h).
#include "storage/pool.h"

#include "fmt/format.h"

namespace flotilla::storage {
namespace {

constexpr size_t kMaxLabelLength = 63;

bool isLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

// Empty when `label` is a valid name, else why it is not.
std::string labelProblem(std::string_view label) {
  if (label.empty()) return "it is empty";
  if (label.size() > kMaxLabelLength) {
    return fmt::format("it has {} characters, at most {} are allowed", label.size(),
                       kMaxLabelLength);
  }
  for (char c : label) {
    if (!isLabelChar(c)) {
      if (c >= 'A' && c <= 'Z') return "it has an uppercase letter";
      return fmt::format("it contains '{}'", c);
    }
  }
  if (label.front() == '-' || label.back() == '-') return "it starts or ends with '-'";
  return {};
}

absl::Status validateLabel(std::string_view what, std::string_view label) {
  std::string problem = labelProblem(label);
  if (problem.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(fmt::format(
      "invalid {} name '{}': {}; a {} name is 1 to 63 lowercase letters, digits and '-', "
      "starting and ending with a letter or digit (e.g. web1, db-data-2)",
      what, label, problem, what));
}

}  // namespace

absl::Status validateVolumeName(std::string_view volume) {
  return validateLabel("volume", volume);
}

absl::Status validatePoolName(std::string_view pool) {
  return validateLabel("pool", pool);
}

absl::Status validateVolumeSize(std::string_view volume, uint64_t size_bytes) {
  if (size_bytes == 0) {
    return absl::InvalidArgumentError(
        fmt::format("volume {}: the size must be positive (a multiple of {} bytes)", volume,
                    kVolumeSectorBytes));
  }
  if (size_bytes % kVolumeSectorBytes != 0) {
    const uint64_t down = size_bytes / kVolumeSectorBytes * kVolumeSectorBytes;
    const uint64_t up = down + kVolumeSectorBytes;  // wraps only within 512 of 2^64
    return absl::InvalidArgumentError(
        fmt::format("volume {}: size {} bytes is not a multiple of {}; use {} bytes", volume,
                    size_bytes, kVolumeSectorBytes, up > down ? up : down));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::storage
