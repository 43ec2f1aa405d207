// OvsSwitch (network/ovs.h) wiring three simulated hosts the way flotilla-agent wires real
// ones: each host a network namespace with its own Open vSwitch (userspace datapath), br-int
// with the VMs' access ports and a full mesh of VXLAN tunnels, br-phy carrying the host's
// underlay address; the underlay is a Linux bridge in a fourth namespace with a veth to each
// host. "VMs" are namespaces of their own holding one veth end with an address and the
// deterministic MAC. Needs root, OVS, iproute2, ethtool, procps (sysctl) and iputils-ping.
//
//   vm1 (VLAN 100) ─┐                 ┌─ vm2 (VLAN 100)      vm3 (VLAN 200) ─┐
//   vm5 (VLAN 200) ─┤ host-1          │ host-2               vm4 (VLAN 100) ─┤ host-3
//                br-int ═ vxlan mesh ═ br-int ═══════════════════════════ br-int
//                br-phy ─ eth1 ──┐    br-phy ─ eth1 ──┐              br-phy ─ eth1 ──┐
//                                └──────── ubr (Linux bridge, namespace "under") ─────┘
#include <linux/if_packet.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/command.h"
#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/mac_address.h"
#include "network/mac_allocation.h"
#include "network/ovs.h"
#include "nlohmann/json.hpp"
#include "tests/integration/network/frames.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla::network {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::Duration kFrameTimeout = absl::Seconds(20);
constexpr uint32_t kVni = 4242;
constexpr char kIntegration[] = "br-int";
constexpr char kUnderlay[] = "br-phy";

// Runs every command inside a simulated host's network namespace (`ip netns exec NAME ...`),
// as flotilla-agent runs them on its own host.
class HostCommandRunner final : public CommandRunner {
 public:
  explicit HostCommandRunner(const testing::NetNamespace& ns) : ns_(ns) {}

  absl::StatusOr<CommandResult> run(const std::vector<std::string>& argv,
                                    const CommandOptions& options) override {
    std::vector<std::string> full = {"ip", "netns", "exec", ns_.name()};
    full.insert(full.end(), argv.begin(), argv.end());
    return system_.run(full, options);
  }

 private:
  const testing::NetNamespace& ns_;
  SystemCommandRunner system_;
};

struct Host {
  std::string name;  // "host-1"
  std::string underlay_ip;
  std::unique_ptr<testing::NetNamespace> ns;
  std::unique_ptr<testing::OvsInstance> ovs;
  std::unique_ptr<HostCommandRunner> runner;
  std::unique_ptr<OvsSwitch> ovs_switch;
  std::unique_ptr<testing::VethPair> uplink;  // eth1 here, hN in the underlay namespace
};

struct Vm {
  std::string id;  // flotilla-vm-id
  size_t host = 0;
  uint16_t vlan = 0;
  std::string ip;
  std::string tap;  // the host-side veth end, the OVS port
  MacAddress mac;
  std::unique_ptr<testing::NetNamespace> ns;
  std::unique_ptr<testing::VethPair> link;

  VmPort port() const {
    return VmPort{.bridge = kIntegration,
                  .port = tap,
                  .vlan_tag = vlan,
                  .vm_id = id,
                  .interface_id = "0",
                  .mac = mac};
  }
};

class OvsWiringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [program, package] :
         {std::pair{"ip", "iproute2"}, std::pair{"ethtool", "ethtool"},
          std::pair{"sysctl", "procps"}, std::pair{"ping", "iputils-ping"}}) {
      auto found = testing::findProgram(program, package);
      ASSERT_TRUE(found.ok()) << found.status();
    }
    auto under = testing::NetNamespace::create("under");
    ASSERT_TRUE(under.ok()) << under.status();
    under_ = std::move(*under);
    ASSERT_TRUE(under_->execChecked({"ip", "link", "add", "ubr", "type", "bridge"}).ok());
    ASSERT_TRUE(under_->setLinkUp("ubr").ok());

    for (size_t i = 0; i < 3; ++i) {
      Host& host = hosts_.emplace_back();
      host.name = fmt::format("host-{}", i + 1);
      host.underlay_ip = fmt::format("192.168.77.{}", i + 1);
      auto ns = testing::NetNamespace::create(fmt::format("h{}", i + 1));
      ASSERT_TRUE(ns.ok()) << ns.status();
      host.ns = std::move(*ns);
      auto ovs = testing::OvsInstance::start({.ns = host.ns.get()});
      ASSERT_TRUE(ovs.ok()) << ovs.status();
      host.ovs = std::move(*ovs);
      const std::string under_end = fmt::format("h{}", i + 1);
      auto uplink = testing::VethPair::create({.ns = host.ns.get(), .name = "eth1"},
                                              {.ns = under_.get(), .name = under_end});
      ASSERT_TRUE(uplink.ok()) << uplink.status();
      host.uplink = std::make_unique<testing::VethPair>(std::move(*uplink));
      ASSERT_TRUE(under_->execChecked({"ip", "link", "set", under_end, "master", "ubr"}).ok());
      ASSERT_TRUE(testing::disableInterfaceOffloads(host.ns.get(), "eth1").ok());
      ASSERT_TRUE(testing::disableInterfaceOffloads(under_.get(), under_end).ok());
      host.runner = std::make_unique<HostCommandRunner>(*host.ns);
      // The database given as a plain path (the switch makes it unix:PATH).
      auto ovs_switch =
          OvsSwitch::create(*host.runner, {.db = host.ovs->dbSocket(), .datapath_type = "netdev"});
      ASSERT_TRUE(ovs_switch.ok()) << ovs_switch.status();
      host.ovs_switch = std::make_unique<OvsSwitch>(std::move(*ovs_switch));
    }

    addVm("vm-1", 0, 100, "10.100.0.1");
    addVm("vm-2", 1, 100, "10.100.0.2");
    addVm("vm-3", 2, 200, "10.100.0.3");
    // An id with characters that mean something in ovs-vsctl's syntax.
    addVm("vm-4 \"four\", {x}=y", 2, 100, "10.100.0.4");
    addVm("vm-5", 0, 200, "10.100.0.5");
    if (HasFatalFailure()) return;
    wireEverything();
  }

  // A VM namespace with eth0 (address, deterministic MAC) linked to the tap-side veth end on
  // its host.
  void addVm(const std::string& id, size_t host, uint16_t vlan, const std::string& ip) {
    Vm& vm = vms_.emplace_back();
    vm.id = id;
    vm.host = host;
    vm.vlan = vlan;
    vm.ip = ip;
    vm.tap = fmt::format("tap-vm{}", vms_.size());
    vm.mac = deterministicMac(fmt::format("{}/0", id));
    auto ns = testing::NetNamespace::create(fmt::format("vm{}", vms_.size()));
    ASSERT_TRUE(ns.ok()) << ns.status();
    vm.ns = std::move(*ns);
    auto link = testing::VethPair::create({.ns = hosts_[host].ns.get(), .name = vm.tap},
                                          {.ns = vm.ns.get(), .name = "eth0", .cidr = ip + "/24"});
    ASSERT_TRUE(link.ok()) << link.status();
    vm.link = std::make_unique<testing::VethPair>(std::move(*link));
    ASSERT_TRUE(
        vm.ns->execChecked({"ip", "link", "set", "eth0", "address", vm.mac.toString()}).ok());
    ASSERT_TRUE(testing::disableInterfaceOffloads(vm.ns.get(), "eth0").ok());
    ASSERT_TRUE(testing::disableInterfaceOffloads(hosts_[host].ns.get(), vm.tap).ok());
  }

  std::vector<TunnelSpec> peersOf(size_t host, const std::vector<size_t>& peers) const {
    std::vector<TunnelSpec> tunnels;
    for (size_t peer : peers) {
      if (peer == host) continue;
      // host-1 names its local endpoint; the others leave it to the route.
      tunnels.push_back({.peer_host = hosts_[peer].name,
                         .remote_ip = hosts_[peer].underlay_ip,
                         .local_ip = host == 0 ? hosts_[host].underlay_ip : "",
                         .vni = kVni});
    }
    return tunnels;
  }

  // What the agent does on each host: bridges, tunnels to every other host, VM ports.
  void wireEverything() {
    for (size_t i = 0; i < hosts_.size(); ++i) {
      OvsSwitch& ovs = *hosts_[i].ovs_switch;
      absl::Status status = ovs.ensureIntegrationBridge(kIntegration);
      ASSERT_TRUE(status.ok()) << status << "\n" << hosts_[i].ovs->logTail();
      status = ovs.ensureUnderlayBridge({.bridge = kUnderlay,
                                         .physical_port = "eth1",
                                         .cidr = hosts_[i].underlay_ip + "/24",
                                         .hwaddr = {}});
      ASSERT_TRUE(status.ok()) << status << "\n" << hosts_[i].ovs->logTail();
      auto tunnels = ovs.syncTunnels(kIntegration, peersOf(i, {0, 1, 2}));
      ASSERT_TRUE(tunnels.ok()) << tunnels.status() << "\n" << hosts_[i].ovs->logTail();
    }
    for (const Vm& vm : vms_) {
      absl::Status status = hosts_[vm.host].ovs_switch->addVmPort(vm.port());
      ASSERT_TRUE(status.ok()) << status << "\n" << hosts_[vm.host].ovs->logTail();
    }
  }

  // `ping` from the VM: two echo replies within 20 s (the first packets may go while OVS
  // resolves the tunnel endpoint's MAC), or an error quoting ping's output and OVS's logs.
  absl::Status reaches(const Vm& from, const std::string& ip) {
    absl::StatusOr<CommandResult> result =
        from.ns->exec({"ping", "-n", "-c", "2", "-i", "0.2", "-w", "20", ip});
    if (!result.ok()) return result.status();
    if (result->status.success()) return absl::OkStatus();
    return absl::InternalError(fmt::format("{} cannot ping {}: {}{}\nhost log:\n{}", from.id, ip,
                                           result->out, result->err,
                                           hosts_[from.host].ovs->logTail()));
  }

  // `ping` from the VM gets no reply within 2 s (the wait a negative answer needs).
  absl::Status doesNotReach(const Vm& from, const std::string& ip) {
    absl::StatusOr<CommandResult> result = from.ns->exec({"ping", "-n", "-c", "1", "-w", "2", ip});
    if (!result.ok()) return result.status();
    if (result->status.code == 1) return absl::OkStatus();  // no reply
    return absl::InternalError(fmt::format("{} pinging {}: expected no reply, got {}: {}{}",
                                           from.id, ip, result->status.describe(), result->out,
                                           result->err));
  }

  absl::StatusOr<std::vector<std::string>> ovsPorts(size_t host, const std::string& bridge) {
    ASSIGN_OR_RETURN(std::string out, hosts_[host].ovs->vsctl({"list-ports", bridge}));
    return std::vector<std::string>(absl::StrSplit(out, '\n', absl::SkipEmpty()));
  }

  // Declared first, destroyed last: VM and host namespaces outlive their veths and daemons.
  std::unique_ptr<testing::NetNamespace> under_;
  std::vector<Host> hosts_;
  std::vector<Vm> vms_;
};

