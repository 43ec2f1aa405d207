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
// The UNIT ATTENTIONs that say this session's registration was removed (libiscsi reports
// ASC << 8 | ASCQ): SPC-3 reports a PREEMPT to the preempted sessions as REGISTRATIONS
// PREEMPTED (2A/05) and a CLEAR as RESERVATIONS PREEMPTED (2A/03); tgt (spc.c,
// spc_pr_preempt) reports both as 2A/03, only to the sessions whose registration it removed.
constexpr int kAscqReservationsPreempted = 0x2a03;
constexpr int kAscqRegistrationsPreempted = 0x2a05;
// READ KEYS' allocation length: its 8-byte header and up to 8190 keys (one per registered
// session; each reconnect registers a new one).
constexpr uint16_t kReadKeysBytes = 8 + 8 * 8190;
constexpr uint16_t kReadReservationBytes = 24;
// How often one login starts the fencing phases over after another opener changed the LUN's
// registrations under it (a race between two openers is settled in a round or two).
constexpr int kMaxFencingRounds = 8;

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
  const char* ascq = scsi_sense_ascq_str(task->sense.ascq);
  if (ascq == nullptr) {  // libiscsi names only some codes
    return fmt::format("{} (ASC/ASCQ {:#06x})", scsi_sense_key_str(task->sense.key),
                       task->sense.ascq);
  }
  return fmt::format("{} ({})", scsi_sense_key_str(task->sense.key), ascq);
}

// What a command's answer was, for errors: the sense data of a CHECK CONDITION, the status
// otherwise, libiscsi's error when the command never got an answer.
inline std::string answerText(iscsi_context* context, int status, const scsi_task* task) {
  if (status == SCSI_STATUS_CHECK_CONDITION && task != nullptr) return senseText(task);
  if (status == SCSI_STATUS_ERROR || status == SCSI_STATUS_CANCELLED ||
      status == SCSI_STATUS_TIMEOUT) {
    return contextError(context);
  }
  return fmt::format("SCSI status {:#x}", status);
}

}  // namespace flotilla::storage
