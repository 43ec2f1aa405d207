// Live migration with devices in use, between two flotilla-vmm processes over loopback:
// a guest writing and verifying rounds on a virtio-blk disk that is an iSCSI LUN (shared
// storage: both VMMs log in to the same tgtd) keeps verifying at the target; a guest
// answering UDP echo on a NIC keeps answering after it moved from one tap to another on the
// same bridge (the target announces the MAC; the bridge also forgets the source's port when
// its tap loses its carrier, so the announcement itself is checked in the target's log, and
// on the wire by virtio_net_test); the same guest keeps answering when it moves three times
// (each hop sent by the VMM that received the one before: back to the first tap, then on to a
// third), with hundreds of frames through its rings before and after every hop and a flood of
// datagrams in flight during each switchover; a guest on a local raw-file disk moved by a cold
// migration with its disk keeps verifying at the target, whose new image holds the source's data
// and stays sparse.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/tap.h"
#include "tests/integration/vmm/migration_client.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::TempDir;
using ::flotilla::testing::TgtTarget;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kToken[] = "device-test-token";

grpc::Status migrate(VmmProcess& source, uint16_t port) {
  return sendMigration(source, port, {.token = kToken});
}

// One "host network" in `ns`: a bridge with the client's address 10.80.0.1/24, and `taps` as
// its ports.
absl::Status makeBridgedTaps(const NetNamespace& ns, const std::vector<std::string>& taps) {
  RETURN_IF_ERROR(ns.execChecked({"ip", "link", "add", "br0", "type", "bridge"}).status());
  RETURN_IF_ERROR(ns.setLinkUp("br0"));
  RETURN_IF_ERROR(ns.addAddress("br0", "10.80.0.1/24"));
  for (const std::string& tap : taps) {
    RETURN_IF_ERROR(ns.runInside([&tap] { return network::createPersistentTap(tap); }));
    RETURN_IF_ERROR(ns.execChecked({"ip", "link", "set", tap, "master", "br0"}).status());
    RETURN_IF_ERROR(ns.setLinkUp(tap));
  }
  return absl::OkStatus();
}

// Waits until the bridge port `tap` is in STP state `state` ("forwarding", "disabled").
//
// A migration target opens its tap only when the migration's configuration arrives, and
// announces the VM's MAC right after it resumed; the bridge enables the port only when the
// kernel's link watcher processes the tap's carrier (up to a second later) and drops what the
// port received before, announcements included. Until it also disables the source's port (the
// source closed its tap) and forgets what it learned there, it may still forward the VM's
// frames to the source's tap. Probes wait for both, not to lose the first one to the bridge.
absl::Status waitForPortState(const NetNamespace& ns, const std::string& tap,
                              const std::string& state) {
  const std::string wanted = fmt::format("\"state\":\"{}\"", state);
  std::string last;
  for (int i = 0; i < 500; ++i) {
    auto shown = ns.execChecked({"bridge", "-j", "link", "show", "dev", tap});
    if (!shown.ok()) return shown.status();
    if (shown->find(wanted) != std::string::npos) return absl::OkStatus();
    last = *shown;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      fmt::format("bridge port {} did not become {} within 10 s: {}", tap, state, last));
}

// flotilla-vmm with `args`, run inside `ns` (where its taps are).
absl::StatusOr<std::unique_ptr<VmmProcess>> startInside(const NetNamespace& ns,
                                                        const std::vector<std::string>& args,
                                                        const TempDir& dir,
                                                        const std::string& name) {
  std::vector<std::string> argv = {"netns", "exec", ns.name(), kVmm};
  argv.insert(argv.end(), args.begin(), args.end());
  return VmmProcess::start("/usr/sbin/ip", std::move(argv), dir, name);
}

