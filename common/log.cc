// Logging wrapper over spdlog (see log.h).
#include "common/log.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace flotilla {
namespace {

constexpr char kPattern[] = "%Y-%m-%dT%H:%M:%S.%e%z %L %v";

spdlog::level::level_enum toSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

spdlog::logger& processLogger() {
  static const bool initialized = [] {
    auto logger = std::make_shared<spdlog::logger>(
        "flotilla", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern(kPattern);
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)initialized;
  return *spdlog::default_logger_raw();
}

bool needsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<LogLevel> parseLogLevel(std::string_view text) {
  std::string lower = absl::AsciiStrToLower(std::string(text));
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      fmt::format("unknown log level '{}': use debug, info, warn or error", text));
}

absl::Status initLogging(const LogOptions& options) {
  std::shared_ptr<spdlog::logger> logger;
  if (options.file.empty()) {
    logger = std::make_shared<spdlog::logger>("flotilla",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else {
    try {
      logger = std::make_shared<spdlog::logger>(
          "flotilla", std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
    } catch (const spdlog::spdlog_ex& e) {
      return absl::FailedPreconditionError(
          fmt::format("cannot open log file {}: {}", options.file, e.what()));
    }
  }
  logger->set_pattern(kPattern);
  logger->set_level(toSpdlog(options.level));
  logger->flush_on(spdlog::level::warn);
  processLogger();  // install the default first, so that this replacement is final
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

void flushLogs() {
  processLogger().flush();
}

LogRateLimiter::LogRateLimiter(const Clock& clock, uint32_t burst, absl::Duration period)
    : clock_(clock), burst_(burst), period_(period), window_start_(clock.monotonicNow()) {}

bool LogRateLimiter::allow(uint64_t* suppressed) {
  absl::MutexLock lock(&mu_);
  absl::Duration now = clock_.monotonicNow();
  if (now - window_start_ >= period_) {
    window_start_ = now;
    used_ = 0;
  }
  if (used_ >= burst_) {
    ++suppressed_;
    return false;
  }
  ++used_;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

Logger::Logger(std::string_view component) : prefix_(component) {}

Logger Logger::with(std::string_view key, std::string_view value) const {
  Logger copy(*this);
  if (needsQuotes(value)) {
    std::string escaped;
    for (char c : value) {
      if (c == '"' || c == '\\') escaped += '\\';
      escaped += c;
    }
    copy.prefix_ += fmt::format(" {}=\"{}\"", key, escaped);
  } else {
    copy.prefix_ += fmt::format(" {}={}", key, value);
  }
  return copy;
}

bool Logger::enabled(LogLevel level) const {
  return processLogger().should_log(toSpdlog(level));
}

void Logger::emit(LogLevel level, std::string_view message) const {
  processLogger().log(toSpdlog(level), "{}: {}", prefix_, message);
}

}  // namespace flotilla
