// UdpProber: one connected UDP socket per target, a probe round every interval, replies matched
// by the payload they echo (a magic, this run's id, the target's index and the sequence number).
#include "bench/probe/udp_prober.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "common/log.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace flotilla::probe {
namespace {

// The payload: every field in host byte order (only this process reads it back).
//   0  magic "FLPROBE1"   8  run id (u64)   16  target index (u32)   20  zero (u32)
//   24 sequence (u64)     32 sent at, nanoseconds since the start (i64)   40.. zero padding
constexpr std::array<char, 8> kMagic = {'F', 'L', 'P', 'R', 'O', 'B', 'E', '1'};
constexpr size_t kHeaderSize = 40;
constexpr size_t kMaxPayload = 1400;  // fits the VXLAN-encapsulated MTU of the local cluster
constexpr int kReceiveBuffer = 1 << 20;

struct Probe {
  uint64_t run_id = 0;
  uint32_t target = 0;
  uint64_t sequence = 0;
  int64_t sent_at_ns = 0;
};

void encodeProbe(const Probe& probe, std::vector<uint8_t>& buffer) {
  std::fill(buffer.begin(), buffer.end(), uint8_t{0});
  std::memcpy(buffer.data(), kMagic.data(), kMagic.size());
  std::memcpy(buffer.data() + 8, &probe.run_id, 8);
  std::memcpy(buffer.data() + 16, &probe.target, 4);
  std::memcpy(buffer.data() + 24, &probe.sequence, 8);
  std::memcpy(buffer.data() + 32, &probe.sent_at_ns, 8);
}

// The probe a reply echoes, if it is one of this run's.
bool decodeProbe(const uint8_t* data, size_t size, uint64_t run_id, Probe& probe) {
  if (size < kHeaderSize || std::memcmp(data, kMagic.data(), kMagic.size()) != 0) return false;
  std::memcpy(&probe.run_id, data + 8, 8);
  std::memcpy(&probe.target, data + 16, 4);
  std::memcpy(&probe.sequence, data + 24, 8);
  std::memcpy(&probe.sent_at_ns, data + 32, 8);
  return probe.run_id == run_id;
}

double toMs(absl::Duration d) {
  return absl::ToDoubleMilliseconds(d);
}

absl::StatusOr<UniqueFd> connectedSocket(const ProbeTarget& target) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(target.port);
  if (::inet_pton(AF_INET, target.address.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        fmt::format("target {}: '{}' is not an IPv4 address (write it like 10.78.0.11)",
                    target.name, target.address));
  }
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid())
    return errnoStatus(errno, fmt::format("target {}: creating a UDP socket", target.name));
  // Replies of a whole probe round can arrive while the prober sends the next one.
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof(kReceiveBuffer)) != 0) {
    return errnoStatus(errno, fmt::format("target {}: setting SO_RCVBUF", target.name));
  }
  // Connected: the kernel delivers only this target's datagrams to the socket.
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return errnoStatus(errno,
                       fmt::format("target {}: no route to {}:{} from this network namespace "
                                   "(run the prober where the targets are reachable, e.g. "
                                   "with nsenter --net=/run/netns/NAME)",
                                   target.name, target.address, target.port));
  }
  return fd;
}

}  // namespace

absl::StatusOr<ProbeTarget> parseProbeTarget(std::string_view text) {
  ProbeTarget target;
  std::string_view rest = text;
  if (const size_t equals = rest.find('='); equals != std::string_view::npos) {
    target.name = std::string(rest.substr(0, equals));
    rest.remove_prefix(equals + 1);
    if (target.name.empty()) {
      return absl::InvalidArgumentError(fmt::format(
          "target '{}': the name before '=' is empty (write NAME=IPV4[:PORT] or IPV4[:PORT])",
          text));
    }
  }
  if (const size_t colon = rest.find(':'); colon != std::string_view::npos) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(absl::string_view(rest.data() + colon + 1, rest.size() - colon - 1),
                          &port) ||
        port == 0 || port > 65535) {
      return absl::InvalidArgumentError(
          fmt::format("target '{}': '{}' is no UDP port (1..65535)", text, rest.substr(colon + 1)));
    }
    target.port = static_cast<uint16_t>(port);
    rest = rest.substr(0, colon);
  }
  in_addr parsed{};
  target.address = std::string(rest);
  if (::inet_pton(AF_INET, target.address.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError(
        fmt::format("target '{}': '{}' is not an IPv4 address (write [NAME=]IPV4[:PORT], e.g. "
                    "vm-1=10.78.0.11)",
                    text, rest));
  }
  if (target.name.empty()) target.name = target.address;
  return target;
}