// Sends `count` UDP echo probes one after the other (each waits for its answer, numbered from
// `sequence` on) and returns the numbers of those not answered, or of the first `count` when
// the guest stopped answering: it gives up after 5 unanswered probes in a row, instead of
// waiting 2 s for each of the others.
std::vector<int> unanswered(int socket, const std::string& ip, int count, int& sequence) {
  std::vector<int> missed;
  int missed_in_a_row = 0;
  for (int i = 0; i < count; ++i) {
    if (missed_in_a_row == 5) {
      missed.push_back(sequence++);
      continue;
    }
    const int probe = sequence++;
    if (::flotilla::testing::udpEchoed(socket, ip, probe, absl::Seconds(2))) {
      missed_in_a_row = 0;
    } else {
      missed.push_back(probe);
      ++missed_in_a_row;
    }
  }
  return missed;
}

// The NIC counters of the VMM's API (GetInfo), for failure messages.
std::string nicCounters(VmmProcess& vmm) {
  auto api = vmm.api();
  if (!api.ok()) return fmt::format("(no API: {})", api.status().message());
  grpc::ClientContext context;
  flotilla::v1::VmmInfo info;
  grpc::Status got = (*api)->GetInfo(&context, {}, &info);
  if (!got.ok()) return fmt::format("(GetInfo failed: {})", got.error_message());
  std::string text;
  for (const flotilla::v1::NicInfo& nic : info.nics()) {
    text += fmt::format("{}: rx_frames={} rx_dropped={} tx_frames={} tx_errors={}\n", nic.id(),
                        nic.rx_frames(), nic.rx_dropped(), nic.tx_frames(), nic.tx_errors());
  }
  return text;
}

// Datagrams to the guest's echo port from a socket of their own, back to back (a short pause
// after each, so that the tap's queue is not simply overrun), until destroyed: frames in the
// tap and in the guest's receive ring while a migration pauses the source and switches over.
// Their answers are never read.
class EchoFlood {
 public:
  EchoFlood(UniqueFd socket, const std::string& ip) : socket_(std::move(socket)) {
    guest_.sin_family = AF_INET;
    guest_.sin_port = htons(7);
    ::inet_pton(AF_INET, ip.c_str(), &guest_.sin_addr);
    thread_ = std::jthread([this](std::stop_token stop) {
      const std::string message = "flood";
      while (!stop.stop_requested()) {
        if (::sendto(socket_.get(), message.data(), message.size(), MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&guest_), sizeof(guest_)) > 0) {
          sent_.fetch_add(1);
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  ~EchoFlood() { thread_ = std::jthread(); }  // request stop and join before the socket goes
  uint64_t sent() const { return sent_.load(); }

 private:
  UniqueFd socket_;
  sockaddr_in guest_{};
  std::atomic<uint64_t> sent_{0};
  std::jthread thread_;
};

TEST(MigrationWithDevicesTest, DiskIoOnASharedIscsiLunContinuesAtTheTarget) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  TempDir dir;
  auto lun = dir.sparseFile("lun.img", uint64_t{32} << 20);
  ASSERT_TRUE(lun.ok()) << lun.status();
  auto tgt = TgtTarget::start(*lun);
  ASSERT_TRUE(tgt.ok()) << tgt.status();
  const std::string disk = "iscsi=" + (*tgt)->url();
  auto source =
      VmmProcess::start(kVmm,
                        {"--kernel", kGuest, "--memory", "256M", "--disk", disk, "--cmdline",
                         "workload=blk blk.mib=4 blk.loop=1 virtio.irq=1 "
                         "virtio.event_idx=1"},
                        dir, "source");
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2)).ok())
      << (*source)->serial() << (*source)->log();
  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  auto target = VmmProcess::start(kVmm,
                                  {"--incoming", fmt::format("tcp:127.0.0.1:{}", *port),
                                   "--migration-token", kToken, "--memory", "256M", "--disk", disk},
                                  dir, "target");
  ASSERT_TRUE(target.ok()) << target.status();
  expectListening(**target);
  grpc::Status sent = migrate(**source, *port);
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  auto exit = (*source)->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << (*source)->log() << (*target)->log();
  EXPECT_EQ(exit->code, 0) << (*source)->log();
  // Every round the guest writes and then verifies: two more rounds at the target, with no
  // error, mean the disk holds what the source's guest wrote and in-flight I/O was not lost.
  auto more = (*target)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2));
  ASSERT_TRUE(more.ok()) << more.status() << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("error"))) << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("ready"))) << "the guest continued, it did not boot";
  ASSERT_TRUE((*target)->process().terminate(absl::Seconds(10)).ok());
}

