// Taps wired into private Open vSwitch instances (userspace datapath), as the agent will wire
// VMs: forwarding between taps, VLAN isolation, MAC learning moved by a post-migration
// announcement, two simulated hosts joined by a veth, and the instance's own life cycle
// including the cleanup of one left behind by a crashed test. Needs root and OVS.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/announce.h"
#include "network/mac_address.h"
#include "network/tap.h"
#include "tests/integration/network/frames.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla::network {
namespace {

using testframes::broadcastFrame;
using testframes::tagOf;
using testframes::tagsFromTap;
using testframes::testFrame;
using testframes::withoutVnetHeader;
using testframes::withVnetHeader;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kFrameTimeout = absl::Seconds(20);

// Reads frames from a tap until the test frame tagged `last` arrives; returns the tags of
// all test frames read on the way, `last` included.
absl::StatusOr<std::vector<std::string>> tagsUntil(const Tap& tap, const std::string& last) {
  std::vector<std::string> tags;
  absl::StatusOr<std::vector<uint8_t>> found = testing::readMatchingFrame(
      tap.fd(),
      [&](std::span<const uint8_t> frame) {
        std::string tag = tagOf(withoutVnetHeader(frame));
        if (!tag.empty()) tags.push_back(tag);
        return tag == last;
      },
      kFrameTimeout);
  if (!found.ok()) return found.status();
  return tags;
}

// Whether a process is still running (a zombie waiting for its parent to reap it is not).
bool running(pid_t pid) {
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  if (!stat) return false;
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

class OvsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ns = testing::NetNamespace::create("ovs");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = std::move(*ns);
    auto ovs = testing::OvsInstance::start({.ns = ns_.get()});
    ASSERT_TRUE(ovs.ok()) << ovs.status();
    ovs_ = std::move(*ovs);
    absl::Status bridge = ovs_->addBridge("br0");
    ASSERT_TRUE(bridge.ok()) << bridge << "\n" << ovs_->logTail();
  }

  // A tap in the namespace, up, as a port of br0.
  absl::StatusOr<Tap> port(const std::string& name, std::optional<uint16_t> tag = std::nullopt) {
    ASSIGN_OR_RETURN(Tap tap, ns_->openTap(name));
    RETURN_IF_ERROR(ns_->setLinkUp(name));
    RETURN_IF_ERROR(ovs_->addPort("br0", name, tag));
    return tap;
  }

