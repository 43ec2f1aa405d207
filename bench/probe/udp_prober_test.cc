// Tests of UdpProber: the statistics with made-up times, target parsing, and whole runs against
// UDP echo servers on loopback (no root, no daemons) that answer, drop, duplicate, forge or
// refuse probes.
#include "bench/probe/udp_prober.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <thread>

#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace flotilla::probe {
namespace {

using ::testing::HasSubstr;

absl::Duration ms(double n) {
  return absl::Milliseconds(n);
}

// TargetStats -----------------------------------------------------------------------------------

TEST(TargetStatsTest, EveryProbeAnswered) {
  TargetStats stats;
  for (uint64_t i = 0; i < 10; ++i) {
    stats.sent(i, ms(static_cast<double>(i)), true);
    stats.replied(i, ms(static_cast<double>(i)), ms(static_cast<double>(i) + 0.5));
  }
  const TargetReport r = stats.report({.name = "vm", .address = "10.0.0.1", .port = 7}, ms(9));
  EXPECT_EQ(r.sent, 10u);
  EXPECT_EQ(r.received, 10u);
  EXPECT_EQ(r.lost(), 0u);
  EXPECT_EQ(r.longest_gap, ms(1));
  EXPECT_EQ(r.longest_loss_run, 0u);
  EXPECT_EQ(r.first_reply, ms(0.5));
  EXPECT_EQ(r.rtt_min, ms(0.5));
  EXPECT_EQ(r.rtt_max, ms(0.5));
  EXPECT_EQ(r.rtt_avg, ms(0.5));
}

TEST(TargetStatsTest, GapWhereProbesWereLost) {
  TargetStats stats;
  for (uint64_t i = 0; i < 100; ++i) {
    stats.sent(i, ms(static_cast<double>(i)), true);
    // Probes 40..69 are lost: the reply to 39 arrives at 39.2ms, the one to 70 at 70.2ms.
    if (i < 40 || i >= 70)
      stats.replied(i, ms(static_cast<double>(i)), ms(static_cast<double>(i) + 0.2));
  }
  const TargetReport r = stats.report({.name = "vm"}, ms(99));
  EXPECT_EQ(r.received, 70u);
  EXPECT_EQ(r.lost(), 30u);
  EXPECT_EQ(r.longest_loss_run, 30u);
  EXPECT_EQ(r.longest_gap, ms(31));
  EXPECT_EQ(r.longest_gap_start, ms(39.2));
}

TEST(TargetStatsTest, ATargetThatWentSilentHasAGapUntilTheLastProbe) {
  TargetStats stats;
  for (uint64_t i = 0; i < 100; ++i) {
    stats.sent(i, ms(static_cast<double>(i)), true);
    if (i < 10) stats.replied(i, ms(static_cast<double>(i)), ms(static_cast<double>(i)));
  }
  const TargetReport r = stats.report({.name = "vm"}, ms(99));
  EXPECT_EQ(r.longest_gap, ms(90));
  EXPECT_EQ(r.longest_gap_start, ms(9));
  EXPECT_EQ(r.longest_loss_run, 90u);
}

TEST(TargetStatsTest, NoReplyAtAll) {
  TargetStats stats;
  for (uint64_t i = 0; i < 5; ++i) stats.sent(i, ms(10 + static_cast<double>(i)), i != 2);
  const TargetReport r = stats.report({.name = "vm"}, ms(14));
  EXPECT_FALSE(r.answered());
  EXPECT_EQ(r.lost(), 5u);
  EXPECT_EQ(r.send_errors, 1u);
  EXPECT_EQ(r.longest_gap, ms(4));
  EXPECT_EQ(r.longest_gap_start, ms(10));
  EXPECT_EQ(r.longest_loss_run, 5u);
}

TEST(TargetStatsTest, DuplicatesAndRepliesToUnsentProbesAreNotCounted) {
  TargetStats stats;
  stats.sent(0, ms(0), true);
  stats.sent(1, ms(1), true);
  stats.replied(0, ms(0), ms(0.3));
  stats.replied(0, ms(0), ms(0.4));  // duplicate
  stats.replied(7, ms(7), ms(0.5));  // never sent
  stats.replied(1, ms(1), ms(1.1));
  const TargetReport r = stats.report({.name = "vm"}, ms(1));
  EXPECT_EQ(r.received, 2u);
  EXPECT_EQ(r.duplicates, 1u);
  EXPECT_EQ(r.lost(), 0u);
  EXPECT_EQ(r.longest_gap, ms(0.8));
  EXPECT_EQ(r.rtt_min, ms(0.1));
  EXPECT_EQ(r.rtt_max, ms(0.3));
}

// Parsing and options ---------------------------------------------------------------------------

TEST(ParseProbeTargetTest, Forms) {
  absl::StatusOr<ProbeTarget> t = parseProbeTarget("vm-1=10.78.0.11");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name, "vm-1");
  EXPECT_EQ(t->address, "10.78.0.11");
  EXPECT_EQ(t->port, 7);
  t = parseProbeTarget("10.78.0.12:9000");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name, "10.78.0.12");
  EXPECT_EQ(t->port, 9000);
}

