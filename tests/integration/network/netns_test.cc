// The network test support itself: namespaces (created, entered, deleted), veth pairs within
// and across namespaces, and the failure messages when tools are missing. Needs root.
#include "tests/support/netns.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/tap.h"
#include "tests/support/test_env.h"

namespace flotilla::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string readLink(const std::string& path) {
  std::error_code error;
  return std::filesystem::read_symlink(path, error).string();
}

TEST(NetNamespaceTest, CreatesEntersAndDeletes) {
  std::string name;
  {
    auto ns = NetNamespace::create("x");
    ASSERT_TRUE(ns.ok()) << ns.status();
    name = (*ns)->name();
    EXPECT_THAT(name, StartsWith(fmt::format("flt-x-{}-", ::getpid())));
    EXPECT_TRUE(std::filesystem::exists("/run/netns/" + name));

    // A thread inside sees another network namespace than ours; ours is unchanged after.
    const std::string ours = readLink("/proc/self/ns/net");
    auto inside = (*ns)->runInside(
        []() -> absl::StatusOr<std::string> { return readLink("/proc/thread-self/ns/net"); });
    ASSERT_TRUE(inside.ok()) << inside.status();
    EXPECT_NE(*inside, ours);
    EXPECT_EQ(readLink("/proc/thread-self/ns/net"), ours);

    // The same namespace through `ip netns exec`: lo is up, IPv6 is off.
    auto lo = (*ns)->execChecked({"ip", "-o", "link", "show", "lo"});
    ASSERT_TRUE(lo.ok()) << lo.status();
    EXPECT_THAT(*lo, HasSubstr("UP"));
    auto ipv6 = (*ns)->execChecked({"cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"});
    ASSERT_TRUE(ipv6.ok()) << ipv6.status();
    EXPECT_EQ(*ipv6, "1\n");
    auto failing = (*ns)->exec({"false"});
    ASSERT_TRUE(failing.ok()) << failing.status();
    EXPECT_EQ(failing->status.code, 1);
  }
  EXPECT_FALSE(std::filesystem::exists("/run/netns/" + name));
}

TEST(NetNamespaceTest, NamesAreUnique) {
  auto a = NetNamespace::create("u");
  auto b = NetNamespace::create("u");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->name(), (*b)->name());
}

// Datagrams between two namespaces over a veth pair with addresses on both ends.
TEST(VethPairTest, ConnectsTwoNamespaces) {
  auto a = NetNamespace::create("va");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = NetNamespace::create("vb");
  ASSERT_TRUE(b.ok()) << b.status();
  {
    auto pair = VethPair::create({a->get(), "veth-a", "10.88.0.1/24"},
                                 {b->get(), "veth-b", "10.88.0.2/24"});
    ASSERT_TRUE(pair.ok()) << pair.status();
    EXPECT_TRUE((*a)->hasLink("veth-a"));
    EXPECT_TRUE((*b)->hasLink("veth-b"));
    EXPECT_FALSE((*a)->hasLink("veth-b"));

    auto receiver = (*b)->udpSocket("10.88.0.2", 0);
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    sockaddr_in to{};
    socklen_t length = sizeof(to);
    ASSERT_EQ(::getsockname(receiver->get(), reinterpret_cast<sockaddr*>(&to), &length), 0);
    auto sender = (*a)->udpSocket("10.88.0.1", 0);
    ASSERT_TRUE(sender.ok()) << sender.status();
    const std::string message = "over the veth";
    ASSERT_EQ(::sendto(sender->get(), message.data(), message.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(message.size()));
    pollfd entry{.fd = receiver->get(), .events = POLLIN, .revents = 0};
    ASSERT_EQ(::poll(&entry, 1, 10000), 1) << "no datagram within 10 s";
    char buffer[64] = {};
    ASSERT_EQ(::recv(receiver->get(), buffer, sizeof(buffer), 0),
              static_cast<ssize_t>(message.size()));
    EXPECT_EQ(std::string(buffer), message);

    ASSERT_TRUE(disableInterfaceOffloads(a->get(), "veth-a").ok());
    auto features = (*a)->execChecked({"ethtool", "-k", "veth-a"});
    ASSERT_TRUE(features.ok()) << features.status();
    EXPECT_THAT(*features, HasSubstr("tx-checksumming: off"));
    EXPECT_THAT(*features, HasSubstr("generic-segmentation-offload: off"));
  }
  EXPECT_FALSE((*a)->hasLink("veth-a"));
  EXPECT_FALSE((*b)->hasLink("veth-b"));
}

// One end in this process's own namespace (as an underlay would be): removed with the pair.
TEST(VethPairTest, EndInOurOwnNamespaceIsRemoved) {
  auto ns = NetNamespace::create("vr");
  ASSERT_TRUE(ns.ok()) << ns.status();
  const std::string outside = fmt::format("fv{}", ::getpid() % 10000000);
  {
    auto pair = VethPair::create({nullptr, outside, ""}, {ns->get(), "inside", "10.89.0.2/24"});
    ASSERT_TRUE(pair.ok()) << pair.status();
    EXPECT_TRUE(network::linkExists(outside));
    EXPECT_TRUE((*ns)->hasLink("inside"));
  }
  EXPECT_FALSE(network::linkExists(outside));
  EXPECT_FALSE((*ns)->hasLink("inside"));
}

// Without the tools the support fails, naming what to install (tests then fail, not skip).
TEST(NetworkTestEnvironmentTest, MissingToolsAreNamed) {
  TempDir empty;
  const char* saved = std::getenv("PATH");
  const std::string path = saved != nullptr ? saved : "";
  ASSERT_EQ(::setenv("PATH", empty.path().c_str(), 1), 0);
  auto ns = NetNamespace::create("nopath");
  auto ovs = OvsInstance::start();
  ASSERT_EQ(::setenv("PATH", path.c_str(), 1), 0);

  ASSERT_FALSE(ns.ok());
  EXPECT_EQ(ns.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ns.status().message(), HasSubstr("'ip'"));
  EXPECT_THAT(ns.status().message(), HasSubstr("iproute2"));
  ASSERT_FALSE(ovs.ok());
  EXPECT_THAT(ovs.status().message(), HasSubstr("'ovsdb-tool'"));
  EXPECT_THAT(ovs.status().message(), HasSubstr("openvswitch-switch"));
  EXPECT_THAT(ovs.status().message(), HasSubstr("install-deps.sh"));
}

}  // namespace
}  // namespace flotilla::testing