TEST(MigrationWithDevicesTest, ColdMigrationMovesALocalDiskAndItsGuestVerifiesOn) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  TempDir dir;
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  auto source_disk = dir.sparseFile("source.img", 32 * kMiB);
  ASSERT_TRUE(source_disk.ok()) << source_disk.status();
  // Data the guest never touches (its workload uses the first 4 MiB): it must arrive as it is.
  {
    const int fd = ::open(source_disk->c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::string pattern(kMiB, '\0');
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 7 + i / 4096);
    ASSERT_EQ(::pwrite(fd, pattern.data(), pattern.size(), 16 * kMiB),
              static_cast<ssize_t>(pattern.size()));
    ASSERT_EQ(::pwrite(fd, "end", 3, 32 * kMiB - 3), 3);
    ::close(fd);
  }
  const std::string target_disk = dir.file("target.img");  // made by the migration
  auto source = VmmProcess::start(
      kVmm,
      {"--kernel", kGuest, "--memory", "256M", "--disk", "path=" + *source_disk, "--cmdline",
       "workload=blk blk.mib=4 blk.loop=1 virtio.irq=1 virtio.event_idx=1"},
      dir, "source");
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2)).ok())
      << (*source)->serial() << (*source)->log();
  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  auto target =
      VmmProcess::start(kVmm,
                        {"--incoming", fmt::format("tcp:127.0.0.1:{}", *port), "--migration-token",
                         kToken, "--memory", "256M", "--disk", "path=" + target_disk},
                        dir, "target");
  ASSERT_TRUE(target.ok()) << target.status();
  expectListening(**target);
  grpc::Status sent =
      sendMigration(**source, *port, {.token = kToken, .cold = true, .with_disks = true});
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  auto exit = (*source)->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << (*source)->log() << (*target)->log();
  EXPECT_EQ(exit->code, 0) << (*source)->log() << (*target)->log();
  EXPECT_THAT((*source)->log(), HasSubstr("disk 0 (" + *source_disk + ")"));
  // Two more write-and-verify rounds on the new image, no error, no reboot.
  auto more = (*target)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2));
  ASSERT_TRUE(more.ok()) << more.status() << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("error"))) << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("ready"))) << "the guest continued, it did not boot";
  auto api = (*target)->api();
  ASSERT_TRUE(api.ok());
  grpc::ClientContext context;
  flotilla::v1::MigrationStatus status;
  ASSERT_TRUE((*api)->MigrateStatus(&context, {}, &status).ok());
  EXPECT_GT(status.disk_bytes(), kMiB);
  ASSERT_TRUE((*target)->process().terminate(absl::Seconds(10)).ok());
  // Beyond what the guest writes, the images are the same; the holes stayed holes.
  auto source_bytes = readFileToString(*source_disk, 64 * kMiB);
  auto target_bytes = readFileToString(target_disk, 64 * kMiB);
  ASSERT_TRUE(source_bytes.ok() && target_bytes.ok());
  ASSERT_EQ(target_bytes->size(), 32 * kMiB);
  EXPECT_TRUE(source_bytes->compare(4 * kMiB, std::string::npos, *target_bytes, 4 * kMiB,
                                    std::string::npos) == 0)
      << "the data past the guest's 4 MiB differs";
  struct stat info {};
  ASSERT_EQ(::stat(target_disk.c_str(), &info), 0);
  EXPECT_LT(static_cast<uint64_t>(info.st_blocks) * 512, 8 * kMiB) << "the image stayed sparse";
}