// Tunnels and VLANs: same-VLAN VMs on different hosts talk through VXLAN, other VLANs do not
// reach them, and the underlay's ARP answers come from br-phy only.
TEST_F(OvsWiringTest, VmsOfOneVlanTalkAcrossHostsAndOtherVlansDoNot) {
  EXPECT_TRUE(reaches(vms_[0], "10.100.0.2").ok()) << reaches(vms_[0], "10.100.0.2");
  EXPECT_TRUE(reaches(vms_[0], "10.100.0.4").ok()) << reaches(vms_[0], "10.100.0.4");
  EXPECT_TRUE(reaches(vms_[1], "10.100.0.4").ok()) << reaches(vms_[1], "10.100.0.4");
  EXPECT_TRUE(reaches(vms_[4], "10.100.0.3").ok()) << reaches(vms_[4], "10.100.0.3");  // VLAN 200

  EXPECT_TRUE(doesNotReach(vms_[0], "10.100.0.3").ok()) << doesNotReach(vms_[0], "10.100.0.3");
  EXPECT_TRUE(doesNotReach(vms_[0], "10.100.0.5").ok()) << doesNotReach(vms_[0], "10.100.0.5");
  EXPECT_TRUE(doesNotReach(vms_[2], "10.100.0.4").ok()) << doesNotReach(vms_[2], "10.100.0.4");

  // br-phy carries the address and the deterministic MAC. A host pinging another over the
  // underlay learns that MAC: the physical port's kernel side (arp_ignore=1) did not answer
  // with its own.
  const MacAddress phy_mac = deterministicMac("underlay/192.168.77.1");
  auto link = hosts_[0].ns->execChecked({"ip", "-j", "address", "show", "dev", kUnderlay});
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_THAT(*link, HasSubstr(fmt::format("\"address\":\"{}\"", phy_mac.toString())));
  EXPECT_THAT(*link, HasSubstr("\"local\":\"192.168.77.1\""));
  ASSERT_TRUE(hosts_[1].ns->execChecked({"ip", "neigh", "flush", "all"}).ok());
  ASSERT_TRUE(
      hosts_[1].ns->execChecked({"ping", "-n", "-c", "1", "-w", "20", "192.168.77.1"}).ok());
  auto neighbour = hosts_[1].ns->execChecked({"ip", "neigh", "show", "192.168.77.1"});
  ASSERT_TRUE(neighbour.ok()) << neighbour.status();
  EXPECT_THAT(*neighbour, HasSubstr(phy_mac.toString()));
}

