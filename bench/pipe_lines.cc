// PipeLines (see pipe_lines.h).
#include "bench/pipe_lines.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "common/clock.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {

absl::Status PipeLines::pump(absl::Duration timeout) {
  if (closed_) return absl::OkStatus();
  Clock& clock = systemClock();
  int wait_ms = pollTimeoutMs(timeout);
  while (true) {
    pollfd watched{fd_.get(), POLLIN, 0};
    int ready = ::poll(&watched, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return errnoStatus(errno, fmt::format("polling {}", name_));
    if (ready == 0) return absl::OkStatus();
    char chunk[16384];
    ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, fmt::format("reading {}", name_));
    if (n == 0) {
      closed_ = true;
      if (!partial_.empty()) lines_.push_back({std::move(partial_), clock.monotonicNow()});
      partial_.clear();
      return absl::OkStatus();
    }
    const absl::Duration now = clock.monotonicNow();
    partial_.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t end = partial_.find('\n'); end != std::string::npos;
         end = partial_.find('\n', start)) {
      std::string line = partial_.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines_.push_back({std::move(line), now});
      start = end + 1;
    }
    partial_.erase(0, start);
    wait_ms = 0;  // take whatever else is there, without waiting again
  }
}

absl::StatusOr<size_t> PipeLines::waitFor(const std::function<bool(const std::string&)>& matches,
                                          absl::Duration timeout, size_t from) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  size_t checked = from;
  while (true) {
    for (; checked < lines_.size(); ++checked) {
      if (matches(lines_[checked].text)) return checked;
    }
    if (closed_) {
      return absl::FailedPreconditionError(
          fmt::format("{} ended (the process exited) before the line the benchmark waits for; "
                      "it read:\n{}",
                      name_, tail()));
    }
    const absl::Duration now = clock.monotonicNow();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          fmt::format("the line the benchmark waits for did not come on {} within {}; it read:\n{}",
                      name_, absl::FormatDuration(timeout), tail()));
    }
    RETURN_IF_ERROR(pump(deadline - now));
  }
}

absl::StatusOr<size_t> PipeLines::waitForText(std::string_view text, absl::Duration timeout,
                                              size_t from) {
  auto found =
      waitFor([text](const std::string& line) { return line.find(text) != std::string::npos; },
              timeout, from);
  if (!found.ok()) return annotate(found.status(), fmt::format("waiting for '{}'", text));
  return found;
}

std::string PipeLines::tail(size_t max_lines) const {
  std::string text;
  size_t first = lines_.size() > max_lines ? lines_.size() - max_lines : 0;
  for (size_t i = first; i < lines_.size(); ++i) {
    text += "  | " + lines_[i].text + "\n";
  }
  if (!partial_.empty()) text += "  | " + partial_ + "\n";
  if (text.empty()) text = "  (nothing)\n";
  return text;
}

}  // namespace flotilla::bench
