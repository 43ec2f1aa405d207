// Strong types for identifiers, so that a VM id cannot be passed where a host id is expected,
// and the validation of object names (DNS labels) shared by every API.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "fmt/format.h"

namespace flotilla {

template <typename Tag, typename T>
class StrongValue {
 public:
  using ValueType = T;

  StrongValue() = default;
  explicit StrongValue(T value) : value_(std::move(value)) {}

  const T& value() const { return value_; }

  friend auto operator<=>(const StrongValue&, const StrongValue&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const StrongValue& v) {
    return H::combine(std::move(h), v.value_);
  }

 private:
  T value_{};
};

using VmId = StrongValue<struct VmIdTag, std::string>;
using HostId = StrongValue<struct HostIdTag, std::string>;
using VcpuIndex = StrongValue<struct VcpuIndexTag, uint32_t>;

// Object names (VMs, hosts, networks, pools, volumes) are DNS labels: 1 to 63 lowercase
// letters, digits and '-', starting and ending with a letter or digit. `kind` names the
// object in the error ("vm name 'Web_1' is invalid: ...").
absl::Status validateName(std::string_view kind, std::string_view name);

}  // namespace flotilla

template <typename Tag, typename T>
struct std::hash<flotilla::StrongValue<Tag, T>> {
  size_t operator()(const flotilla::StrongValue<Tag, T>& v) const {
    return std::hash<T>()(v.value());
  }
};

template <typename Tag, typename T>
struct fmt::formatter<flotilla::StrongValue<Tag, T>> : fmt::formatter<T> {
  template <typename FormatContext>
  auto format(const flotilla::StrongValue<Tag, T>& v, FormatContext& ctx) const {
    return fmt::formatter<T>::format(v.value(), ctx);
  }
};
