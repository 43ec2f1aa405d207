// Internals of the iSCSI backend shared by iscsi.cc (requests, the service loop) and
// iscsi_login.cc (logging in and deciding the capabilities): limits, timings and message
// helpers. Included by those two files only.
#pragma once

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fmt/format.h"

namespace flotilla::storage {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
// A NOP-Out every 5 s while connected; more than 3 unanswered means the target is gone even
// though TCP has not noticed (a cable pull rather than a restart).
constexpr absl::Duration kNopInterval = absl::Seconds(5);
constexpr int kMaxNopsInFlight = 3;
// A fresh session reports a few UNIT ATTENTIONs (power on, reset) before the LUN is usable.
constexpr int kMaxUnitAttentions = 10;
// How often one command is sent again (after UNIT ATTENTION, BUSY or a lost session).
constexpr int kMaxRetries = 8;
// Reads, writes and WRITE SAMEs longer than this become several SCSI commands (also when the
// target reports no limit, so that one command never holds the session for long).
constexpr uint64_t kMaxCommandBytes = 32ull << 20;
constexpr int kWriteSame16Opcode = 0x93;

struct TaskDeleter {
  void operator()(scsi_task* task) const {
    if (task != nullptr) scsi_free_scsi_task(task);
  }
};
using TaskPtr = std::unique_ptr<scsi_task, TaskDeleter>;

// libiscsi's URL errors are several lines ("Invalid URL ...", the reason, the syntax); keep
// the reason.
inline std::string urlProblem(const char* error) {
  std::vector<std::string> kept;
  for (absl::string_view line : absl::StrSplit(error != nullptr ? error : "", '\n')) {
    if (line.empty() || absl::StartsWith(line, "Invalid URL") ||
        absl::StartsWith(line, "iSCSI URL must be")) {
      continue;
    }
    kept.emplace_back(line);
  }
  if (kept.empty()) return "it cannot be parsed";
  std::string joined = kept.front();
  for (size_t i = 1; i < kept.size(); ++i) joined += "; " + kept[i];
  return joined;
}

inline std::string contextError(iscsi_context* context) {
  const char* error = context != nullptr ? iscsi_get_error(context) : nullptr;
  std::string text = error != nullptr && error[0] != '\0' ? error : "unknown error";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// Why the connection failed, for logs and errors: the socket's error when it has one; when
// the peer closed the connection libiscsi only says that it "can not reconnect right now".
inline std::string transportError(iscsi_context* context) {
  int error = 0;
  socklen_t length = sizeof(error);
  if (::getsockopt(iscsi_get_fd(context), SOL_SOCKET, SO_ERROR, &error, &length) == 0 &&
      error != 0) {
    return std::strerror(error);
  }
  std::string text = contextError(context);
  if (absl::StrContains(text, "reconnect_if_loggedin") || text == "unknown error") {
    return "the target closed the connection";
  }
  return text;
}

inline std::string senseText(const scsi_task* task) {
  return fmt::format("{} ({})", scsi_sense_key_str(task->sense.key),
                     scsi_sense_ascq_str(task->sense.ascq));
}

inline const char* phaseVerb(int phase) {
  switch (phase) {
    case 0:
      return "connecting";
    case 1:
      return "logging in";
    case 2:
      return "waiting for the LUN to be ready";
    case 3:
      return "reading the LUN's capacity";
    default:
      return "reading the LUN's properties";
  }
}

}  // namespace flotilla::storage
