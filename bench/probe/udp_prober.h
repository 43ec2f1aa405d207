// UdpProber: sends a sequence-numbered UDP datagram to each of several targets every interval
// and matches the echoed replies by their payload, to measure what a client of those targets
// sees while they are live-migrated or their host is drained: probes lost, the longest time
// without a reply, round-trip times. The program around it is flotilla-udp-probe (probe_main.cc,
// docs/demo.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace flotilla::probe {

struct ProbeTarget {
  std::string name{};     // for reports; the address when none was given
  std::string address{};  // dotted IPv4
  uint16_t port = 7;      // the echo port
};

// Parses "[NAME=]IPV4[:PORT]" ("vm-1=10.78.0.11", "10.78.0.11:7"; the port defaults to 7).
absl::StatusOr<ProbeTarget> parseProbeTarget(std::string_view text);

struct ProbeOptions {
  absl::Duration interval = absl::Milliseconds(1);  // between two probes to one target
  absl::Duration duration = absl::ZeroDuration();   // stop sending after this long; 0: never
  uint64_t count = 0;                               // stop after this many per target; 0: never
  absl::Duration linger = absl::Milliseconds(200);  // after the last probe, wait for replies
  size_t payload_size = 64;                         // bytes of UDP payload (40..1400)
};

absl::Status validateProbeOptions(const ProbeOptions& options);

// What one target answered.
struct TargetReport {
  ProbeTarget target;
  uint64_t sent = 0;
  uint64_t received = 0;     // distinct probes answered
  uint64_t duplicates = 0;   // replies to a probe answered already
  uint64_t send_errors = 0;  // sendto failed (no route, neighbour unreachable, ...): counted lost
  uint64_t lost() const { return sent - received; }
  bool answered() const { return received > 0; }
  // The longest time between two consecutive replies, or between the last reply and the last
  // probe sent (a target that went silent). Without any reply: the whole time probes were sent.
  absl::Duration longest_gap = absl::ZeroDuration();
  absl::Duration longest_gap_start = absl::ZeroDuration();  // when that gap began (since start)
  uint64_t longest_loss_run = 0;                            // the most consecutive probes lost
  absl::Duration first_reply = absl::ZeroDuration();        // since the first probe (ARP etc.)
  absl::Duration rtt_min = absl::ZeroDuration();
  absl::Duration rtt_avg = absl::ZeroDuration();
  absl::Duration rtt_max = absl::ZeroDuration();
};

struct ProbeReport {
  ProbeOptions options;
  absl::Duration elapsed = absl::ZeroDuration();  // from the first probe to the last
  // The longest time between two rounds of probes: the resolution of every gap above (the
  // prober itself may be descheduled on a loaded machine).
  absl::Duration longest_send_gap = absl::ZeroDuration();
  std::vector<TargetReport> targets;

  uint64_t totalSent() const;
  uint64_t totalReceived() const;
  uint64_t totalLost() const;
  absl::Duration longestGap() const;  // the largest longest_gap of all targets
  bool allAnswered() const;
};

// The bookkeeping of one target, apart from sockets and clocks so that it can be tested with
// made-up times. Times are offsets from the prober's start.
class TargetStats {
 public:
  // Probe `sequence` (0, 1, 2, ... in order) was sent at `at` (`ok`: sendto succeeded).
  void sent(uint64_t sequence, absl::Duration at, bool ok);
  // The reply to probe `sequence`, sent at `sent_at`, arrived at `at`. Replies to sequences
  // never sent are ignored (they are not ours).
  void replied(uint64_t sequence, absl::Duration sent_at, absl::Duration at);
  uint64_t sentCount() const { return sent_; }
  uint64_t receivedCount() const { return received_; }
  // The report once probing ended; `last_send` is when the last probe of the run was sent.
  TargetReport report(const ProbeTarget& target, absl::Duration last_send) const;

 private:
  uint64_t sent_ = 0;
  uint64_t received_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t send_errors_ = 0;
  std::vector<bool> answered_;  // by sequence
  absl::Duration first_send_ = absl::ZeroDuration();
  bool any_reply_ = false;
  absl::Duration first_reply_ = absl::ZeroDuration();
  absl::Duration last_reply_ = absl::ZeroDuration();
  absl::Duration longest_gap_ = absl::ZeroDuration();
  absl::Duration longest_gap_start_ = absl::ZeroDuration();
  absl::Duration rtt_min_ = absl::InfiniteDuration();
  absl::Duration rtt_max_ = absl::ZeroDuration();
  absl::Duration rtt_sum_ = absl::ZeroDuration();
};

class UdpProber {
 public:
  UdpProber(std::vector<ProbeTarget> targets, ProbeOptions options, Clock& clock = systemClock());

  // Probes until the duration or count of the options is reached, or until `stop_fd` (if not
  // -1) becomes readable; then waits up to `linger` for the replies still in flight. `started`
  // (if set) is called once the sockets are ready, just before the first probe. Errors only
  // for what makes probing impossible (no socket, a target that is no IPv4 address, no route);
  // targets that do not answer are reported as lost probes.
  absl::StatusOr<ProbeReport> run(int stop_fd = -1, const std::function<void()>& started = {});

 private:
  std::vector<ProbeTarget> targets_;
  ProbeOptions options_;
  Clock& clock_;
};

// The report as a table, one line per target and a total line.
std::string formatReportText(const ProbeReport& report);
// The report as JSON (docs/demo.md describes the fields).
std::string formatReportJson(const ProbeReport& report);

}  // namespace flotilla::probe