TEST(ParseProbeTargetTest, BadTargetsNameTheProblem) {
  EXPECT_THAT(parseProbeTarget("vm-1=").status().message(), HasSubstr("not an IPv4 address"));
  EXPECT_THAT(parseProbeTarget("=10.0.0.1").status().message(), HasSubstr("name before '='"));
  EXPECT_THAT(parseProbeTarget("10.0.0.1:0").status().message(), HasSubstr("no UDP port"));
  EXPECT_THAT(parseProbeTarget("10.0.0.1:x").status().message(), HasSubstr("no UDP port"));
  EXPECT_THAT(parseProbeTarget("host.example").status().message(),
              HasSubstr("'host.example' is not an IPv4 address"));
}

TEST(ValidateProbeOptionsTest, RefusesNonsense) {
  EXPECT_TRUE(validateProbeOptions({}).ok());
  EXPECT_THAT(validateProbeOptions({.interval = absl::ZeroDuration()}).message(),
              HasSubstr("--interval"));
  EXPECT_THAT(validateProbeOptions({.payload_size = 8}).message(), HasSubstr("--size 8"));
  EXPECT_THAT(validateProbeOptions({.payload_size = 9000}).message(), HasSubstr("--size 9000"));
}

// Whole runs on loopback ------------------------------------------------------------------------

// A UDP echo server on 127.0.0.1 in a thread; `transform` decides what goes back for each
// datagram (empty: nothing), by default the datagram itself.
class EchoServer {
 public:
  using Transform = std::function<std::vector<std::string>(const std::string&)>;