// ARP request "who has 10.100.0.99, tell SENDER" as a 60-byte broadcast frame.
std::vector<uint8_t> arpRequest(const MacAddress& sender, std::array<uint8_t, 4> sender_ip) {
  std::vector<uint8_t> frame(6, 0xff);
  frame.insert(frame.end(), sender.bytes().begin(), sender.bytes().end());
  frame.insert(frame.end(), {0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01});
  frame.insert(frame.end(), sender.bytes().begin(), sender.bytes().end());
  frame.insert(frame.end(), sender_ip.begin(), sender_ip.end());
  frame.insert(frame.end(), {0, 0, 0, 0, 0, 0, 10, 100, 0, 99});
  frame.resize(kMinEthernetFrameBytes, 0);
  return frame;
}

// What one VM's packet socket received of the test's frames.
struct Received {
  int arp = 0;
  std::map<std::string, int> markers;

  void count(std::span<const uint8_t> frame, const std::vector<uint8_t>& arp_frame) {
    if (frame.size() >= 42 &&
        std::equal(arp_frame.begin(), arp_frame.begin() + 42, frame.begin())) {
      ++arp;
    }
    std::string tag = testframes::tagOf(frame);
    if (!tag.empty()) ++markers[tag];
  }
};

// Split horizon: with a full mesh of tunnels a broadcast would circle between the three hosts
// forever (measured by hand without `protected`: thousands of copies of one ARP request within
// a second). With it, every VM of the VLAN gets exactly one copy and the sender none.
//
// Ordering, not time, decides when to stop reading: a VM's socket is read until a marker frame
// that was sent after the ARP request arrives; a looping copy would keep arriving, so the
// sockets are drained again after a second round of markers.
TEST_F(OvsWiringTest, BroadcastReachesEveryVmOfItsVlanOnceAndDoesNotLoop) {
  // Every pair of hosts resolves its tunnel endpoints first, so that a looping copy would have
  // a path (a tunnel whose neighbour is unresolved drops what it should carry).
  ASSERT_TRUE(reaches(vms_[0], "10.100.0.2").ok()) << reaches(vms_[0], "10.100.0.2");
  ASSERT_TRUE(reaches(vms_[0], "10.100.0.4").ok()) << reaches(vms_[0], "10.100.0.4");
  ASSERT_TRUE(reaches(vms_[1], "10.100.0.4").ok()) << reaches(vms_[1], "10.100.0.4");
  ASSERT_TRUE(reaches(vms_[4], "10.100.0.3").ok()) << reaches(vms_[4], "10.100.0.3");

  std::vector<UniqueFd> sockets;
  for (const Vm& vm : vms_) {
    auto fd = vm.ns->packetSocket("eth0");
    ASSERT_TRUE(fd.ok()) << fd.status();
    const int one = 1;  // only what arrives, not what this VM sends
    ASSERT_EQ(::setsockopt(fd->get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)), 0);
    ASSERT_TRUE(testing::drainFrames(fd->get()).ok());
    sockets.push_back(std::move(*fd));
  }
  auto send = [&](size_t vm, const std::vector<uint8_t>& frame) {
    return ::send(sockets[vm].get(), frame.data(), frame.size(), 0) ==
           static_cast<ssize_t>(frame.size());
  };
  std::vector<Received> received(vms_.size());
  const std::vector<uint8_t> arp = arpRequest(vms_[0].mac, {10, 100, 0, 1});
  // Reads VM `vm`'s socket until the marker has arrived (and the ARP request, if expected).
  auto readUntil = [&](size_t vm, const std::string& marker, bool with_arp) {
    return testing::readMatchingFrame(
        sockets[vm].get(),
        [&](std::span<const uint8_t> frame) {
          received[vm].count(frame, arp);
          return received[vm].markers[marker] > 0 && (!with_arp || received[vm].arp > 0);
        },
        kFrameTimeout);
  };

  // Round 1: vm1 (VLAN 100, host-1) broadcasts the ARP request, then a marker; vm5 (VLAN 200,
  // host-1) a marker of its own.
  ASSERT_TRUE(send(0, arp));
  ASSERT_TRUE(send(0, testframes::broadcastFrame(vms_[0].mac, "after-arp")));
  ASSERT_TRUE(send(4, testframes::broadcastFrame(vms_[4].mac, "vlan200-1")));
  for (size_t vm : {size_t{1}, size_t{3}}) {
    auto got = readUntil(vm, "after-arp", true);
    ASSERT_TRUE(got.ok()) << vms_[vm].id << ": " << got.status();
  }
  auto got = readUntil(2, "vlan200-1", false);
  ASSERT_TRUE(got.ok()) << got.status();

  // Round 2, from other hosts: vm2 (VLAN 100) and vm3 (VLAN 200) broadcast markers.
  ASSERT_TRUE(send(1, testframes::broadcastFrame(vms_[1].mac, "round-2")));
  ASSERT_TRUE(send(2, testframes::broadcastFrame(vms_[2].mac, "vlan200-2")));
  for (size_t vm : {size_t{0}, size_t{3}}) {
    got = readUntil(vm, "round-2", false);
    ASSERT_TRUE(got.ok()) << vms_[vm].id << ": " << got.status();
  }
  got = readUntil(4, "vlan200-2", false);
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t vm = 0; vm < vms_.size(); ++vm) {
    auto rest = testing::drainFrames(sockets[vm].get());
    ASSERT_TRUE(rest.ok()) << rest.status();
    for (const auto& frame : *rest) received[vm].count(frame, arp);
  }

  EXPECT_EQ(received[1].arp, 1) << "vm-2, other host, same VLAN";
  EXPECT_EQ(received[3].arp, 1) << "vm-4, third host, same VLAN";
  EXPECT_EQ(received[0].arp, 0) << "vm-1 got its own broadcast back: a loop";
  EXPECT_EQ(received[2].arp, 0) << "vm-3 is on VLAN 200";
  EXPECT_EQ(received[4].arp, 0) << "vm-5 is on VLAN 200";
  EXPECT_EQ(received[1].markers["after-arp"], 1);
  EXPECT_EQ(received[3].markers["after-arp"], 1);
  EXPECT_EQ(received[0].markers["round-2"], 1);
  EXPECT_EQ(received[3].markers["round-2"], 1);
  EXPECT_EQ(received[2].markers["vlan200-1"], 1);
  EXPECT_EQ(received[4].markers["vlan200-2"], 1);
  EXPECT_EQ(received[2].markers["after-arp"] + received[4].markers["after-arp"] +
                received[2].markers["round-2"] + received[4].markers["round-2"],
            0)
      << "VLAN 100 broadcasts reached VLAN 200";
}

