// flotilla-vmm's virtio-net with the test guest's net workload on taps in network namespaces
// the test creates: the guest answers ARP, ping and UDP echo from the namespace, with
// offloads on and off, and the VMM announces the NIC (RARP) on request; two VMs on an Open
// vSwitch bridge (userspace datapath) answer a client namespace; a VM snapshotted and
// restored in a new process keeps answering.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/announce.h"
#include "network/mac_address.h"
#include "network/tap.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::OvsInstance;
using ::flotilla::testing::TempDir;
using ::flotilla::testing::VethPair;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kMac[] = "52:54:00:4e:00:01";

// flotilla-vmm with `args` inside `ns`: `ip netns exec` execs it (same PID), so that it opens
// its tap there.
absl::StatusOr<std::unique_ptr<VmmProcess>> startInNamespace(const NetNamespace& ns,
                                                             const TempDir& dir,
                                                             const std::string& name,
                                                             std::vector<std::string> args) {
  std::vector<std::string> argv = {"netns", "exec", ns.name(), kVmm};
  argv.insert(argv.end(), args.begin(), args.end());
  return VmmProcess::start("/usr/sbin/ip", std::move(argv), dir, name);
}

// A persistent tap in `ns`, up (it outlives the VMMs attached to it, as the agent's taps do,
// and goes away with the namespace).
absl::Status persistentTap(const NetNamespace& ns, const std::string& name) {
  RETURN_IF_ERROR(ns.runInside([&] { return network::createPersistentTap(name); }));
  return ns.setLinkUp(name);
}

// Sends `count` UDP datagrams from a socket in `ns` to `ip`:7 and checks that each comes back
// unchanged. The first is sent again every 500 ms until answered or `first_timeout` passed
// (ARP, a guest that is still starting or being restored); the others get 10 s each.
absl::Status udpEchoes(const NetNamespace& ns, const std::string& ip, int count,
                       absl::Duration first_timeout = absl::Seconds(10)) {
  ASSIGN_OR_RETURN(UniqueFd socket, ns.udpSocket());
  sockaddr_in guest{};
  guest.sin_family = AF_INET;
  guest.sin_port = htons(7);
  if (::inet_pton(AF_INET, ip.c_str(), &guest.sin_addr) != 1) {
    return absl::InvalidArgumentError(fmt::format("bad address {}", ip));
  }
  for (int i = 0; i < count; ++i) {
    const std::string message = fmt::format("echo {} to {}", i, ip);
    const int attempts =
        i == 0 ? std::max<int>(1, static_cast<int>(first_timeout / absl::Milliseconds(500))) : 1;
    const int wait_ms = i == 0 ? 500 : 10000;
    bool echoed = false;
    for (int attempt = 0; attempt < attempts && !echoed; ++attempt) {
      if (::sendto(socket.get(), message.data(), message.size(), 0,
                   reinterpret_cast<const sockaddr*>(&guest),
                   sizeof(guest)) != static_cast<ssize_t>(message.size())) {
        return absl::InternalError(fmt::format("sendto {}: {}", ip, std::strerror(errno)));
      }
      pollfd readable{socket.get(), POLLIN, 0};
      while (!echoed && ::poll(&readable, 1, wait_ms) == 1) {
        char reply[256];
        const ssize_t n = ::recv(socket.get(), reply, sizeof(reply), 0);
        echoed = std::string(reply, static_cast<size_t>(std::max<ssize_t>(n, 0))) == message;
      }
    }
    if (!echoed) {
      return absl::DeadlineExceededError(
          fmt::format("no UDP echo from {} for datagram {} of {}", ip, i, count));
    }
  }
  return absl::OkStatus();
}

absl::Status ping(const NetNamespace& ns, const std::string& ip) {
  ASSIGN_OR_RETURN(CommandResult result, ns.exec({"ping", "-c", "3", "-i", "0.2", "-W", "5", ip}));
  if (result.status.code != 0) {
    return absl::UnavailableError(
        fmt::format("ping {} from {}: {}{}", ip, ns.name(), result.out, result.err));
  }
  return absl::OkStatus();
}

class VirtioNetWorkloadTest : public ::testing::TestWithParam<const char*> {};

