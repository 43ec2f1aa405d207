// MacAddress (see mac_address.h).
#include "network/mac_address.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "fmt/format.h"

namespace flotilla::network {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::Status invalid(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      fmt::format("invalid MAC address \"{}\": {} (expected six two-digit hex bytes separated "
                  "by ':', e.g. 52:54:00:12:34:56)",
                  text, why));
}

void fillFromKernel(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t got = ::getrandom(out.data() + done, out.size() - done, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      std::perror("getrandom");  // cannot happen once the entropy pool is initialised
      std::abort();
    }
    done += static_cast<size_t>(got);
  }
}

}  // namespace

absl::StatusOr<MacAddress> MacAddress::parse(std::string_view text) {
  // "xx:xx:xx:xx:xx:xx" is exactly 17 characters.
  constexpr size_t kTextLength = kSize * 3 - 1;
  if (text.empty()) return invalid(text, "it is empty");
  if (text.size() != kTextLength) {
    return invalid(text, fmt::format("it has {} characters, not {}", text.size(), kTextLength));
  }
  Bytes bytes{};
  for (size_t i = 0; i < kSize; ++i) {
    const size_t at = i * 3;
    if (i > 0 && text[at - 1] != ':') {
      return invalid(text, fmt::format("character {} is '{}', not ':'", at, text[at - 1]));
    }
    const int high = hexValue(text[at]);
    const int low = hexValue(text[at + 1]);
    if (high < 0 || low < 0) {
      return invalid(
          text, fmt::format("byte {} (\"{}\") is not two hex digits", i + 1, text.substr(at, 2)));
    }
    bytes[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return MacAddress(bytes);
}

absl::StatusOr<MacAddress> MacAddress::fromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() < kSize) {
    return absl::InvalidArgumentError(
        fmt::format("a MAC address needs {} bytes, got {}", kSize, bytes.size()));
  }
  Bytes copy{};
  for (size_t i = 0; i < kSize; ++i) copy[i] = bytes[i];
  return MacAddress(copy);
}

MacAddress MacAddress::randomLocal() {
  return randomLocal(fillFromKernel);
}

MacAddress MacAddress::randomLocal(const RandomSource& source) {
  Bytes bytes{};
  source(bytes);
  // Clear the I/G bit (unicast) and set the U/L bit (locally administered).
  bytes[0] = static_cast<uint8_t>((bytes[0] & 0xfc) | 0x02);
  return MacAddress(bytes);
}

std::string MacAddress::toString() const {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes_[0], bytes_[1], bytes_[2],
                     bytes_[3], bytes_[4], bytes_[5]);
}

}  // namespace flotilla::network