TEST_F(OvsWiringTest, ListVmPortsReturnsTheExternalIds) {
  auto ports = hosts_[2].ovs_switch->listVmPorts(kIntegration);
  ASSERT_TRUE(ports.ok()) << ports.status();
  EXPECT_THAT(*ports, ElementsAre(vms_[2].port(), vms_[3].port()));  // tap-vm3, tap-vm4
  EXPECT_EQ((*ports)[1].vm_id, "vm-4 \"four\", {x}=y");

  // As OVS's own tools show them.
  auto mac = hosts_[2].ovs->vsctl({"get", "Interface", "tap-vm3", "external_ids:attached-mac"});
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(*mac, fmt::format("\"{}\"\n", vms_[2].mac.toString()));
  auto tag = hosts_[2].ovs->vsctl({"get", "Port", "tap-vm3", "tag"});
  ASSERT_TRUE(tag.ok()) << tag.status();
  EXPECT_EQ(*tag, "200\n");

  auto tunnels = hosts_[2].ovs_switch->listTunnels(kIntegration);
  ASSERT_TRUE(tunnels.ok()) << tunnels.status();
  ASSERT_EQ(tunnels->size(), 2u);
  for (const Tunnel& tunnel : *tunnels) {
    EXPECT_TRUE(tunnel.is_protected) << tunnel.port;
    EXPECT_EQ(tunnel.port, OvsSwitch::tunnelPortName(tunnel.spec.peer_host));
    EXPECT_EQ(tunnel.spec.vni, kVni);
  }
}