  absl::StatusOr<std::string> ofport(const std::string& name) {
    ASSIGN_OR_RETURN(std::string text, ovs_->vsctl({"get", "Interface", name, "ofport"}));
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  // The port OVS's MAC learning table has for `mac`, or nullopt.
  absl::StatusOr<std::optional<std::string>> learnedPort(const MacAddress& mac) {
    ASSIGN_OR_RETURN(std::string table, ovs_->appctl({"fdb/show", "br0"}));
    for (absl::string_view line : absl::StrSplit(table, '\n')) {
      std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (fields.size() >= 3 && fields[2] == mac.toString()) return fields[0];
    }
    return std::nullopt;
  }

  // Destroyed in reverse order: taps (in the tests) first, then OVS, then the namespace.
  std::unique_ptr<testing::NetNamespace> ns_;
  std::unique_ptr<testing::OvsInstance> ovs_;
};

TEST_F(OvsTest, FrameWrittenToOneTapComesOutOfTheOther) {
  auto p1 = port("p1");
  ASSERT_TRUE(p1.ok()) << p1.status();
  auto p2 = port("p2");
  ASSERT_TRUE(p2.ok()) << p2.status();
  const MacAddress vm1 = MacAddress::randomLocal();
  const MacAddress vm2 = MacAddress::randomLocal();

  // Broadcast: flooded to p2.
  ASSERT_TRUE(p1->write(withVnetHeader(broadcastFrame(vm1, "hello p2"))).ok());
  auto tags = tagsUntil(*p2, "hello p2");
  ASSERT_TRUE(tags.ok()) << tags.status() << "\n" << ovs_->logTail();

  // Unicast back to the MAC OVS learned on p1.
  const std::vector<uint8_t> reply = testFrame(vm1, vm2, "hello p1");
  ASSERT_TRUE(p2->write(withVnetHeader(reply)).ok());
  auto received = testing::readMatchingFrame(
      p1->fd(),
      [](std::span<const uint8_t> f) { return tagOf(withoutVnetHeader(f)) == "hello p1"; },
      kFrameTimeout);
  ASSERT_TRUE(received.ok()) << received.status() << "\n" << ovs_->logTail();
  EXPECT_THAT(withoutVnetHeader(*received), ::testing::ElementsAreArray(reply));
  EXPECT_EQ((*received)[0], 0);  // no offload flags in the header
}

// Access ports of VLAN 100 and VLAN 200 on one bridge do not see each other's broadcasts.
// Without timing assumptions: OVS's userspace datapath handles the frames of these ports one
// at a time on one thread, executing all outputs of a frame before taking the next, and a tap
// queues frames in order. So once a later frame has arrived on a port, any copy of an earlier
// frame would already be queued ahead of it.
TEST_F(OvsTest, VlanTagsIsolateBroadcasts) {
  auto a = port("a100", 100);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = port("b100", 100);
  ASSERT_TRUE(b.ok()) << b.status();
  auto c = port("c200", 200);
  ASSERT_TRUE(c.ok()) << c.status();
  auto d = port("d200", 200);
  ASSERT_TRUE(d.ok()) << d.status();
  const MacAddress mac_a = MacAddress::randomLocal();
  const MacAddress mac_d = MacAddress::randomLocal();

  ASSERT_TRUE(a->write(withVnetHeader(broadcastFrame(mac_a, "X from vlan 100"))).ok());
  auto b_tags = tagsUntil(*b, "X from vlan 100");
  ASSERT_TRUE(b_tags.ok()) << b_tags.status() << "\n" << ovs_->logTail();
  EXPECT_THAT(*b_tags, ElementsAre("X from vlan 100"));

  ASSERT_TRUE(d->write(withVnetHeader(broadcastFrame(mac_d, "Y from vlan 200"))).ok());
  auto c_tags = tagsUntil(*c, "Y from vlan 200");
  ASSERT_TRUE(c_tags.ok()) << c_tags.status();
  EXPECT_THAT(*c_tags, ElementsAre("Y from vlan 200"));  // X did not leak into VLAN 200

  ASSERT_TRUE(a->write(withVnetHeader(broadcastFrame(mac_a, "Z from vlan 100"))).ok());
  b_tags = tagsUntil(*b, "Z from vlan 100");
  ASSERT_TRUE(b_tags.ok()) << b_tags.status();
  EXPECT_THAT(*b_tags, ElementsAre("Z from vlan 100"));  // Y did not leak into VLAN 100

  ASSERT_TRUE(d->write(withVnetHeader(broadcastFrame(mac_d, "W from vlan 200"))).ok());
  c_tags = tagsUntil(*c, "W from vlan 200");
  ASSERT_TRUE(c_tags.ok()) << c_tags.status();
  EXPECT_THAT(*c_tags, ElementsAre("W from vlan 200"));

  // The senders themselves got nothing from the other VLAN (nor their own frames back).
  auto a_frames = testing::drainFrames(a->fd());
  ASSERT_TRUE(a_frames.ok());
  EXPECT_THAT(tagsFromTap(*a_frames), IsEmpty());
  auto d_frames = testing::drainFrames(d->fd());
  ASSERT_TRUE(d_frames.ok());
  EXPECT_THAT(tagsFromTap(*d_frames), IsEmpty());
}

// What a live migration's announcement is for: the VM's MAC moves in the switch's forwarding
// table to the port of its new tap, and unicast traffic follows it.
TEST_F(OvsTest, RarpAnnouncementMovesTheMacToTheNewPort) {
  auto old_port = port("vmold");
  ASSERT_TRUE(old_port.ok()) << old_port.status();
  auto new_port = port("vmnew");
  ASSERT_TRUE(new_port.ok()) << new_port.status();
  auto peer = port("peer");
  ASSERT_TRUE(peer.ok()) << peer.status();
  auto old_ofport = ofport("vmold");
  auto new_ofport = ofport("vmnew");
  ASSERT_TRUE(old_ofport.ok() && new_ofport.ok());
  const MacAddress vm = MacAddress::randomLocal();
  const MacAddress peer_mac = MacAddress::randomLocal();

  // The VM speaks on its old port: learned there.
  ASSERT_TRUE(old_port->write(withVnetHeader(broadcastFrame(vm, "before"))).ok());
  ASSERT_TRUE(tagsUntil(*peer, "before").ok());
  auto learned = learnedPort(vm);
  ASSERT_TRUE(learned.ok()) << learned.status();
  EXPECT_EQ(*learned, *old_ofport);

  // It resumes behind the new tap, whose VMM announces it.
  for (const std::vector<uint8_t>& frame : buildAnnouncements(vm, Ipv4Address{{10, 0, 0, 5}})) {
    ASSERT_TRUE(new_port->write(withVnetHeader(frame)).ok());
  }
  auto seen = testing::readMatchingFrame(
      peer->fd(),
      [&](std::span<const uint8_t> f) {
        auto a = parseAnnouncement(withoutVnetHeader(f));
        return a.has_value() && a->mac == vm && a->kind == Announcement::Kind::kGratuitousArp;
      },
      kFrameTimeout);
  ASSERT_TRUE(seen.ok()) << seen.status();
  learned = learnedPort(vm);
  ASSERT_TRUE(learned.ok()) << learned.status();
  EXPECT_EQ(*learned, *new_ofport);

  // Unicast to the VM now reaches the new port only.
  ASSERT_TRUE(peer->write(withVnetHeader(testFrame(vm, peer_mac, "to the vm"))).ok());
  auto new_tags = tagsUntil(*new_port, "to the vm");
  ASSERT_TRUE(new_tags.ok()) << new_tags.status();
  ASSERT_TRUE(peer->write(withVnetHeader(broadcastFrame(peer_mac, "marker"))).ok());
  auto old_tags = tagsUntil(*old_port, "marker");
  ASSERT_TRUE(old_tags.ok()) << old_tags.status();
  EXPECT_THAT(*old_tags, ElementsAre("marker"));
}

TEST_F(OvsTest, PortsAreAddedAndDeletedAndBadOnesExplained) {
  auto p1 = port("p1", 42);
  ASSERT_TRUE(p1.ok()) << p1.status();
  auto p2 = port("p2");
  ASSERT_TRUE(p2.ok()) << p2.status();
  auto tag = ovs_->vsctl({"get", "Port", "p1", "tag"});
  ASSERT_TRUE(tag.ok()) << tag.status();
  EXPECT_EQ(*tag, "42\n");

  ASSERT_TRUE(ovs_->deletePort("br0", "p2").ok());
  auto ports = ovs_->vsctl({"list-ports", "br0"});
  ASSERT_TRUE(ports.ok()) << ports.status();
  EXPECT_EQ(*ports, "p1\n");

  absl::Status missing = ovs_->addPort("br0", "nosuchdev");
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.message(), HasSubstr("nosuchdev"));
  EXPECT_THAT(missing.message(), HasSubstr("could not open network device"));
}