  explicit EchoServer(Transform transform = {}) : transform_(std::move(transform)) {
    fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    socklen_t length = sizeof(address);
    EXPECT_EQ(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
    port_ = ntohs(address.sin_port);
    const int buffer = 1 << 20;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
    thread_ = std::thread([this] { serve(); });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  uint64_t received() const { return received_; }

 private:
  void serve() {
    char buffer[2048];
    while (!stop_) {
      pollfd entry{.fd = fd_.get(), .events = POLLIN, .revents = 0};
      if (::poll(&entry, 1, 10) != 1) continue;
      sockaddr_in peer{};
      socklen_t length = sizeof(peer);
      const ssize_t n = ::recvfrom(fd_.get(), buffer, sizeof(buffer), 0,
                                   reinterpret_cast<sockaddr*>(&peer), &length);
      if (n <= 0) continue;
      ++received_;
      const std::string datagram(buffer, static_cast<size_t>(n));
      const std::vector<std::string> replies =
          transform_ ? transform_(datagram) : std::vector<std::string>{datagram};
      for (const std::string& reply : replies) {
        ::sendto(fd_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer),
                 length);
      }
    }
  }

  Transform transform_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

uint64_t sequenceOf(const std::string& datagram) {
  uint64_t sequence = 0;
  std::memcpy(&sequence, datagram.data() + 24, 8);
  return sequence;
}

ProbeTarget target(const std::string& name, const std::string& text) {
  absl::StatusOr<ProbeTarget> t = parseProbeTarget(name + "=" + text);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

// A generous linger: the run ends as soon as every reply is in, so it costs nothing when the
// servers answer, and a loaded machine does not turn late replies into losses.
ProbeOptions countedRun(uint64_t count) {
  return {.interval = absl::Milliseconds(1), .count = count, .linger = absl::Seconds(5)};
}

TEST(UdpProberTest, EveryReplyOfSeveralTargetsIsCounted) {
  EchoServer a, b, c;
  UdpProber prober({target("a", a.target()), target("b", b.target()), target("c", c.target())},
                   countedRun(200));
  absl::StatusOr<ProbeReport> report = prober.run();
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->targets.size(), 3u);
  for (const TargetReport& t : report->targets) {
    EXPECT_EQ(t.sent, 200u) << t.target.name;
    EXPECT_EQ(t.received, 200u) << t.target.name;
    EXPECT_EQ(t.lost(), 0u) << t.target.name;
    EXPECT_EQ(t.duplicates, 0u) << t.target.name;
    EXPECT_EQ(t.longest_loss_run, 0u) << t.target.name;
  }
  EXPECT_EQ(report->totalSent(), 600u);
  EXPECT_EQ(report->totalLost(), 0u);
  EXPECT_TRUE(report->allAnswered());
}

TEST(UdpProberTest, DroppedProbesAreLostAndDuplicatesAreNot) {
  EchoServer dropping([](const std::string& d) {
    const uint64_t sequence = sequenceOf(d);
    if (sequence >= 50 && sequence < 80) return std::vector<std::string>{};
    return std::vector<std::string>{d};
  });
  EchoServer doubling([](const std::string& d) { return std::vector<std::string>{d, d}; });
  UdpProber prober({target("dropping", dropping.target()), target("doubling", doubling.target())},
                   {.interval = absl::Milliseconds(1), .count = 150, .linger = absl::Seconds(1)});
  absl::StatusOr<ProbeReport> report = prober.run();
  ASSERT_TRUE(report.ok()) << report.status();
  const TargetReport& d = report->targets[0];
  EXPECT_EQ(d.sent, 150u);
  EXPECT_EQ(d.received, 120u);
  EXPECT_EQ(d.lost(), 30u);
  EXPECT_EQ(d.longest_loss_run, 30u);
  // 30 probes were not answered: the gap spans at least the 30 intervals between sending
  // probe 49 and probe 80 (the prober may be late, never early).
  EXPECT_GE(d.longest_gap, absl::Milliseconds(30));
  const TargetReport& x = report->targets[1];
  EXPECT_EQ(x.received, 150u);
  EXPECT_EQ(x.duplicates, 150u);
  EXPECT_EQ(x.lost(), 0u);
}

TEST(UdpProberTest, ForgedAndForeignRepliesAreIgnored) {
  // Replies with a wrong magic, a wrong target index, or too short: none is a reply.
  EchoServer forging([](const std::string& d) {
    std::string bad_magic = d;
    bad_magic[0] = 'X';
    std::string other_target = d;
    other_target[16] = static_cast<char>(other_target[16] + 1);
    return std::vector<std::string>{bad_magic, other_target, d.substr(0, 20)};
  });
  UdpProber prober(
      {target("forging", forging.target())},
      {.interval = absl::Milliseconds(1), .count = 20, .linger = absl::Milliseconds(300)});
  absl::StatusOr<ProbeReport> report = prober.run();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->targets[0].sent, 20u);
  EXPECT_EQ(report->targets[0].received, 0u);
  EXPECT_FALSE(report->allAnswered());
}

TEST(UdpProberTest, ATargetThatRefusesIsReportedNotFatal) {
  EchoServer live;
  // A port nobody listens on: the kernel answers ICMP port unreachable, which the connected
  // socket reports as ECONNREFUSED.
  UniqueFd closed(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(closed.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(::getsockname(closed.get(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  const uint16_t port = ntohs(address.sin_port);
  closed.reset();

  UdpProber prober(
      {target("live", live.target()), target("closed", "127.0.0.1:" + std::to_string(port))},
      {.interval = absl::Milliseconds(1), .count = 50, .linger = absl::Milliseconds(300)});
  absl::StatusOr<ProbeReport> report = prober.run();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->targets[0].received, 50u);
  EXPECT_EQ(report->targets[1].sent, 50u);
  EXPECT_EQ(report->targets[1].received, 0u);
  EXPECT_EQ(report->targets[1].lost(), 50u);
  EXPECT_FALSE(report->allAnswered());
}

TEST(UdpProberTest, StopsWhenTheStopFdIsReadable) {
  EchoServer server;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  UdpProber prober({target("s", server.target())},
                   {.interval = absl::Milliseconds(1), .linger = absl::Seconds(5)});
  // No duration and no count: only the stop fd ends it. Written once the first probe is out.
  absl::StatusOr<ProbeReport> report =
      prober.run(read_end.get(), [&] { ASSERT_EQ(::write(write_end.get(), "x", 1), 1); });
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_GE(report->targets[0].sent, 1u);
  EXPECT_EQ(report->targets[0].lost(), 0u);
}

TEST(UdpProberTest, NoTargetsIsAnError) {
  UdpProber prober({}, countedRun(1));
  EXPECT_THAT(prober.run().status().message(), HasSubstr("no targets"));
}

TEST(FormatReportTest, TextAndJson) {
  TargetStats stats;
  for (uint64_t i = 0; i < 4; ++i) stats.sent(i, ms(static_cast<double>(i)), true);
  stats.replied(0, ms(0), ms(0.25));
  stats.replied(3, ms(3), ms(3.25));
  ProbeReport report;
  report.elapsed = ms(3);
  report.targets.push_back(
      stats.report({.name = "vm-1", .address = "10.78.0.11", .port = 7}, ms(3)));
  TargetStats silent;
  silent.sent(0, ms(0), true);
  report.targets.push_back(
      silent.report({.name = "vm-2", .address = "10.78.0.12", .port = 7}, ms(3)));

  const std::string text = formatReportText(report);
  EXPECT_THAT(text, HasSubstr("TARGET"));
  EXPECT_THAT(text, HasSubstr("10.78.0.11:7"));
  EXPECT_THAT(text, HasSubstr("3.0ms"));  // vm-1's gap from 0.25 to 3.25
  EXPECT_THAT(text, HasSubstr("total"));

  const nlohmann::json json = nlohmann::json::parse(formatReportJson(report));
  EXPECT_EQ(json["targets"][0]["name"], "vm-1");
  EXPECT_EQ(json["targets"][0]["sent"], 4);
  EXPECT_EQ(json["targets"][0]["lost"], 2);
  EXPECT_DOUBLE_EQ(json["targets"][0]["longest_gap_ms"].get<double>(), 3.0);
  EXPECT_EQ(json["targets"][0]["longest_loss_run"], 2);
  EXPECT_EQ(json["targets"][1]["answered"], false);
  EXPECT_FALSE(json["targets"][1].contains("rtt_ms"));
  EXPECT_EQ(json["total"]["sent"], 5);
  EXPECT_EQ(json["total"]["lost"], 3);
  EXPECT_EQ(json["total"]["all_answered"], false);
}

}  // namespace
}  // namespace flotilla::probe
