// PipeLines: the lines a child process writes to a pipe (its serial console on standard
// output, its log on standard error), each stamped with the monotonic time it was read, so
// that a benchmark can tell when a line appeared while it was busy with something else.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/unique_fd.h"

namespace flotilla::bench {

class PipeLines {
 public:
  struct Line {
    std::string text;     // without the newline
    absl::Duration read;  // systemClock().monotonicNow() when it was read
  };

  // `name` ("Flotilla's serial console") is for messages.
  PipeLines(UniqueFd read_end, std::string name)
      : fd_(std::move(read_end)), name_(std::move(name)) {}

  // Reads what the pipe holds, waiting up to `timeout` for the first bytes. OK also when
  // nothing came; the pipe's end (the writer exited) is not an error: see closed().
  absl::Status pump(absl::Duration timeout);

  // Waits up to `timeout` for a line at index >= `from` that `matches`; returns its index.
  // DeadlineExceeded or FailedPrecondition (the pipe closed first), with the output so far.
  absl::StatusOr<size_t> waitFor(const std::function<bool(const std::string&)>& matches,
                                 absl::Duration timeout, size_t from = 0);
  // waitFor a line containing `text`.
  absl::StatusOr<size_t> waitForText(std::string_view text, absl::Duration timeout,
                                     size_t from = 0);

  const std::vector<Line>& lines() const { return lines_; }
  bool closed() const { return closed_; }
  // Everything read so far, the last `max_lines` lines, for error messages.
  std::string tail(size_t max_lines = 40) const;

 private:
  UniqueFd fd_;
  std::string name_;
  std::string partial_;  // bytes after the last newline
  std::vector<Line> lines_;
  bool closed_ = false;
};

}  // namespace flotilla::bench
