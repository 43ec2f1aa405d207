// The virtio devices of both VMMs under the same guest: block I/O with the guest's blk-bench
// workload on one backing file (first as a raw file, then served by a local tgtd as an iSCSI
// LUN that both VMMs reach through libiscsi), and network round trips with its net workload
// on one persistent tap in a network namespace, a UDP client in the namespace playing
// ping-pong with it. Every run boots a fresh VMM; runs alternate between the VMMs.
//
// The guest drives the devices as Linux does: indirect descriptors, EVENT_IDX and
// interrupts (virtio.irq=1). It times its own block I/O with the TSC (the figure it prints);
// the round trips are counted by the client.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/strings/numbers.h"
#include "bench/benchmarks.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "network/tap.h"
#include "tests/support/netns.h"
#include "tests/support/tgt_target.h"

namespace flotilla::bench {
namespace {

constexpr uint64_t kDiskMib = 256;
constexpr uint64_t kRegionMib = 64;  // bench.mib: every pattern works within it
constexpr absl::Duration kBootTimeout = absl::Seconds(30);
constexpr absl::Duration kRunSlack = absl::Seconds(60);  // beyond bench.seconds
constexpr char kTap[] = "vbtap0";
constexpr char kHostAddress[] = "10.78.0.1/24";
constexpr char kGuestIp[] = "10.78.0.2";
constexpr char kGuestMac[] = "52:54:00:be:4c:01";
constexpr uint16_t kEchoPort = 7;

enum class Vmm { kFlotilla, kQemu };

const char* nameOf(Vmm vmm) {
  return vmm == Vmm::kFlotilla ? "Flotilla" : "QEMU";
}

Samples& samplesOf(Row& row, Vmm vmm) {
  return vmm == Vmm::kFlotilla ? row.flotilla : row.qemu;
}

// The two orders of one iteration: neither VMM always runs first.
std::vector<Vmm> orderFor(int iteration) {
  if (iteration % 2 == 0) return {Vmm::kFlotilla, Vmm::kQemu};
  return {Vmm::kQemu, Vmm::kFlotilla};
}

absl::StatusOr<std::unique_ptr<LaunchedVmm>> launch(const BenchContext& context, Vmm vmm,
                                                    const GuestSpec& guest,
                                                    const std::vector<std::string>& prefix = {}) {
  std::vector<std::string> argv = prefix;
  std::vector<std::string> command = vmm == Vmm::kFlotilla
                                         ? flotillaBootCommand(context.programs, guest, "")
                                         : qemuCommand(context.programs, guest, "", "");
  argv.insert(argv.end(), command.begin(), command.end());
  return LaunchedVmm::spawn(nameOf(vmm), std::move(argv));
}

// The backing file: kDiskMib MiB, the first kRegionMib written with random bytes (reads of a
// sparse file's holes cost the host nothing) and in the page cache for both VMMs alike.
absl::StatusOr<std::string> makeDisk(const testing::TempDir& dir) {
  ASSIGN_OR_RETURN(std::string path, dir.sparseFile("virtio-bench.img", kDiskMib << 20));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("opening {}", path));
  std::mt19937_64 random(42);
  std::vector<uint64_t> chunk((1 << 20) / sizeof(uint64_t));
  for (uint64_t mib = 0; mib < kRegionMib; ++mib) {
    for (uint64_t& word : chunk) word = random();
    const size_t bytes = chunk.size() * sizeof(uint64_t);
    if (::pwrite(fd.get(), chunk.data(), bytes, static_cast<off_t>(mib << 20)) !=
        static_cast<ssize_t>(bytes)) {
      return errnoStatus(errno, fmt::format("writing {}", path));
    }
  }
  return path;
}

struct BlockPattern {
  Row* row;
  std::string options;  // blk-bench's
  bool mbps;            // the row shows MB/s (else thousands of IOPS)
};

// One blk-bench run: the figure the guest printed.
absl::StatusOr<double> blockRun(const BenchContext& context, Vmm vmm, const std::string& disk,
                                bool iscsi, const BlockPattern& pattern) {
  GuestSpec guest;
  guest.cmdline =
      fmt::format("workload=blk-bench {} bench.mib={} bench.seconds={} {}", pattern.options,
                  kRegionMib, context.virtio_seconds, kVirtioGuestOptions);
  guest.flotilla_devices = {"--disk", fmt::format("{}={}", iscsi ? "iscsi" : "path", disk)};
  guest.qemu_devices = {"-drive", fmt::format("file={},format=raw,if=none,id=d0", disk), "-device",
                        "virtio-blk-device,drive=d0"};
  ASSIGN_OR_RETURN(std::unique_ptr<LaunchedVmm> launched, launch(context, vmm, guest));
  auto result = launched->console().waitFor(
      [](const std::string& line) {
        return line.find("flotilla-guest: blk-bench pattern=") != std::string::npos ||
               isGuestError(line);
      },
      kBootTimeout + absl::Seconds(context.virtio_seconds) + kRunSlack);
  if (!result.ok()) return launched->explain(result.status());
  const std::string& line = launched->console().lines()[*result].text;
  if (isGuestError(line)) {
    return launched->explain(absl::InternalError(fmt::format("the guest failed: {}", line)));
  }
  const std::string key = pattern.mbps ? " mbps=" : " iops=";
  const size_t at = line.find(key);
  double value = 0;
  if (at == std::string::npos ||
      !absl::SimpleAtod(line.substr(at + key.size(), line.find(' ', at + 1) - at - key.size()),
                        &value)) {
    return launched->explain(
        absl::InternalError(fmt::format("no{}N in the guest's result: {}", key, line)));
  }
  if (context.verbose) fmt::print(stderr, "  {} {}: {}\n", nameOf(vmm), pattern.row->label, line);
  return pattern.mbps ? value : value / 1000;
}

absl::Status runBlockPatterns(const BenchContext& context, const std::string& disk, bool iscsi,
                              const std::vector<BlockPattern>& patterns) {
  for (int iteration = 0; iteration < context.virtio_iterations; ++iteration) {
    for (const BlockPattern& pattern : patterns) {
      for (Vmm vmm : orderFor(iteration)) {
        ASSIGN_OR_RETURN(double value, blockRun(context, vmm, disk, iscsi, pattern));
        samplesOf(*pattern.row, vmm).add(value);
      }
    }
  }
  return absl::OkStatus();
}

// Sends datagram `sequence` to the guest and waits up to `timeout` for its echo; false when
// none came. Echoes of earlier datagrams (late ones) are skipped.
absl::StatusOr<bool> echoOnce(int fd, uint64_t sequence, absl::Duration timeout) {
  char message[64] = {};
  std::memcpy(message, &sequence, sizeof(sequence));
  if (::send(fd, message, sizeof(message), 0) != static_cast<ssize_t>(sizeof(message))) {
    return errnoStatus(errno, "sending a UDP datagram to the guest");
  }
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  while (true) {
    const absl::Duration left = deadline - systemClock().monotonicNow();
    if (left <= absl::ZeroDuration()) return false;
    pollfd readable{fd, POLLIN, 0};
    const int ready = ::poll(&readable, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno != EINTR) return errnoStatus(errno, "poll on the UDP socket");
    if (ready <= 0) continue;
    char reply[128];
    const ssize_t n = ::recv(fd, reply, sizeof(reply), 0);
    if (n < 0 && errno != EINTR && errno != ECONNREFUSED) {
      return errnoStatus(errno, "receiving the guest's UDP echo");
    }
    uint64_t echoed = 0;
    if (n == static_cast<ssize_t>(sizeof(message))) std::memcpy(&echoed, reply, sizeof(echoed));
    if (n == static_cast<ssize_t>(sizeof(message)) && echoed == sequence) return true;
  }
}

// One net run: the guest's NIC on the namespace's tap, UDP ping-pong for virtio_seconds.
absl::StatusOr<double> echoRun(const BenchContext& context, Vmm vmm,
                               const testing::NetNamespace& ns) {
  GuestSpec guest;
  guest.memory = "128M";
  guest.cmdline = fmt::format("workload=net net.ip={}/24 {}", kGuestIp, kVirtioGuestOptions);
  guest.flotilla_devices = {"--net", fmt::format("tap={},mac={}", kTap, kGuestMac)};
  guest.qemu_devices = {"-netdev", fmt::format("tap,id=n0,ifname={},script=no,downscript=no", kTap),
                        "-device", fmt::format("virtio-net-device,netdev=n0,mac={}", kGuestMac)};
  // `ip netns exec` execs the VMM (same PID): it opens the tap inside the namespace.
  ASSIGN_OR_RETURN(std::unique_ptr<LaunchedVmm> launched,
                   launch(context, vmm, guest, {"ip", "netns", "exec", ns.name()}));
  auto up = launched->console().waitForText("flotilla-guest: net up", kBootTimeout);
  if (!up.ok()) return launched->explain(up.status());

  ASSIGN_OR_RETURN(UniqueFd socket, ns.udpSocket());
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(kEchoPort);
  if (::inet_pton(AF_INET, kGuestIp, &address.sin_addr) != 1) {
    return absl::InternalError("bad guest address");
  }
  if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return errnoStatus(errno, "connecting the UDP socket to the guest");
  }
  // The first echo also resolves the guest's MAC (ARP).
  uint64_t sequence = 0;
  bool answered = false;
  for (int attempt = 0; attempt < 10 && !answered; ++attempt) {
    ASSIGN_OR_RETURN(answered, echoOnce(socket.get(), ++sequence, absl::Seconds(1)));
  }
  if (!answered) {
    return launched->explain(absl::DeadlineExceededError(
        fmt::format("the guest at {} did not echo UDP within 10 s", kGuestIp)));
  }
  const absl::Duration start = systemClock().monotonicNow();
  const absl::Duration end = start + absl::Seconds(context.virtio_seconds);
  uint64_t round_trips = 0;
  uint64_t lost = 0;
  while (systemClock().monotonicNow() < end) {
    ASSIGN_OR_RETURN(bool echoed, echoOnce(socket.get(), ++sequence, absl::Seconds(1)));
    echoed ? ++round_trips : ++lost;
  }
  const double seconds = absl::ToDoubleSeconds(systemClock().monotonicNow() - start);
  if (lost * 100 > round_trips + lost) {
    return launched->explain(absl::DataLossError(
        fmt::format("{} of {} UDP datagrams got no echo", lost, round_trips + lost)));
  }
  const double rate = static_cast<double>(round_trips) / seconds;
  if (context.verbose) {
    fmt::print(stderr, "  {} UDP echo: {} round trips in {:.2f} s ({} lost)\n", nameOf(vmm),
               round_trips, seconds, lost);
  }
  return rate / 1000;
}