// Only Flotilla's VM ports that are not kept go; foreign ports, tunnels and kept ports stay.
TEST_F(OvsWiringTest, RemoveStalePortsRemovesExactlyTheStaleOnes) {
  Host& host = hosts_[2];
  auto stale_link = testing::VethPair::create({.ns = host.ns.get(), .name = "tap-stale"},
                                              {.ns = host.ns.get(), .name = "stale-peer"});
  ASSERT_TRUE(stale_link.ok()) << stale_link.status();
  auto foreign_link = testing::VethPair::create({.ns = host.ns.get(), .name = "foreign"},
                                                {.ns = host.ns.get(), .name = "foreign-peer"});
  ASSERT_TRUE(foreign_link.ok()) << foreign_link.status();
  ASSERT_TRUE(host.ovs_switch
                  ->addVmPort({.bridge = kIntegration,
                               .port = "tap-stale",
                               .vlan_tag = 100,
                               .vm_id = "vm-gone",
                               .interface_id = "0",
                               .mac = deterministicMac("vm-gone/0")})
                  .ok());
  ASSERT_TRUE(host.ovs->addPort(kIntegration, "foreign", 100).ok());
  auto before = ovsPorts(2, kIntegration);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->size(), 6u);  // 2 VMs, stale, foreign, 2 tunnels

  const std::vector<std::string> keep = {"tap-vm3", "tap-vm4"};
  auto removed = host.ovs_switch->removeStalePorts(kIntegration, keep);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, ElementsAre("tap-stale"));
  auto after = ovsPorts(2, kIntegration);
  ASSERT_TRUE(after.ok()) << after.status();
  std::vector<std::string> expected = *before;
  std::erase(expected, "tap-stale");
  EXPECT_EQ(*after, expected);

  auto again = host.ovs_switch->removeStalePorts(kIntegration, keep);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(*again, IsEmpty());
  EXPECT_TRUE(reaches(vms_[3], "10.100.0.1").ok()) << reaches(vms_[3], "10.100.0.1");
}