absl::Status validateProbeOptions(const ProbeOptions& options) {
  if (options.interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--interval must be longer than 0 (e.g. 1ms)");
  }
  if (options.duration < absl::ZeroDuration() || options.linger < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--duration and --linger must not be negative");
  }
  if (options.payload_size < kHeaderSize || options.payload_size > kMaxPayload) {
    return absl::InvalidArgumentError(
        fmt::format("--size {} is out of range: a probe carries {} to {} bytes",
                    options.payload_size, kHeaderSize, kMaxPayload));
  }
  return absl::OkStatus();
}

// TargetStats -----------------------------------------------------------------------------------

void TargetStats::sent(uint64_t sequence, absl::Duration at, bool ok) {
  if (sequence != sent_) return;  // out of order: cannot happen with UdpProber
  if (sent_ == 0) first_send_ = at;
  ++sent_;
  answered_.push_back(false);
  if (!ok) ++send_errors_;
}

void TargetStats::replied(uint64_t sequence, absl::Duration sent_at, absl::Duration at) {
  if (sequence >= sent_) return;
  if (answered_[sequence]) {
    ++duplicates_;
    return;
  }
  answered_[sequence] = true;
  ++received_;
  const absl::Duration rtt = std::max(at - sent_at, absl::ZeroDuration());
  rtt_min_ = std::min(rtt_min_, rtt);
  rtt_max_ = std::max(rtt_max_, rtt);
  rtt_sum_ += rtt;
  if (!any_reply_) {
    any_reply_ = true;
    first_reply_ = at;
  } else if (at - last_reply_ > longest_gap_) {
    longest_gap_ = at - last_reply_;
    longest_gap_start_ = last_reply_;
  }
  last_reply_ = std::max(last_reply_, at);
}

TargetReport TargetStats::report(const ProbeTarget& target, absl::Duration last_send) const {
  TargetReport r;
  r.target = target;
  r.sent = sent_;
  r.received = received_;
  r.duplicates = duplicates_;
  r.send_errors = send_errors_;
  r.longest_gap = longest_gap_;
  r.longest_gap_start = longest_gap_start_;
  if (!any_reply_) {
    r.longest_gap = sent_ > 0 ? last_send - first_send_ : absl::ZeroDuration();
    r.longest_gap_start = first_send_;
  } else {
    r.first_reply = first_reply_ - first_send_;
    // A target that went silent: the gap runs until the last probe it did not answer.
    if (last_send - last_reply_ > r.longest_gap) {
      r.longest_gap = last_send - last_reply_;
      r.longest_gap_start = last_reply_;
    }
    r.rtt_min = rtt_min_;
    r.rtt_max = rtt_max_;
    r.rtt_avg = rtt_sum_ / static_cast<double>(received_);
  }
  uint64_t run = 0;
  for (bool answered : answered_) {
    run = answered ? 0 : run + 1;
    r.longest_loss_run = std::max(r.longest_loss_run, run);
  }
  return r;
}

// ProbeReport -----------------------------------------------------------------------------------

uint64_t ProbeReport::totalSent() const {
  uint64_t total = 0;
  for (const TargetReport& t : targets) total += t.sent;
  return total;
}

uint64_t ProbeReport::totalReceived() const {
  uint64_t total = 0;
  for (const TargetReport& t : targets) total += t.received;
  return total;
}

uint64_t ProbeReport::totalLost() const {
  return totalSent() - totalReceived();
}

absl::Duration ProbeReport::longestGap() const {
  absl::Duration longest = absl::ZeroDuration();
  for (const TargetReport& t : targets) longest = std::max(longest, t.longest_gap);
  return longest;
}

bool ProbeReport::allAnswered() const {
  return std::all_of(targets.begin(), targets.end(),
                     [](const TargetReport& t) { return t.answered(); });
}

// UdpProber -------------------------------------------------------------------------------------

UdpProber::UdpProber(std::vector<ProbeTarget> targets, ProbeOptions options, Clock& clock)
    : targets_(std::move(targets)), options_(options), clock_(clock) {}