TEST_P(VirtioNetWorkloadTest, GuestAnswersPingAndUdpEchoFromANamespace) {
  ASSERT_TRUE(::flotilla::testing::requireRoot("taps and network namespaces").ok());
  auto ns = NetNamespace::create("vnet");
  ASSERT_TRUE(ns.ok()) << ns.status();
  TempDir dir;
  // The VMM runs inside the namespace (ip netns exec execs it: same PID) and creates its tap
  // there; the tap goes away with the VMM and the namespace.
  auto vmm =
      VmmProcess::start("/usr/sbin/ip",
                        {"netns", "exec", (*ns)->name(), kVmm, "--kernel", kGuest, "--memory",
                         "128M", "--net", fmt::format("tap=ftap0,mac={}{}", kMac, GetParam()),
                         "--cmdline", "workload=net net.ip=10.77.0.2/24"},
                        dir, "net");
  ASSERT_TRUE(vmm.ok()) << vmm.status();
  // The whole "net up mac=..." prefix: the serial arrives byte by byte, and a wait for "net up"
  // alone can return with the MAC only partly written.
  auto up = (*vmm)->waitForSerial(fmt::format("net up mac={}", kMac), absl::Minutes(1));
  ASSERT_TRUE(up.ok()) << up.status() << (*vmm)->log();
  ASSERT_TRUE((*ns)->setLinkUp("ftap0").ok());
  ASSERT_TRUE((*ns)->addAddress("ftap0", "10.77.0.1/24").ok());

  auto ping = (*ns)->exec({"ping", "-c", "3", "-i", "0.2", "-W", "5", "10.77.0.2"});
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->status.code, 0) << ping->out << ping->err << (*vmm)->log();

  auto socket = (*ns)->udpSocket();
  ASSERT_TRUE(socket.ok()) << socket.status();
  sockaddr_in guest{};
  guest.sin_family = AF_INET;
  guest.sin_port = htons(7);
  ASSERT_EQ(::inet_pton(AF_INET, "10.77.0.2", &guest.sin_addr), 1);
  for (int i = 0; i < 20; ++i) {
    const std::string message = fmt::format("echo {}", i);
    ASSERT_EQ(::sendto(socket->get(), message.data(), message.size(), 0,
                       reinterpret_cast<const sockaddr*>(&guest), sizeof(guest)),
              static_cast<ssize_t>(message.size()));
    pollfd readable{socket->get(), POLLIN, 0};
    ASSERT_EQ(::poll(&readable, 1, 10000), 1) << "no UDP echo for datagram " << i;
    char reply[256];
    const ssize_t n = ::recv(socket->get(), reply, sizeof(reply), 0);
    ASSERT_EQ(std::string(reply, static_cast<size_t>(std::max<ssize_t>(n, 0))), message);
  }

  // Announce: the VMM sends a RARP for the NIC's MAC on the tap.
  auto capture = (*ns)->packetSocket("ftap0");
  ASSERT_TRUE(capture.ok()) << capture.status();
  auto api = (*vmm)->api();
  ASSERT_TRUE(api.ok()) << api.status();
  flotilla::v1::AnnounceResponse announced;
  grpc::ClientContext context;
  ASSERT_TRUE((*api)->Announce(&context, {}, &announced).ok());
  EXPECT_EQ(announced.nics(), 1u);
  auto mac = network::MacAddress::parse(kMac);
  ASSERT_TRUE(mac.ok());
  bool seen = false;
  for (int i = 0; i < 50 && !seen; ++i) {
    pollfd readable{capture->get(), POLLIN, 0};
    if (::poll(&readable, 1, 200) != 1) continue;
    uint8_t frame[2048];
    const ssize_t n = ::recv(capture->get(), frame, sizeof(frame), 0);
    if (n > 0) seen = network::isAnnouncementFor({frame, static_cast<size_t>(n)}, *mac);
  }
  EXPECT_TRUE(seen) << "no RARP/gratuitous ARP for " << kMac << " on the tap";
  ASSERT_TRUE((*vmm)->process().terminate(absl::Seconds(10)).ok());
}

// Two VMs on taps that are access ports of one Open vSwitch bridge (userspace datapath, in
// the "host" namespace), and a client namespace attached to the bridge by a veth: the client
// pings and UDP-echoes both guests, and the bridge learned both MACs on the VMs' ports.
TEST(VirtioNetOvsTest, TwoVmsOnAnOvsBridgeAnswerAClientNamespace) {
  ASSERT_TRUE(::flotilla::testing::requireRoot("taps, network namespaces and OVS").ok());
  auto host = NetNamespace::create("ovsh");
  ASSERT_TRUE(host.ok()) << host.status();
  auto client = NetNamespace::create("ovsc");
  ASSERT_TRUE(client.ok()) << client.status();
  auto ovs = OvsInstance::start({.ns = host->get()});
  ASSERT_TRUE(ovs.ok()) << ovs.status();
  ASSERT_TRUE((*ovs)->addBridge("br0").ok()) << (*ovs)->logTail();
  auto uplink = VethPair::create({.ns = host->get(), .name = "uplink"},
                                 {.ns = client->get(), .name = "eth0", .cidr = "10.79.0.1/24"});
  ASSERT_TRUE(uplink.ok()) << uplink.status();
  // The userspace datapath does not complete checksums a veth left to offloads.
  ASSERT_TRUE(::flotilla::testing::disableInterfaceOffloads(host->get(), "uplink").ok());
  ASSERT_TRUE(::flotilla::testing::disableInterfaceOffloads(client->get(), "eth0").ok());
  constexpr uint16_t kVlan = 100;
  ASSERT_TRUE((*ovs)->addPort("br0", "uplink", kVlan).ok()) << (*ovs)->logTail();

  struct Vm {
    std::string tap, mac, ip, options;
  };
  // One guest polls its queues, the other takes interrupts with EVENT_IDX.
  const std::vector<Vm> vms = {
      {"vm1", "52:54:00:4f:00:01", "10.79.0.2", ""},
      {"vm2", "52:54:00:4f:00:02", "10.79.0.3", " virtio.irq=1 virtio.event_idx=1"}};
  TempDir dir;
  std::vector<std::unique_ptr<VmmProcess>> vmms;
  for (const Vm& vm : vms) {
    ASSERT_TRUE(persistentTap(**host, vm.tap).ok());
    ASSERT_TRUE((*ovs)->addPort("br0", vm.tap, kVlan).ok()) << (*ovs)->logTail();
    auto vmm = startInNamespace(**host, dir, vm.tap,
                                {"--kernel", kGuest, "--memory", "128M", "--net",
                                 fmt::format("tap={},mac={}", vm.tap, vm.mac), "--cmdline",
                                 fmt::format("workload=net net.ip={}/24{}", vm.ip, vm.options)});
    ASSERT_TRUE(vmm.ok()) << vmm.status();
    vmms.push_back(std::move(*vmm));
  }
  for (auto& vmm : vmms) {
    auto up = vmm->waitForSerial("net up", absl::Minutes(1));
    ASSERT_TRUE(up.ok()) << up.status() << vmm->log();
  }
  for (const Vm& vm : vms) {
    absl::Status pinged = ping(**client, vm.ip);
    EXPECT_TRUE(pinged.ok()) << pinged << (*ovs)->logTail();
    absl::Status echoed = udpEchoes(**client, vm.ip, 20);
    EXPECT_TRUE(echoed.ok()) << echoed << (*ovs)->logTail();
  }
  auto fdb = (*ovs)->appctl({"fdb/show", "br0"});
  ASSERT_TRUE(fdb.ok()) << fdb.status();
  for (const Vm& vm : vms) EXPECT_THAT(*fdb, HasSubstr(vm.mac));
  for (auto& vmm : vmms) ASSERT_TRUE(vmm->process().terminate(absl::Seconds(10)).ok());
}