TEST_F(OvsTest, StopEndsBothDaemonsAndRemovesEverything) {
  const pid_t ovsdb = ovs_->ovsdbServerPid();
  const pid_t vswitchd = ovs_->vswitchdPid();
  const std::string dir = ovs_->dir();
  ASSERT_GT(ovsdb, 1);
  ASSERT_GT(vswitchd, 1);
  EXPECT_TRUE(running(ovsdb));
  EXPECT_TRUE(running(vswitchd));
  EXPECT_TRUE(ns_->hasLink("br0"));  // the userspace datapath's internal port

  ASSERT_TRUE(ovs_->stop().ok());
  EXPECT_FALSE(running(ovsdb));
  EXPECT_FALSE(running(vswitchd));
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(ns_->hasLink("br0"));
  EXPECT_TRUE(ovs_->stop().ok());  // idempotent
}

// Why the VMM's offload setting must follow the switch (docs/network.md): a guest that
// negotiated VIRTIO_NET_F_CSUM sends frames with a partial checksum and NEEDS_CSUM in the
// header. OVS's userspace datapath without userspace-tso-enable reads the tap through a packet
// socket without headers: the frame leaves on the other port with the checksum still partial
// and nothing saying so, and the receiver drops it. With userspace-tso-enable OVS reads the
// header and the checksum arrives complete.
TEST(OvsOffloadTest, GuestChecksumOffloadNeedsUserspaceTso) {
  for (bool userspace_tso : {false, true}) {
    SCOPED_TRACE(userspace_tso ? "userspace-tso-enable=true" : "userspace-tso off");
    auto ns = testing::NetNamespace::create("csum");
    ASSERT_TRUE(ns.ok()) << ns.status();
    auto ovs = testing::OvsInstance::start({.ns = ns->get(), .userspace_tso = userspace_tso});
    ASSERT_TRUE(ovs.ok()) << ovs.status();
    ASSERT_TRUE((*ovs)->addBridge("br0").ok());
    std::vector<Tap> taps;
    for (const char* name : {"guest", "peer"}) {
      auto tap = (*ns)->openTap(name);
      ASSERT_TRUE(tap.ok()) << tap.status();
      ASSERT_TRUE((*ns)->setLinkUp(name).ok());
      ASSERT_TRUE((*ovs)->addPort("br0", name).ok());
      taps.push_back(std::move(*tap));
    }
    const std::vector<uint8_t> sent =
        testframes::udpFrameNeedingChecksum(MacAddress::randomLocal(), "checksum me");
    ASSERT_FALSE(testframes::udpChecksumValid(withoutVnetHeader(sent)));
    ASSERT_TRUE(taps[0].write(sent).ok());
    auto received = testing::readMatchingFrame(
        taps[1].fd(),
        [&](std::span<const uint8_t> f) {
          return f.size() == sent.size() &&
                 std::equal(f.end() - 11, f.end(), sent.end() - 11);  // the payload
        },
        kFrameTimeout);
    ASSERT_TRUE(received.ok()) << received.status() << "\n" << (*ovs)->logTail();
    EXPECT_EQ((*received)[0], 0);  // no NEEDS_CSUM towards the peer (its offloads are off)
    EXPECT_EQ(testframes::udpChecksumValid(withoutVnetHeader(*received)), userspace_tso);
  }
}

