// GuestAddress: a guest-physical address, a type of its own so that it is never confused with
// a host-virtual address or a length.
#pragma once

#include <compare>
#include <cstdint>

#include "fmt/format.h"

namespace flotilla::vmm {

class GuestAddress {
 public:
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(uint64_t raw) : raw_(raw) {}

  constexpr uint64_t raw() const { return raw_; }

  // Unchecked: callers adding guest-controlled offsets check ranges through GuestMemory.
  friend constexpr GuestAddress operator+(GuestAddress a, uint64_t offset) {
    return GuestAddress(a.raw_ + offset);
  }
  friend constexpr uint64_t operator-(GuestAddress a, GuestAddress b) { return a.raw_ - b.raw_; }
  friend constexpr auto operator<=>(GuestAddress, GuestAddress) = default;

 private:
  uint64_t raw_ = 0;
};

}  // namespace flotilla::vmm

template <>
struct fmt::formatter<flotilla::vmm::GuestAddress> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(flotilla::vmm::GuestAddress a, FormatContext& ctx) const {
    return fmt::format_to(ctx.out(), "{:#x}", a.raw());
  }
};