TEST(MigrationWithDevicesTest, NicAnswersFromItsNewTapAfterTheMigration) {
  ASSERT_TRUE(::flotilla::testing::requireRoot("taps and network namespaces").ok());
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  auto ns = NetNamespace::create("vmig");
  ASSERT_TRUE(ns.ok()) << ns.status();
  // One "host network": a bridge with the client's address, the source's and the target's
  // taps as its ports.
  absl::Status bridged = makeBridgedTaps(**ns, {"tapa", "tapb"});
  ASSERT_TRUE(bridged.ok()) << bridged;
  TempDir dir;
  const std::string mac = "52:54:00:4d:00:01";
  auto source = startInside(
      **ns,
      {"--kernel", kGuest, "--memory", "128M", "--net", fmt::format("tap=tapa,mac={}", mac),
       "--cmdline", "workload=net net.ip=10.80.0.2/24 virtio.irq=1 virtio.event_idx=1"},
      dir, "source");
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->waitForSerial("net up", absl::Minutes(1)).ok()) << (*source)->log();
  auto socket = (*ns)->udpSocket();
  ASSERT_TRUE(socket.ok()) << socket.status();
  int sequence = 0;
  bool first = false;
  for (int attempt = 0; attempt < 20 && !first; ++attempt) {
    first = ::flotilla::testing::udpEchoed(socket->get(), "10.80.0.2", sequence++,
                                           absl::Milliseconds(500));
  }
  ASSERT_TRUE(first) << "no UDP echo before the migration" << (*source)->log();

  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  auto target =
      startInside(**ns,
                  {"--incoming", fmt::format("tcp:127.0.0.1:{}", *port), "--migration-token",
                   kToken, "--memory", "128M", "--net", fmt::format("tap=tapb,mac={}", mac)},
                  dir, "target");
  ASSERT_TRUE(target.ok()) << target.status();
  expectListening(**target);
  grpc::Status sent = migrate(**source, *port);
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  auto exit = (*source)->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << (*source)->log() << (*target)->log();
  EXPECT_EQ(exit->code, 0) << (*source)->log();
  EXPECT_THAT((*target)->log(), HasSubstr("announced 1 NICs"));
  for (const auto& [tap, state] :
       {std::pair{"tapb", "forwarding"}, std::pair{"tapa", "disabled"}}) {
    absl::Status bridge_port = waitForPortState(**ns, tap, state);
    ASSERT_TRUE(bridge_port.ok()) << bridge_port;
  }
  // Echoes come back through tapb.
  const int from = sequence;
  EXPECT_THAT(unanswered(socket->get(), "10.80.0.2", 20, sequence), IsEmpty())
      << "probes from " << from << " on\n"
      << nicCounters(**target) << (*target)->log();
  EXPECT_THAT((*target)->serial(), Not(HasSubstr("error")));
  EXPECT_THAT((*target)->serial(), Not(HasSubstr("net up"))) << "it continued, it did not boot";
  ASSERT_TRUE((*target)->process().terminate(absl::Seconds(10)).ok());
}

