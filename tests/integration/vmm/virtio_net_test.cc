// flotilla-vmm's virtio-net with the test guest's net workload on a tap in a network
// namespace the test creates: the guest answers ARP, ping and UDP echo from the namespace,
// with offloads on and off, and the VMM announces the NIC (RARP) on request.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/announce.h"
#include "network/mac_address.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::TempDir;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kMac[] = "52:54:00:4e:00:01";

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
  auto up = (*vmm)->waitForSerial("net up", absl::Minutes(1));
  ASSERT_TRUE(up.ok()) << up.status() << (*vmm)->log();
  EXPECT_THAT(*up, HasSubstr(fmt::format("mac={}", kMac)));
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

INSTANTIATE_TEST_SUITE_P(Offloads, VirtioNetWorkloadTest, ::testing::Values("", ",offload=off"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           return std::string(*param.param == '\0' ? "On" : "Off");
                         });

}  // namespace
}  // namespace flotilla::vmm
