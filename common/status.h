// Error handling for all of Flotilla: absl::Status / absl::StatusOr<T>, the
// RETURN_IF_ERROR / ASSIGN_OR_RETURN macros, and helpers that build messages naming the
// object and the failed operation.
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fmt/format.h"

#define FLOTILLA_STATUS_CONCAT_INNER(a, b) a##b
#define FLOTILLA_STATUS_CONCAT(a, b) FLOTILLA_STATUS_CONCAT_INNER(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK. (The variable
// name is unique per use so that uses nested in lambdas do not shadow each other.)
#define RETURN_IF_ERROR(expr) \
  FLOTILLA_RETURN_IF_ERROR_IMPL(FLOTILLA_STATUS_CONCAT(flotilla_status_, __COUNTER__), expr)

#define FLOTILLA_RETURN_IF_ERROR_IMPL(var, expr) \
  do {                                           \
    ::absl::Status var = (expr);                 \
    if (!var.ok()) return var;                   \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, f());` evaluates f() (an absl::StatusOr<T>), returns its status
// when it is not OK, and otherwise moves its value into the declaration or lvalue `lhs`.
#define ASSIGN_OR_RETURN(lhs, expr) \
  FLOTILLA_ASSIGN_OR_RETURN_IMPL(FLOTILLA_STATUS_CONCAT(flotilla_statusor_, __COUNTER__), lhs, expr)

#define FLOTILLA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()

namespace flotilla {

// The status for a failed system call: the code follows errno (ENOENT → NotFound, EACCES →
// PermissionDenied, ...), the message is "<what>: <strerror>".
absl::Status errnoStatus(int error_number, std::string_view what);

// Prefixes the message of a non-OK status with context ("loading /etc/x.yaml: ..."),
// keeping its code. OK stays OK.
absl::Status annotate(const absl::Status& status, std::string_view context);

}  // namespace flotilla

// Debian's abseil is built with its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), so absl::StrCat and friends do not accept std::string_view. Flotilla composes
// messages with fmt::format; these formatters let fmt print abseil's string_view and Status.
#if !ABSL_USES_STD_STRING_VIEW
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
#endif

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(const absl::Status& s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(s.ToString(), ctx);
  }
};