absl::StatusOr<ProbeReport> UdpProber::run(int stop_fd, const std::function<void()>& started) {
  RETURN_IF_ERROR(validateProbeOptions(options_));
  if (targets_.empty()) {
    return absl::InvalidArgumentError("no targets: give at least one [NAME=]IPV4[:PORT]");
  }
  std::vector<UniqueFd> sockets;
  for (const ProbeTarget& target : targets_) {
    ASSIGN_OR_RETURN(UniqueFd fd, connectedSocket(target));
    sockets.push_back(std::move(fd));
  }
  // A fresh id per run: late replies to an earlier run (same ports reused) are not counted.
  std::random_device random;
  const uint64_t run_id = (uint64_t{random()} << 32) | random();

  // poll set: [0] the stop fd (-1: ignored by poll), then one entry per target.
  std::vector<pollfd> fds(targets_.size() + 1);
  fds[0] = {.fd = stop_fd, .events = POLLIN, .revents = 0};
  for (size_t i = 0; i < sockets.size(); ++i) {
    fds[i + 1] = {.fd = sockets[i].get(), .events = POLLIN, .revents = 0};
  }
  std::vector<TargetStats> stats(targets_.size());
  std::vector<uint8_t> probe(options_.payload_size);
  std::vector<uint8_t> reply(kMaxPayload + 64);
  const Logger log("udp-probe");

  if (started) started();
  const absl::Duration start = clock_.monotonicNow();
  auto now = [&] { return clock_.monotonicNow() - start; };
  absl::Duration next_round = absl::ZeroDuration();
  absl::Duration last_send = absl::ZeroDuration();
  absl::Duration longest_send_gap = absl::ZeroDuration();
  absl::Duration linger_until = absl::ZeroDuration();
  uint64_t round = 0;
  bool sending = true;
  auto stopSending = [&](absl::Duration at) {
    sending = false;
    linger_until = at + options_.linger;
    fds[0].fd = -1;
  };
  auto allAnswered = [&] {
    return std::all_of(stats.begin(), stats.end(),
                       [](const TargetStats& s) { return s.receivedCount() == s.sentCount(); });
  };

  while (true) {
    absl::Duration t = now();
    if (sending && ((options_.count != 0 && round >= options_.count) ||
                    (options_.duration > absl::ZeroDuration() && t >= options_.duration))) {
      stopSending(t);
    }
    if (sending && t >= next_round) {
      for (size_t i = 0; i < sockets.size(); ++i) {
        const absl::Duration sent_at = now();
        encodeProbe({.run_id = run_id,
                     .target = static_cast<uint32_t>(i),
                     .sequence = round,
                     .sent_at_ns = absl::ToInt64Nanoseconds(sent_at)},
                    probe);
        const ssize_t n = ::send(sockets[i].get(), probe.data(), probe.size(), 0);
        stats[i].sent(round, sent_at, n == static_cast<ssize_t>(probe.size()));
      }
      if (round > 0) longest_send_gap = std::max(longest_send_gap, t - last_send);
      last_send = t;
      ++round;
      // On the grid start + k * interval; rounds missed while descheduled are skipped, not
      // sent in a burst.
      while (next_round <= t) next_round += options_.interval;
    }
    if (!sending && (t >= linger_until || allAnswered())) break;

    absl::Duration wait = sending ? next_round - t : linger_until - t;
    if (sending && options_.duration > absl::ZeroDuration()) {
      wait = std::min(wait, options_.duration - t);
    }
    const timespec timeout = absl::ToTimespec(std::max(wait, absl::ZeroDuration()));
    const int ready = ::ppoll(fds.data(), fds.size(), &timeout, nullptr);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(errno, "polling the probe sockets");
    }
    if (ready == 0) continue;
    if (fds[0].fd >= 0 && (fds[0].revents & POLLIN) != 0) stopSending(now());
    for (size_t i = 0; i < sockets.size(); ++i) {
      if (fds[i + 1].revents == 0) continue;
      while (true) {
        const ssize_t n = ::recv(sockets[i].get(), reply.data(), reply.size(), 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          // ECONNREFUSED, EHOSTUNREACH, ...: an ICMP error for an earlier probe; that probe
          // counts as lost.
          continue;
        }
        Probe echoed;
        if (!decodeProbe(reply.data(), static_cast<size_t>(n), run_id, echoed) ||
            echoed.target != i) {
          continue;
        }
        stats[i].replied(echoed.sequence, absl::Nanoseconds(echoed.sent_at_ns), now());
      }
    }
  }

  ProbeReport report;
  report.options = options_;
  report.elapsed = last_send;
  report.longest_send_gap = longest_send_gap;
  for (size_t i = 0; i < targets_.size(); ++i) {
    report.targets.push_back(stats[i].report(targets_[i], last_send));
  }
  log.debug("{} rounds to {} targets in {}", round, targets_.size(),
            absl::FormatDuration(last_send));
  return report;
}

