// Deterministic MAC allocation (see mac_allocation.h).
#include "network/mac_allocation.h"

#include <openssl/sha.h>

#include <string>

#include "fmt/format.h"

namespace flotilla::network {

MacAddress deterministicMac(std::string_view seed) {
  // SHA256() is OpenSSL's one-shot digest (not among the low-level calls 3.0 deprecated).
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(seed.data()), seed.size(), digest);
  return MacAddress(MacAddress::Bytes{kFlotillaMacPrefix[0], kFlotillaMacPrefix[1], digest[0],
                                      digest[1], digest[2], digest[3]});
}

bool isFlotillaMac(const MacAddress& mac) {
  return mac.bytes()[0] == kFlotillaMacPrefix[0] && mac.bytes()[1] == kFlotillaMacPrefix[1];
}

absl::StatusOr<MacAddress> allocateMac(std::string_view seed,
                                       const std::function<bool(const MacAddress&)>& taken,
                                       int max_attempts) {
  if (max_attempts < 1) {
    return absl::InvalidArgumentError(fmt::format(
        "allocating a MAC address for \"{}\": max_attempts is {}, it must be at least 1", seed,
        max_attempts));
  }
  MacAddress candidate;
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    candidate = attempt == 0 ? deterministicMac(seed)
                             : deterministicMac(fmt::format("{}#{}", seed, attempt));
    if (!taken(candidate)) return candidate;
  }
  const std::string tried = max_attempts == 1
                                ? fmt::format("\"{}\"", seed)
                                : fmt::format("\"{}\" to \"{}#{}\"", seed, seed, max_attempts - 1);
  return absl::ResourceExhaustedError(
      fmt::format("no free MAC address for \"{}\": all {} candidates ({}, the last {}) are taken; "
                  "raise max_attempts or pick another seed",
                  seed, max_attempts, tried, candidate.toString()));
}

}  // namespace flotilla::network
