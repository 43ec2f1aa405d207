// Waiting for a migration or a drain to end (--wait): progress from the controller's Watch
// stream (or from polling GetMigration/GetDrain when the controller has no Watch), shown as a
// bar redrawn in place on a terminal, or as one line per change otherwise.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "cli/client.h"

namespace flotilla::cli {

class ProgressLine {
 public:
  ProgressLine(std::ostream& out, bool tty) : out_(out), tty_(tty) {}
  ~ProgressLine() { finish(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Shows `text` after a bar filled to `fraction` (0..1) on a terminal (redrawn in place);
  // otherwise prints `prefix: text` as a line, when it differs from the last one.
  void update(double fraction, const std::string& text);
  // Ends the line being redrawn (terminal only).
  void finish();

  void setPrefix(std::string prefix) { prefix_ = std::move(prefix); }

 private:
  std::ostream& out_;
  const bool tty_;
  std::string prefix_;
  std::string last_;
  bool drawn_ = false;
};

// Follows migration `name` until it ends. OK when it succeeded; a failed or cancelled migration
// is an error with exit status 1 that says why; Ctrl-C stops waiting (exit 130, the migration
// goes on). `memory_bytes` (the VM's memory, 0: unknown) scales the bar while memory is sent.
absl::Status followMigration(ClusterClient& client, const std::string& name, uint64_t memory_bytes,
                             std::ostream& out, bool tty);

// Follows the drain of `host` until it ends: "done/total, failed". A failed or cancelled
// drain is an error (exit 1) listing every VM that could not leave and why.
absl::Status followDrain(ClusterClient& client, const std::string& host, std::ostream& out,
                         bool tty);

}  // namespace flotilla::cli