// Output ----------------------------------------------------------------------------------------

std::string formatReportText(const ProbeReport& report) {
  struct Row {
    std::vector<std::string> cells;
  };
  const std::vector<std::string> header = {"TARGET",  "ADDRESS",     "SENT",   "RECEIVED",
                                           "LOST",    "LONGEST GAP", "GAP AT", "LOSS RUN",
                                           "RTT AVG", "RTT MAX"};
  std::vector<Row> rows;
  for (const TargetReport& t : report.targets) {
    rows.push_back({{t.target.name, fmt::format("{}:{}", t.target.address, t.target.port),
                     std::to_string(t.sent), std::to_string(t.received), std::to_string(t.lost()),
                     fmt::format("{:.1f}ms", toMs(t.longest_gap)),
                     fmt::format("+{:.1f}s", absl::ToDoubleSeconds(t.longest_gap_start)),
                     std::to_string(t.longest_loss_run),
                     t.answered() ? fmt::format("{:.2f}ms", toMs(t.rtt_avg)) : "-",
                     t.answered() ? fmt::format("{:.2f}ms", toMs(t.rtt_max)) : "-"}});
  }
  rows.push_back({{"total", "", std::to_string(report.totalSent()),
                   std::to_string(report.totalReceived()), std::to_string(report.totalLost()),
                   fmt::format("{:.1f}ms", toMs(report.longestGap())), "", "", "", ""}});
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    widths[c] = header[c].size();
    for (const Row& row : rows) widths[c] = std::max(widths[c], row.cells[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      // Names and addresses left-aligned, numbers right-aligned.
      out += c < 2 ? fmt::format("{:<{}}", cells[c], widths[c])
                   : fmt::format("{:>{}}", cells[c], widths[c]);
      if (c + 1 < cells.size()) out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = fmt::format(
      "{} target{}, a probe to each every {} for {:.1f}s; the prober's own longest pause: "
      "{:.1f}ms\n",
      report.targets.size(), report.targets.size() == 1 ? "" : "s",
      absl::FormatDuration(report.options.interval), absl::ToDoubleSeconds(report.elapsed),
      toMs(report.longest_send_gap));
  out += line(header);
  for (const Row& row : rows) out += line(row.cells);
  return out;
}

std::string formatReportJson(const ProbeReport& report) {
  nlohmann::json targets = nlohmann::json::array();
  for (const TargetReport& t : report.targets) {
    nlohmann::json entry = {
        {"name", t.target.name},
        {"address", t.target.address},
        {"port", t.target.port},
        {"sent", t.sent},
        {"received", t.received},
        {"lost", t.lost()},
        {"duplicates", t.duplicates},
        {"send_errors", t.send_errors},
        {"longest_gap_ms", toMs(t.longest_gap)},
        {"longest_gap_start_s", absl::ToDoubleSeconds(t.longest_gap_start)},
        {"longest_loss_run", t.longest_loss_run},
        {"answered", t.answered()},
    };
    if (t.answered()) {
      entry["first_reply_ms"] = toMs(t.first_reply);
      entry["rtt_ms"] = {
          {"min", toMs(t.rtt_min)}, {"avg", toMs(t.rtt_avg)}, {"max", toMs(t.rtt_max)}};
    }
    targets.push_back(std::move(entry));
  }
  const nlohmann::json document = {
      {"interval_ms", toMs(report.options.interval)},
      {"payload_bytes", report.options.payload_size},
      {"elapsed_s", absl::ToDoubleSeconds(report.elapsed)},
      {"longest_send_gap_ms", toMs(report.longest_send_gap)},
      {"targets", std::move(targets)},
      {"total",
       {{"sent", report.totalSent()},
        {"received", report.totalReceived()},
        {"lost", report.totalLost()},
        {"longest_gap_ms", toMs(report.longestGap())},
        {"all_answered", report.allAnswered()}}},
  };
  return document.dump(2) + "\n";
}

}  // namespace flotilla::probe
