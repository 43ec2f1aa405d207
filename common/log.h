// Structured logging through one wrapper around spdlog. Every line carries the component and
// the ids of the objects it concerns:
//   2026-11-22T10:00:00.123+00:00 I vmm vm=web1 vcpu=0: paused in 2.1ms
// Messages a guest or a remote peer can trigger go through a LogRateLimiter.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/status.h"  // fmt formatters for absl::Status and absl::string_view
#include "fmt/format.h"

namespace flotilla {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

absl::StatusOr<LogLevel> parseLogLevel(std::string_view text);

struct LogOptions {
  LogLevel level = LogLevel::kInfo;
  std::string file;  // empty: standard error
};

// Configures the process's log output; call once from main. Until then lines go to standard
// error at level info.
absl::Status initLogging(const LogOptions& options);

// Writes out buffered lines (lines of level warn and above are written at once).
void flushLogs();

// Allows at most `burst` lines per `period` and counts the lines it refused.
class LogRateLimiter {
 public:
  LogRateLimiter(const Clock& clock, uint32_t burst, absl::Duration period);

  // True when a line may be written now; then *suppressed receives the number of lines
  // refused since the previous allowed one.
  bool allow(uint64_t* suppressed);

 private:
  const Clock& clock_;
  const uint32_t burst_;
  const absl::Duration period_;
  absl::Mutex mu_;
  absl::Duration window_start_ ABSL_GUARDED_BY(mu_);
  uint32_t used_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

class Logger {
 public:
  explicit Logger(std::string_view component);

  // A logger that adds "key=value" to every line (values with spaces are quoted).
  Logger with(std::string_view key, std::string_view value) const;

  template <typename... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kDebug, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kInfo, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kWarn, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kError, format, std::forward<Args>(args)...);
  }

  template <typename... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(level)) emit(level, fmt::format(format, std::forward<Args>(args)...));
  }

  // Writes the line only when `limiter` allows it, noting how many were suppressed before.
  template <typename... Args>
  void limited(LogRateLimiter& limiter, LogLevel level, fmt::format_string<Args...> format,
               Args&&... args) const {
    uint64_t suppressed = 0;
    if (!enabled(level) || !limiter.allow(&suppressed)) return;
    std::string line = fmt::format(format, std::forward<Args>(args)...);
    if (suppressed > 0) line += fmt::format(" ({} similar lines suppressed)", suppressed);
    emit(level, line);
  }

  bool enabled(LogLevel level) const;
  const std::string& prefix() const { return prefix_; }

 private:
  void emit(LogLevel level, std::string_view message) const;

  std::string prefix_;  // "component key=value ..."
};

}  // namespace flotilla