// The demo's failure (docs/demo.md, "State"): host-1 -> host-2, then back to host-1 (each hop
// sent by the VMM that received the one before), then on to host-3. Every target asks the
// guest to announce itself, which the guest acknowledges on its control queue: the second hop
// is the second command on that queue.
TEST(MigrationWithDevicesTest, NicAnswersAfterMigratingTwice) {
  ASSERT_TRUE(::flotilla::testing::requireRoot("taps and network namespaces").ok());
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  auto ns = NetNamespace::create("vmig2");
  ASSERT_TRUE(ns.ok()) << ns.status();
  absl::Status bridged = makeBridgedTaps(**ns, {"tapa", "tapb", "tapc"});
  ASSERT_TRUE(bridged.ok()) << bridged;
  TempDir dir;
  const std::string mac = "52:54:00:4d:00:02";
  const std::string ip = "10.80.0.2";
  // More echoes per phase than the rings have entries (256): every ring index wraps between
  // two hops.
  constexpr int kEchoes = 300;
  auto vmm = startInside(
      **ns,
      {"--kernel", kGuest, "--memory", "128M", "--net", fmt::format("tap=tapa,mac={}", mac),
       "--cmdline", "workload=net net.ip=10.80.0.2/24 virtio.irq=1 virtio.event_idx=1"},
      dir, "host-1");
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  std::unique_ptr<VmmProcess> current = std::move(*vmm);
  ASSERT_TRUE(current->waitForSerial("net up", absl::Minutes(1)).ok()) << current->log();
  auto socket = (*ns)->udpSocket();
  ASSERT_TRUE(socket.ok()) << socket.status();
  int sequence = 0;
  bool first = false;
  for (int attempt = 0; attempt < 20 && !first; ++attempt) {
    first = ::flotilla::testing::udpEchoed(socket->get(), ip, sequence++, absl::Milliseconds(500));
  }
  ASSERT_TRUE(first) << "no UDP echo before the migrations" << current->log();
  const int before = sequence;
  ASSERT_THAT(unanswered(socket->get(), ip, kEchoes, sequence), IsEmpty())
      << "probes from " << before << " on, before the migrations" << current->log();

  struct Hop {
    const char* tap;
    const char* host;
  };
  const char* source_tap = "tapa";
  for (const Hop& hop :
       {Hop{"tapb", "host-2"}, Hop{"tapa", "host-1-again"}, Hop{"tapc", "host-3"}}) {
    SCOPED_TRACE(fmt::format("the migration to {} (tap {})", hop.host, hop.tap));
    auto port = ::flotilla::testing::pickFreePort();
    ASSERT_TRUE(port.ok());
    auto target = startInside(
        **ns,
        {"--incoming", fmt::format("tcp:127.0.0.1:{}", *port), "--migration-token", kToken,
         "--memory", "128M", "--net", fmt::format("tap={},mac={}", hop.tap, mac)},
        dir, hop.host);
    ASSERT_TRUE(target.ok()) << target.status();
    expectListening(**target);
    {
      auto flood_socket = (*ns)->udpSocket();
      ASSERT_TRUE(flood_socket.ok()) << flood_socket.status();
      EchoFlood flood(std::move(*flood_socket), ip);
      grpc::Status sent = migrate(*current, *port);
      ASSERT_TRUE(sent.ok()) << sent.error_message() << current->log() << (*target)->log();
      auto exit = current->wait(absl::Minutes(1));
      ASSERT_TRUE(exit.ok()) << exit.status() << current->log() << (*target)->log();
      EXPECT_EQ(exit->code, 0) << current->log();
      EXPECT_GT(flood.sent(), 0u);
    }
    current = std::move(*target);
    EXPECT_THAT(current->log(), HasSubstr("announced 1 NICs"));
    for (const auto& [tap, state] :
         {std::pair{hop.tap, "forwarding"}, std::pair{source_tap, "disabled"}}) {
      absl::Status bridge_port = waitForPortState(**ns, tap, state);
      ASSERT_TRUE(bridge_port.ok()) << bridge_port;
    }
    source_tap = hop.tap;
    // The guest acknowledges the announcement on its control queue, then goes on answering.
    // The target announces 5 times within 500 ms (a switch port that came up late still
    // learns the MAC): the guest acknowledges each.
    auto announced =
        current->waitForSerialCount("net announce garp=1 ack=ok", 5, absl::Seconds(30));
    EXPECT_TRUE(announced.ok()) << announced.status() << current->serial() << current->log();
    const int from = sequence;
    EXPECT_THAT(unanswered(socket->get(), ip, kEchoes, sequence), IsEmpty())
        << "probes from " << from << " on\n"
        << nicCounters(*current) << current->serial() << current->log();
    EXPECT_THAT(current->serial(), Not(HasSubstr("error")));
    EXPECT_THAT(current->serial(), Not(HasSubstr("net up"))) << "it continued, it did not boot";
  }
  ASSERT_TRUE(current->process().terminate(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace flotilla::vmm
