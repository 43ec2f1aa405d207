// Object name validation (see ids.h).
#include "common/ids.h"

#include "fmt/format.h"

namespace flotilla {
namespace {

constexpr size_t kMaxNameLength = 63;

bool isLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

}  // namespace

absl::Status validateName(std::string_view kind, std::string_view name) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format(
        "{} name '{}' is invalid: {}; use 1 to 63 lowercase letters, digits and '-', starting "
        "and ending with a letter or digit",
        kind, name, why));
  };
  if (name.empty()) return invalid("it is empty");
  if (name.size() > kMaxNameLength) {
    return invalid(fmt::format("it has {} characters", name.size()));
  }
  for (char c : name) {
    if (!isLowerAlnum(c) && c != '-') return invalid("it contains characters other than [a-z0-9-]");
  }
  if (!isLowerAlnum(name.front()) || !isLowerAlnum(name.back())) {
    return invalid("it starts or ends with '-'");
  }
  return absl::OkStatus();
}

}  // namespace flotilla