absl::Status runEcho(const BenchContext& context, Row& row) {
  RETURN_IF_ERROR(testing::requireRoot("the UDP echo benchmark's network namespace and tap"));
  ASSIGN_OR_RETURN(std::unique_ptr<testing::NetNamespace> ns,
                   testing::NetNamespace::create("vbench"));
  // One persistent tap for both VMMs; it goes away with the namespace.
  RETURN_IF_ERROR(ns->runInside([] { return network::createPersistentTap(kTap); }));
  RETURN_IF_ERROR(ns->setLinkUp(kTap));
  RETURN_IF_ERROR(ns->addAddress(kTap, kHostAddress));
  for (int iteration = 0; iteration < context.virtio_iterations; ++iteration) {
    for (Vmm vmm : orderFor(iteration)) {
      ASSIGN_OR_RETURN(double value, echoRun(context, vmm, *ns));
      samplesOf(row, vmm).add(value);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VirtioResults> runVirtioBenchmark(const BenchContext& context) {
  VirtioResults results;
  ASSIGN_OR_RETURN(std::string disk, makeDisk(*context.dir));
  const BlockPattern randread_qd1 = {nullptr, "bench.pattern=randread bench.qd=1", false};
  const BlockPattern randread_qd32 = {nullptr, "bench.pattern=randread bench.qd=32", false};
  const BlockPattern seqread = {nullptr, "bench.pattern=seqread bench.bs=1048576 bench.qd=4", true};
  const BlockPattern seqwrite = {nullptr, "bench.pattern=seqwrite bench.bs=1048576 bench.qd=4",
                                 true};
  auto with = [](BlockPattern pattern, Row& row) {
    pattern.row = &row;
    return pattern;
  };
  RETURN_IF_ERROR(annotate(
      runBlockPatterns(context, disk, false,
                       {with(randread_qd1, results.raw_randread_qd1),
                        with(randread_qd32, results.raw_randread_qd32),
                        with(seqread, results.raw_seqread), with(seqwrite, results.raw_seqwrite)}),
      "raw file"));
  {
    ASSIGN_OR_RETURN(std::unique_ptr<testing::TgtTarget> target, testing::TgtTarget::start(disk));
    RETURN_IF_ERROR(annotate(runBlockPatterns(context, target->url(), true,
                                              {with(randread_qd1, results.iscsi_randread_qd1),
                                               with(randread_qd32, results.iscsi_randread_qd32),
                                               with(seqread, results.iscsi_seqread)}),
                             fmt::format("iSCSI LUN {} (tgtd)", target->url())));
  }
  RETURN_IF_ERROR(annotate(runEcho(context, results.udp_echo), "UDP echo"));
  return results;
}

}  // namespace flotilla::bench