// Two simulated hosts, each a namespace with its own OVS, joined by a veth "underlay" that is
// a port of both bridges: a frame from a tap on host A comes out of a tap on host B.
TEST(OvsTwoHostsTest, FrameCrossesFromOneHostToTheOther) {
  auto host_a = testing::NetNamespace::create("hosta");
  ASSERT_TRUE(host_a.ok()) << host_a.status();
  auto host_b = testing::NetNamespace::create("hostb");
  ASSERT_TRUE(host_b.ok()) << host_b.status();
  auto ovs_a = testing::OvsInstance::start({.ns = host_a->get()});
  ASSERT_TRUE(ovs_a.ok()) << ovs_a.status();
  auto ovs_b = testing::OvsInstance::start({.ns = host_b->get()});
  ASSERT_TRUE(ovs_b.ok()) << ovs_b.status();
  auto link = testing::VethPair::create({.ns = host_a->get(), .name = "uplink"},
                                        {.ns = host_b->get(), .name = "uplink"});
  ASSERT_TRUE(link.ok()) << link.status();

  auto tap_a = (*host_a)->openTap("vm1");
  ASSERT_TRUE(tap_a.ok()) << tap_a.status();
  auto tap_b = (*host_b)->openTap("vm2");
  ASSERT_TRUE(tap_b.ok()) << tap_b.status();
  for (auto [ns, ovs, tap] : {std::tuple{host_a->get(), ovs_a->get(), "vm1"},
                              std::tuple{host_b->get(), ovs_b->get(), "vm2"}}) {
    ASSERT_TRUE(ovs->addBridge("br-int").ok());
    ASSERT_TRUE(ns->setLinkUp(tap).ok());
    ASSERT_TRUE(ovs->addPort("br-int", tap, 7).ok());
    ASSERT_TRUE(ovs->addPort("br-int", "uplink").ok());  // a trunk
  }
  ASSERT_TRUE(
      tap_a->write(withVnetHeader(broadcastFrame(MacAddress::randomLocal(), "across"))).ok());
  auto tags = tagsUntil(*tap_b, "across");
  ASSERT_TRUE(tags.ok()) << tags.status() << "\nA:\n"
                         << (*ovs_a)->logTail() << "\nB:\n"
                         << (*ovs_b)->logTail();
}

// A test that crashes leaves its namespace, OVS directory and daemons behind. The next run
// removes them (they are named after a process that no longer exists) and starts cleanly.
TEST(OvsStaleInstanceTest, LeftoversOfADeadTestAreRemoved) {
  testing::TempDir scratch;
  const std::string report = scratch.file("leftovers");
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The "crashing test": starts a namespace and OVS, records them, and dies without
    // running any destructor.
    auto ns = testing::NetNamespace::create("crash");
    if (!ns.ok()) std::_Exit(2);
    auto ovs = testing::OvsInstance::start({.ns = ns->get()});
    if (!ovs.ok()) std::_Exit(3);
    if (!(*ovs)->addBridge("br0").ok()) std::_Exit(4);
    std::ofstream out(report);
    out << (*ns)->name() << "\n"
        << (*ovs)->dir() << "\n"
        << (*ovs)->ovsdbServerPid() << "\n"
        << (*ovs)->vswitchdPid() << "\n";
    out.close();
    std::_Exit(out ? 0 : 5);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;

  std::ifstream in(report);
  std::string ns_name, dir;
  pid_t ovsdb = -1, vswitchd = -1;
  in >> ns_name >> dir >> ovsdb >> vswitchd;
  ASSERT_TRUE(in) << "no report from the child";
  EXPECT_TRUE(std::filesystem::exists("/run/netns/" + ns_name));
  EXPECT_TRUE(std::filesystem::exists(dir));
  EXPECT_TRUE(running(ovsdb));
  EXPECT_TRUE(running(vswitchd));

  testing::removeStaleOvsInstances();
  testing::removeStaleNetNamespaces();
  EXPECT_FALSE(running(ovsdb));
  EXPECT_FALSE(running(vswitchd));
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(std::filesystem::exists("/run/netns/" + ns_name));

  // And the next instance starts as usual.
  auto ns = testing::NetNamespace::create("after");
  ASSERT_TRUE(ns.ok()) << ns.status();
  auto ovs = testing::OvsInstance::start({.ns = ns->get()});
  ASSERT_TRUE(ovs.ok()) << ovs.status();
  EXPECT_TRUE((*ovs)->addBridge("br0").ok());
}

}  // namespace
}  // namespace flotilla::network