TEST_F(OvsWiringTest, SyncTunnelsRemovesTheTunnelToADroppedPeer) {
  Vm& vm1 = vms_[0];
  ASSERT_TRUE(reaches(vm1, "10.100.0.4").ok()) << reaches(vm1, "10.100.0.4");

  OvsSwitch& host1 = *hosts_[0].ovs_switch;
  auto changes = host1.syncTunnels(kIntegration, peersOf(0, {1}));
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(changes->removed, ElementsAre(OvsSwitch::tunnelPortName("host-3")));
  EXPECT_THAT(changes->added, IsEmpty());
  EXPECT_THAT(changes->updated, IsEmpty());
  auto tunnels = host1.listTunnels(kIntegration);
  ASSERT_TRUE(tunnels.ok()) << tunnels.status();
  ASSERT_EQ(tunnels->size(), 1u);
  EXPECT_EQ((*tunnels)[0].spec, peersOf(0, {1})[0]);
  auto ports = ovsPorts(0, kIntegration);
  ASSERT_TRUE(ports.ok()) << ports.status();
  EXPECT_THAT(*ports, Not(::testing::Contains(OvsSwitch::tunnelPortName("host-3"))));

  // host-3 is unreachable from host-1 now, also not through host-2 (split horizon); host-2
  // still is.
  EXPECT_TRUE(doesNotReach(vm1, "10.100.0.4").ok()) << doesNotReach(vm1, "10.100.0.4");
  EXPECT_TRUE(reaches(vm1, "10.100.0.2").ok()) << reaches(vm1, "10.100.0.2");

  // The peer comes back.
  changes = host1.syncTunnels(kIntegration, peersOf(0, {1, 2}));
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(changes->added, ElementsAre(OvsSwitch::tunnelPortName("host-3")));
  EXPECT_TRUE(reaches(vm1, "10.100.0.4").ok()) << reaches(vm1, "10.100.0.4");
}

// An agent that restarts runs the same wiring again: nothing changes and traffic still flows.
TEST_F(OvsWiringTest, RepeatingTheWholeWiringChangesNothing) {
  auto table = [&](size_t host) {
    return hosts_[host].ovs->vsctl(
        {"--format=json", "--columns=name,tag,vlan_mode,protected,external_ids", "list", "Port"});
  };
  std::vector<std::string> before;
  for (size_t i = 0; i < hosts_.size(); ++i) {
    auto text = table(i);
    ASSERT_TRUE(text.ok()) << text.status();
    before.push_back(*text);
  }
  wireEverything();
  for (size_t i = 0; i < hosts_.size(); ++i) {
    auto changes = hosts_[i].ovs_switch->syncTunnels(kIntegration, peersOf(i, {0, 1, 2}));
    ASSERT_TRUE(changes.ok()) << changes.status();
    EXPECT_TRUE(changes->empty()) << hosts_[i].name;
    auto text = table(i);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, before[i]) << hosts_[i].name;
  }
  EXPECT_TRUE(reaches(vms_[1], "10.100.0.4").ok()) << reaches(vms_[1], "10.100.0.4");
}

// A port whose tap does not exist is refused with OVS's reason and not left behind; so is an
// underlay port that does not exist.
TEST_F(OvsWiringTest, MissingInterfacesAreRefusedWithoutLeftovers) {
  OvsSwitch& ovs = *hosts_[0].ovs_switch;
  absl::Status status = ovs.addVmPort({.bridge = kIntegration,
                                       .port = "tap-missing",
                                       .vlan_tag = 100,
                                       .vm_id = "vm-x",
                                       .interface_id = "0",
                                       .mac = deterministicMac("vm-x/0")});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("tap-missing"));
  EXPECT_THAT(status.message(), HasSubstr("could not open network device tap-missing"));
  auto ports = ovsPorts(0, kIntegration);
  ASSERT_TRUE(ports.ok()) << ports.status();
  EXPECT_THAT(*ports, Not(::testing::Contains("tap-missing")));

  status = ovs.ensureUnderlayBridge(
      {.bridge = "br-phy2", .physical_port = "eth9", .cidr = "192.168.78.1/24", .hwaddr = {}});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("eth9 does not exist"));
  auto bridges = hosts_[0].ovs->vsctl({"list-br"});
  ASSERT_TRUE(bridges.ok()) << bridges.status();
  EXPECT_EQ(*bridges, "br-int\nbr-phy\n");
}

}  // namespace
}  // namespace flotilla::network