// A VM answering on its NIC (interrupts, EVENT_IDX, indirect descriptors) is snapshotted, the
// source stopped, and the VM restored in a new process on the same tap: the guest goes on
// answering ping and UDP echo with the receive buffers and ring positions it had.
TEST(VirtioNetSnapshotTest, NetworkKeepsWorkingAcrossSnapshotAndRestore) {
  ASSERT_TRUE(::flotilla::testing::requireRoot("taps and network namespaces").ok());
  auto ns = NetNamespace::create("vsnap");
  ASSERT_TRUE(ns.ok()) << ns.status();
  ASSERT_TRUE(persistentTap(**ns, "ftap0").ok());
  ASSERT_TRUE((*ns)->addAddress("ftap0", "10.77.1.1/24").ok());
  TempDir dir;
  auto source = startInNamespace(
      **ns, dir, "source",
      {"--kernel", kGuest, "--memory", "128M", "--net", fmt::format("tap=ftap0,mac={}", kMac),
       "--cmdline",
       "workload=net net.ip=10.77.1.2/24 virtio.irq=1 virtio.event_idx=1 virtio.indirect=1"});
  ASSERT_TRUE(source.ok()) << source.status();
  auto up = (*source)->waitForSerial("net up", absl::Minutes(1));
  ASSERT_TRUE(up.ok()) << up.status() << (*source)->log();
  absl::Status before = udpEchoes(**ns, "10.77.1.2", 10);
  ASSERT_TRUE(before.ok()) << before << (*source)->log();

  auto api = (*source)->api();
  ASSERT_TRUE(api.ok()) << api.status();
  const std::string snapshot = dir.file("snapshot");
  flotilla::v1::SnapshotRequest request;
  request.set_directory(snapshot);
  flotilla::v1::SnapshotResponse response;
  grpc::ClientContext context;
  grpc::Status status = (*api)->Snapshot(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The source resumed after the snapshot and still answers.
  absl::Status resumed = udpEchoes(**ns, "10.77.1.2", 5);
  EXPECT_TRUE(resumed.ok()) << resumed << (*source)->log();
  ASSERT_TRUE((*source)->process().terminate(absl::Seconds(10)).ok());

  auto restored = startInNamespace(**ns, dir, "restored", {"--restore", snapshot});
  ASSERT_TRUE(restored.ok()) << restored.status();
  absl::Status after = udpEchoes(**ns, "10.77.1.2", 20, absl::Seconds(30));
  EXPECT_TRUE(after.ok()) << after << (*restored)->log();
  absl::Status pinged = ping(**ns, "10.77.1.2");
  EXPECT_TRUE(pinged.ok()) << pinged;
  EXPECT_THAT((*restored)->serial(), Not(HasSubstr("net up")))
      << "the guest continued, it did not start again";
  EXPECT_THAT((*restored)->serial(), Not(HasSubstr("error")));
  ASSERT_TRUE((*restored)->process().terminate(absl::Seconds(10)).ok());
}

INSTANTIATE_TEST_SUITE_P(Offloads, VirtioNetWorkloadTest, ::testing::Values("", ",offload=off"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           return std::string(*param.param == '\0' ? "On" : "Off");
                         });

}  // namespace
}  // namespace flotilla::vmm
