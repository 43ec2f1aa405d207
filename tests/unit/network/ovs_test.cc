// Tests of OvsSwitch against FakeCommandRunner: the exact ovs-vsctl / ip / sysctl command
// lines, parsing of `ovs-vsctl --format=json` listings (answered from a small in-memory
// model of the database), convergence without redundant changes, validation, and error
// messages that name the object and quote the tool's error.
#include "network/ovs.h"

#include <signal.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "common/testing/fake_command_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/mac_allocation.h"
#include "nlohmann/json.hpp"

namespace flotilla::network {
namespace {

using Json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kDb[] = "unix:/run/flt/db.sock";
const MacAddress kMac(MacAddress::Bytes{0x02, 0xf1, 0x00, 0x00, 0x00, 0x01});

// "ovs-vsctl --db=... --timeout=30 ARGS..." as the switch under test runs it.
std::string vsctlLine(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ovs-vsctl", std::string("--db=") + kDb, "--timeout=30"};
  argv.insert(argv.end(), args.begin(), args.end());
  return formatCommandLine(argv);
}

bool contains(const std::vector<std::string>& argv, std::string_view word) {
  for (const std::string& arg : argv) {
    if (arg == word) return true;
  }
  return false;
}

// The part of the database the switch reads, answering its queries the way ovs-vsctl
// --format=json does (uuids are "p-NAME" for ports and "i-NAME" for interfaces).
struct FakePort {
  std::string bridge{};
  std::optional<int> tag{};
  std::string vlan_mode{};
  bool is_protected = false;
  std::map<std::string, std::string> external_ids{};
  std::string type{};
  std::map<std::string, std::string> options{};
  std::string error{};
  std::map<std::string, std::string> interface_external_ids{};
};

struct FakeOvsdb {
  std::set<std::string> bridges{"br-int"};
  std::map<std::string, FakePort> ports{};  // by name

  static Json map(const std::map<std::string, std::string>& values) {
    Json pairs = Json::array();
    for (const auto& [key, value] : values) pairs.push_back(Json::array({key, value}));
    return Json::array({"map", pairs});
  }
  static Json emptySet() { return Json::array({"set", Json::array()}); }
  static Json uuid(const std::string& id) { return Json::array({"uuid", id}); }
  static std::string table(const std::vector<std::string>& headings, const Json& rows) {
    return Json{{"data", rows}, {"headings", headings}}.dump() + "\n";
  }

  // The three tables of the switch's port query: the bridge's ports, the Ports with
  // flotilla-role=ROLE (on any bridge), every Interface.
  CommandResult portQuery(const std::vector<std::string>& argv) const {
    auto table_name = std::find(argv.begin(), argv.end(), "Bridge");
    const std::string bridge = table_name + 1 < argv.end() ? *(table_name + 1) : "";
    if (bridges.count(bridge) == 0) {
      return FakeCommandRunner::exited(1, "",
                                       "ovs-vsctl: no row \"" + bridge + "\" in table Bridge\n");
    }
    std::string role;
    for (const std::string& arg : argv) {
      if (absl::StartsWith(arg, "external_ids:flotilla-role=")) role = arg.substr(27);
    }
    Json bridge_ports = Json::array();
    Json port_rows = Json::array();
    Json interface_rows = Json::array();
    for (const auto& [name, port] : ports) {
      if (port.bridge == bridge) bridge_ports.push_back(uuid("p-" + name));
      const auto found = port.external_ids.find("flotilla-role");
      if (found != port.external_ids.end() && found->second == role) {
        port_rows.push_back(Json::array(
            {uuid("p-" + name), name, port.tag.has_value() ? Json(*port.tag) : emptySet(),
             emptySet(), port.vlan_mode.empty() ? emptySet() : Json(port.vlan_mode),
             port.is_protected, uuid("i-" + name), map(port.external_ids)}));
      }
      interface_rows.push_back(Json::array({uuid("i-" + name), port.type, map(port.options),
                                            port.error.empty() ? emptySet() : Json(port.error),
                                            map(port.interface_external_ids)}));
    }
    // A set of one element is printed as the bare element.
    const Json ports_cell =
        bridge_ports.size() == 1 ? bridge_ports[0] : Json::array({"set", bridge_ports});
    return FakeCommandRunner::exited(
        0, table({"ports"}, Json::array({Json::array({ports_cell})})) +
               table({"_uuid", "name", "tag", "trunks", "vlan_mode", "protected", "interfaces",
                      "external_ids"},
                     port_rows) +
               table({"_uuid", "type", "options", "error", "external_ids"}, interface_rows));
  }

  CommandResult interfaceError(const std::string& name) const {
    const auto found = ports.find(name);
    const Json error = found == ports.end() || found->second.error.empty()
                           ? emptySet()
                           : Json(found->second.error);
    return FakeCommandRunner::exited(0, table({"error"}, Json::array({Json::array({error})})));
  }

  // Answers queries; every other command succeeds silently.
  absl::StatusOr<CommandResult> answer(const std::vector<std::string>& argv) const {
    if (argv[0] != "ovs-vsctl" || !contains(argv, "--format=json")) {
      return FakeCommandRunner::exited(0);
    }
    if (contains(argv, "Bridge")) return portQuery(argv);
    if (contains(argv, "--columns=error")) return interfaceError(argv.back());
    return FakeCommandRunner::exited(2, "", "unexpected query");
  }
};

class OvsSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runner_.setHandler([this](const std::vector<std::string>& argv,
                              const CommandOptions&) -> absl::StatusOr<CommandResult> {
      const std::string line = formatCommandLine(argv);
      for (const auto& [fragment, result] : failures_) {
        if (absl::StrContains(line, fragment)) return result;
      }
      if (argv[0] == "ip" && contains(argv, "-j")) {
        return FakeCommandRunner::exited(0, ip_address_json_);
      }
      return db_.answer(argv);
    });
  }

  OvsSwitch makeSwitch(std::string datapath = "netdev") {
    auto ovs = OvsSwitch::create(runner_, {.db = kDb, .datapath_type = std::move(datapath)});
    EXPECT_TRUE(ovs.ok()) << ovs.status();
    return std::move(*ovs);
  }

  // Commands whose line contains the fragment get this result instead.
  void failWhen(std::string fragment, CommandResult result) {
    failures_.emplace_back(std::move(fragment), std::move(result));
  }

  static VmPort vmPort(std::string name = "tap1") {
    return VmPort{.bridge = "br-int",
                  .port = std::move(name),
                  .vlan_tag = 100,
                  .vm_id = "vm-1",
                  .interface_id = "0",
                  .mac = kMac};
  }

  FakeCommandRunner runner_;
  FakeOvsdb db_;
  std::vector<std::pair<std::string, CommandResult>> failures_;
  std::string ip_address_json_ =
      R"([{"ifname":"eth1","addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}])";
};

// ---- options -------------------------------------------------------------------------------

TEST_F(OvsSwitchTest, OptionsAreValidated) {
  auto datapath = OvsSwitch::create(runner_, {.datapath_type = "dpdk"});
  EXPECT_EQ(datapath.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(datapath.status().message(), HasSubstr("\"dpdk\""));
  EXPECT_THAT(datapath.status().message(), HasSubstr("\"system\""));

  auto timeout = OvsSwitch::create(runner_, {.command_timeout = absl::ZeroDuration()});
  EXPECT_EQ(timeout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(timeout.status().message(), HasSubstr("command_timeout"));

  auto db = OvsSwitch::create(runner_, {.db = "db.sock"});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(db.status().message(), HasSubstr("\"db.sock\""));
  EXPECT_THAT(runner_.calls(), IsEmpty());
}

TEST_F(OvsSwitchTest, DatabasePathDefaultAndTimeoutAppearOnEveryCommand) {
  auto by_path = OvsSwitch::create(runner_, {.db = "/tmp/x/db.sock",
                                             .datapath_type = "netdev",
                                             .command_timeout = absl::Milliseconds(2500)});
  ASSERT_TRUE(by_path.ok()) << by_path.status();
  EXPECT_EQ(by_path->options().db, "unix:/tmp/x/db.sock");
  ASSERT_TRUE(by_path->removePort("br-int", "tap1").ok());
  EXPECT_EQ(runner_.lastCall().commandLine(),
            "ovs-vsctl --db=unix:/tmp/x/db.sock --timeout=3 --if-exists del-port br-int tap1");
  // The runner's own bound leaves ovs-vsctl time to give up by itself first.
  EXPECT_EQ(runner_.lastCall().options.timeout, absl::Milliseconds(7500));

  auto by_default = OvsSwitch::create(runner_, {});
  ASSERT_TRUE(by_default.ok()) << by_default.status();
  EXPECT_EQ(by_default->options().datapath_type, "system");
  ASSERT_TRUE(by_default->removePort("br-int", "tap1").ok());
  EXPECT_EQ(runner_.lastCall().commandLine(),
            "ovs-vsctl --timeout=30 --if-exists del-port br-int tap1");
}

// ---- bridges -------------------------------------------------------------------------------

TEST_F(OvsSwitchTest, IntegrationBridgeIsOneIdempotentCommand) {
  OvsSwitch ovs = makeSwitch();
  ASSERT_TRUE(ovs.ensureIntegrationBridge("br-int").ok());
  ASSERT_TRUE(ovs.ensureIntegrationBridge("br-int").ok());
  const std::string expected = vsctlLine({"--may-exist", "add-br", "br-int", "--", "set", "Bridge",
                                          "br-int", "datapath_type=netdev", "fail_mode=standalone",
                                          "external_ids:flotilla=integration"});
  EXPECT_THAT(runner_.commandLines(), ElementsAre(expected, expected));

  auto bad = ovs.ensureIntegrationBridge("br-integration-x");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("integration bridge"));
  EXPECT_THAT(bad.message(), HasSubstr("br-integration-x"));
  EXPECT_EQ(runner_.callCount(), 2u);
}

TEST_F(OvsSwitchTest, IntegrationBridgeFailureQuotesOvsVsctl) {
  failWhen("add-br", FakeCommandRunner::exited(1, "", "ovs-vsctl: br-int is not a bridge\n"));
  auto status = makeSwitch().ensureIntegrationBridge("br-int");
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("creating integration bridge br-int: `ovs-vsctl"));
  EXPECT_THAT(status.message(),
              HasSubstr("exited with status 1: ovs-vsctl: br-int is not a bridge"));
}

TEST_F(OvsSwitchTest, UnderlayBridgeCarriesTheAddressAndItsOwnMac) {
  OvsSwitch ovs = makeSwitch();
  ASSERT_TRUE(ovs.ensureUnderlayBridge({.bridge = "br-phy",
                                        .physical_port = "eth1",
                                        .cidr = "192.168.50.11/24",
                                        .hwaddr = {}})
                  .ok());
  // hwaddr zero: deterministicMac("underlay/192.168.50.11") = 02:f1 + sha256 813b315b...
  EXPECT_EQ(deterministicMac("underlay/192.168.50.11").toString(), "02:f1:81:3b:31:5b");
  EXPECT_THAT(
      runner_.commandLines(),
      ElementsAre(
          "ip -j address show dev eth1",
          vsctlLine({"--may-exist", "add-br", "br-phy", "--", "set", "Bridge", "br-phy",
                     "datapath_type=netdev", "fail_mode=standalone",
                     "other_config:hwaddr=\"02:f1:81:3b:31:5b\"", "external_ids:flotilla=underlay",
                     "--", "--may-exist", "add-port", "br-phy", "eth1"}),
          vsctlLine({"--format=json", "--columns=error", "list", "Interface", "eth1"}),
          "sysctl -q -w net/ipv4/conf/eth1/arp_ignore=1", "ip link set eth1 up",
          "ip address replace 192.168.50.11/24 dev br-phy", "ip link set br-phy up"));

  runner_.clearCalls();
  ASSERT_TRUE(
      ovs.ensureUnderlayBridge(
             {.bridge = "br-phy", .physical_port = "eth1", .cidr = "fd00::11/64", .hwaddr = kMac})
          .ok());
  EXPECT_THAT(runner_.calls()[1].argv,
              ::testing::Contains("other_config:hwaddr=\"02:f1:00:00:00:01\""));
  EXPECT_EQ(runner_.calls()[5].commandLine(), "ip address replace fd00::11/64 dev br-phy");
}

TEST_F(OvsSwitchTest, UnderlayBridgeIsRefusedForTheKernelDatapath) {
  auto status = makeSwitch("system").ensureUnderlayBridge(
      {.bridge = "br-phy", .physical_port = "eth1", .cidr = "192.168.50.11/24", .hwaddr = {}});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("kernel routes VXLAN"));
  EXPECT_THAT(status.message(), HasSubstr("eth1"));
  EXPECT_THAT(runner_.calls(), IsEmpty());
}

TEST_F(OvsSwitchTest, UnderlayBridgeChecksItsInputsBeforeChangingAnything) {
  OvsSwitch ovs = makeSwitch();
  struct Case {
    UnderlaySpec spec;
    const char* message;
  };
  const Case cases[] = {
      {{.bridge = "br-phy", .physical_port = "eth1", .cidr = "192.168.50.11", .hwaddr = {}},
       "has no /PREFIX"},
      {{.bridge = "br-phy", .physical_port = "eth1", .cidr = "192.168.50.11/33", .hwaddr = {}},
       "prefix length that is not 0..32"},
      {{.bridge = "br-phy", .physical_port = "eth1", .cidr = "host/24", .hwaddr = {}},
       "does not start with an IP address"},
      {{.bridge = "br-phy", .physical_port = "br-phy", .cidr = "10.0.0.1/8", .hwaddr = {}},
       "both named br-phy"},
      {{.bridge = "br-phy",
        .physical_port = "eth1",
        .cidr = "10.0.0.1/8",
        .hwaddr = MacAddress::broadcast()},
       "multicast"},
      {{.bridge = "", .physical_port = "eth1", .cidr = "10.0.0.1/8", .hwaddr = {}},
       "underlay bridge"},
  };
  for (const Case& c : cases) {
    absl::Status status = ovs.ensureUnderlayBridge(c.spec);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
  EXPECT_THAT(runner_.calls(), IsEmpty());
}

TEST_F(OvsSwitchTest, UnderlayPhysicalPortMustExistWithoutAnAddress) {
  OvsSwitch ovs = makeSwitch();
  const UnderlaySpec spec = {
      .bridge = "br-phy", .physical_port = "eth1", .cidr = "192.168.50.11/24", .hwaddr = {}};
  failWhen("ip -j address show dev eth1",
           FakeCommandRunner::exited(1, "", "Device \"eth1\" does not exist.\n"));
  absl::Status missing = ovs.ensureUnderlayBridge(spec);
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.message(), HasSubstr("physical port eth1 does not exist"));
  EXPECT_EQ(runner_.callCount(), 1u);  // nothing was created

  failures_.clear();
  runner_.clearCalls();
  ip_address_json_ =
      R"([{"ifname":"eth1","addr_info":[{"family":"inet","local":"192.168.50.11","prefixlen":24,"scope":"global"}]}])";
  absl::Status addressed = ovs.ensureUnderlayBridge(spec);
  EXPECT_EQ(addressed.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(addressed.message(), HasSubstr("eth1 carries the address 192.168.50.11/24"));
  EXPECT_THAT(addressed.message(), HasSubstr("ip address del 192.168.50.11/24 dev eth1"));
  EXPECT_EQ(runner_.callCount(), 1u);
}

// ---- VM ports ------------------------------------------------------------------------------

TEST_F(OvsSwitchTest, VmPortIsAnAccessPortWithFlotillasExternalIds) {
  OvsSwitch ovs = makeSwitch();
  ASSERT_TRUE(ovs.addVmPort(vmPort()).ok());
  const std::string add = vsctlLine(
      {"--may-exist", "add-port", "br-int", "tap1", "--", "set", "Port", "tap1", "tag=100",
       "vlan_mode=access", "trunks=[]", "external_ids:flotilla-role=vm",
       "external_ids:flotilla-vm-id=\"vm-1\"", "external_ids:flotilla-iface-id=\"0\"", "--", "set",
       "Interface", "tap1", "external_ids:attached-mac=\"02:f1:00:00:00:01\""});
  const std::string check =
      vsctlLine({"--format=json", "--columns=error", "list", "Interface", "tap1"});
  EXPECT_THAT(runner_.commandLines(), ElementsAre(add, check));

  // Repeating it (after an agent restart, or with a new VLAN) is the same single transaction.
  runner_.clearCalls();
  VmPort moved = vmPort();
  moved.vlan_tag = 200;
  ASSERT_TRUE(ovs.addVmPort(moved).ok());
  EXPECT_THAT(runner_.calls()[0].argv, ::testing::Contains("tag=200"));
  EXPECT_EQ(runner_.callCount(), 2u);
}

TEST_F(OvsSwitchTest, VmPortValuesAreQuotedForOvsdb) {
  VmPort port = vmPort();
  port.vm_id = "web \"1\", {x}=y\\z";
  port.interface_id = "nic\t0";
  ASSERT_TRUE(makeSwitch().addVmPort(port).ok());
  EXPECT_THAT(runner_.calls()[0].argv,
              ::testing::Contains(R"(external_ids:flotilla-vm-id="web \"1\", {x}=y\\z")"));
  EXPECT_THAT(runner_.calls()[0].argv,
              ::testing::Contains(R"(external_ids:flotilla-iface-id="nic\u00090")"));
}

TEST_F(OvsSwitchTest, VmPortInputsAreValidated) {
  OvsSwitch ovs = makeSwitch();
  auto check = [&](const VmPort& port, const char* message) {
    absl::Status status = ovs.addVmPort(port);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(status.message(), HasSubstr(message));
  };
  VmPort port = vmPort();
  port.vlan_tag = 0;
  check(port, "VLAN tag 0 is out of range; use 1..4094");
  port.vlan_tag = 4095;
  check(port, "VLAN tag 4095");
  port = vmPort();
  port.vm_id = "";
  check(port, "vm_id and interface_id must both be set");
  port = vmPort();
  port.mac = MacAddress();
  check(port, "MAC 00:00:00:00:00:00 is not a unicast address");
  port = vmPort();
  port.mac = MacAddress::broadcast();
  check(port, "not a unicast address");
  port = vmPort("a-very-long-tap-name");
  check(port, "port of VM vm-1");
  EXPECT_THAT(runner_.calls(), IsEmpty());
}

TEST_F(OvsSwitchTest, VmPortThatOvsCannotOpenIsRemovedAgain) {
  db_.ports["tap1"] =
      FakePort{.bridge = "br-int", .error = "could not open network device tap1 (No such device)"};
  absl::Status status = makeSwitch().addVmPort(vmPort());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("adding port tap1 of VM vm-1 to bridge br-int"));
  EXPECT_THAT(status.message(), HasSubstr("could not open network device tap1 (No such device)"));
  EXPECT_THAT(status.message(), HasSubstr("create the tap first (the port was removed again)"));
  ASSERT_EQ(runner_.callCount(), 3u);
  EXPECT_EQ(runner_.lastCall().commandLine(),
            vsctlLine({"--if-exists", "del-port", "br-int", "tap1"}));
}

TEST_F(OvsSwitchTest, VmPortFailureNamesThePortAndQuotesOvsVsctl) {
  failWhen("add-port", FakeCommandRunner::exited(
                           1, "",
                           "ovs-vsctl: cannot create a port named tap1 because a port named tap1 "
                           "already exists on bridge br-ex\n"));
  absl::Status status = makeSwitch().addVmPort(vmPort());
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("adding port tap1 of VM vm-1 to bridge br-int: "));
  EXPECT_THAT(status.message(), HasSubstr("already exists on bridge br-ex"));
  EXPECT_EQ(runner_.callCount(), 1u);
}

TEST_F(OvsSwitchTest, DaemonsThatDoNotAnswerGetAHint) {
  failWhen("add-port", FakeCommandRunner::exited(
                           1, "",
                           "ovs-vsctl: unix:/run/flt/db.sock: database connection failed (No "
                           "such file or directory)\n"));
  absl::Status down = makeSwitch().addVmPort(vmPort());
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(down.message(), HasSubstr("is ovsdb-server running"));
  EXPECT_THAT(down.message(), HasSubstr(kDb));

  failures_.clear();
  failWhen("add-port", FakeCommandRunner::killedBy(SIGALRM));
  absl::Status stuck = makeSwitch().addVmPort(vmPort());
  EXPECT_EQ(stuck.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(stuck.message(), HasSubstr("is ovs-vswitchd running?"));
  EXPECT_THAT(stuck.message(), HasSubstr("port tap1"));
}

TEST_F(OvsSwitchTest, RemovePortIsIdempotentAndQuotesErrors) {
  OvsSwitch ovs = makeSwitch();
  ASSERT_TRUE(ovs.removePort("br-int", "tap1").ok());
  EXPECT_EQ(runner_.lastCall().commandLine(),
            vsctlLine({"--if-exists", "del-port", "br-int", "tap1"}));
  failWhen("del-port", FakeCommandRunner::exited(
                           1, "", "ovs-vsctl: bridge br-int does not have a port tap1\n"));
  absl::Status status = ovs.removePort("br-int", "tap1");
  EXPECT_THAT(status.message(), HasSubstr("removing port tap1 from bridge br-int"));
  EXPECT_THAT(status.message(), HasSubstr("does not have a port tap1"));
}

// ---- listings ------------------------------------------------------------------------------

TEST_F(OvsSwitchTest, ListVmPortsParsesTheJsonListingOfThisBridgeOnly) {
  db_.bridges.insert("br-other");
  db_.ports["tap2"] = FakePort{.bridge = "br-int",
                               .tag = 200,
                               .vlan_mode = "access",
                               .external_ids = {{"flotilla-role", "vm"},
                                                {"flotilla-vm-id", "vm-2"},
                                                {"flotilla-iface-id", "1"}},
                               .interface_external_ids = {{"attached-mac", "02:f1:00:00:00:02"}}};
  db_.ports["tap1"] =
      FakePort{.bridge = "br-int",
               .tag = 100,
               .vlan_mode = "access",
               .external_ids = {{"flotilla-role", "vm"},
                                {"flotilla-vm-id", "vm \"1\""},
                                {"flotilla-iface-id", "0"}},
               .interface_external_ids = {{"attached-mac", "02:f1:00:00:00:01"}, {"other", "x"}}};
  db_.ports["foreign"] = FakePort{.bridge = "br-int", .tag = 100};  // not Flotilla's
  db_.ports["tap9"] =
      FakePort{.bridge = "br-other", .tag = 100, .external_ids = {{"flotilla-role", "vm"}}};
  db_.ports["edited"] = FakePort{.bridge = "br-int",  // tag and MAC removed by hand
                                 .external_ids = {{"flotilla-role", "vm"}}};
  db_.ports["vx-0123456789a"] =
      FakePort{.bridge = "br-int", .external_ids = {{"flotilla-role", "tunnel"}}, .type = "vxlan"};

  auto ports = makeSwitch().listVmPorts("br-int");
  ASSERT_TRUE(ports.ok()) << ports.status();
  EXPECT_THAT(runner_.commandLines(),
              ElementsAre(vsctlLine(
                  {"--format=json", "--", "--columns=ports", "list", "Bridge", "br-int", "--",
                   "--columns=_uuid,name,tag,trunks,vlan_mode,protected,interfaces,external_ids",
                   "find", "Port", "external_ids:flotilla-role=vm", "--",
                   "--columns=_uuid,type,options,error,external_ids", "list", "Interface"})));
  EXPECT_THAT(*ports, ElementsAre(VmPort{.bridge = "br-int",
                                         .port = "edited",
                                         .vlan_tag = 0,
                                         .vm_id = "",
                                         .interface_id = "",
                                         .mac = MacAddress()},
                                  VmPort{.bridge = "br-int",
                                         .port = "tap1",
                                         .vlan_tag = 100,
                                         .vm_id = "vm \"1\"",
                                         .interface_id = "0",
                                         .mac = *MacAddress::parse("02:f1:00:00:00:01")},
                                  VmPort{.bridge = "br-int",
                                         .port = "tap2",
                                         .vlan_tag = 200,
                                         .vm_id = "vm-2",
                                         .interface_id = "1",
                                         .mac = *MacAddress::parse("02:f1:00:00:00:02")}));

  // A bridge with a single port: ovs-vsctl prints the set as its one element.
  auto other = makeSwitch().listVmPorts("br-other");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_EQ(other->size(), 1u);
  EXPECT_EQ((*other)[0].port, "tap9");
}

TEST_F(OvsSwitchTest, ListingAMissingBridgeIsNotFound) {
  auto ports = makeSwitch().listVmPorts("br-nope");
  EXPECT_EQ(ports.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ports.status().message(), HasSubstr("bridge br-nope"));
  auto tunnels = makeSwitch().listTunnels("br-nope");
  EXPECT_EQ(tunnels.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(OvsSwitchTest, UnparsableListingIsAnErrorNotAnEmptyList) {
  failWhen("--format=json", FakeCommandRunner::exited(0, "ports\n-----\n[]\n"));
  auto ports = makeSwitch().listVmPorts("br-int");
  EXPECT_EQ(ports.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(ports.status().message(), HasSubstr("listing the VM ports of bridge br-int"));
  EXPECT_THAT(ports.status().message(), HasSubstr("cannot parse ovs-vsctl's JSON output"));

  failures_.clear();
  failWhen("--format=json", FakeCommandRunner::exited(0, R"({"data":[[1,2]],"headings":["ports"]})"
                                                         "\n"));
  auto mismatched = makeSwitch().listVmPorts("br-int");
  EXPECT_THAT(mismatched.status().message(), HasSubstr("does not match its headings"));
}

TEST_F(OvsSwitchTest, RemoveStalePortsRemovesOnlyFlotillaVmPortsNotKept) {
  for (const char* name : {"tap1", "tap2", "tap3"}) {
    db_.ports[name] =
        FakePort{.bridge = "br-int", .tag = 100, .external_ids = {{"flotilla-role", "vm"}}};
  }
  db_.ports["foreign"] = FakePort{.bridge = "br-int"};
  db_.ports["vx-0123456789a"] =
      FakePort{.bridge = "br-int", .external_ids = {{"flotilla-role", "tunnel"}}, .type = "vxlan"};
  OvsSwitch ovs = makeSwitch();
  const std::vector<std::string> keep = {"tap2", "foreign", "gone"};
  auto removed = ovs.removeStalePorts("br-int", keep);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(*removed, ElementsAre("tap1", "tap3"));
  ASSERT_EQ(runner_.callCount(), 2u);
  EXPECT_EQ(runner_.lastCall().commandLine(),
            vsctlLine({"--", "--if-exists", "del-port", "br-int", "tap1", "--", "--if-exists",
                       "del-port", "br-int", "tap3"}));

  // Nothing stale: only the listing runs.
  runner_.clearCalls();
  const std::vector<std::string> all = {"tap1", "tap2", "tap3"};
  auto none = ovs.removeStalePorts("br-int", all);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_EQ(runner_.callCount(), 1u);
}

// ---- tunnels -------------------------------------------------------------------------------

TEST_F(OvsSwitchTest, TunnelPortNamesAreShortHashesOfThePeer) {
  // printf %s host-a | sha256sum → c151e392ca52...
  EXPECT_EQ(OvsSwitch::tunnelPortName("host-a"), "vx-c151e392ca52");
  EXPECT_EQ(OvsSwitch::tunnelPortName("host-b"), "vx-86947d14af56");
  EXPECT_EQ(OvsSwitch::tunnelPortName("a-much-longer-host-name.example.org").size(), 15u);
}

TEST_F(OvsSwitchTest, SyncTunnelsAddsMissingTunnelsInOneTransaction) {
  OvsSwitch ovs = makeSwitch();
  const std::vector<TunnelSpec> tunnels = {
      {.peer_host = "host-a", .remote_ip = "192.168.50.1", .local_ip = "", .vni = 4242},
      {.peer_host = "host-b",
       .remote_ip = "192.168.50.2",
       .local_ip = "192.168.50.3",
       .vni = 4242}};
  auto changes = ovs.syncTunnels("br-int", tunnels);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(changes->added, ElementsAre("vx-86947d14af56", "vx-c151e392ca52"));
  EXPECT_THAT(changes->updated, IsEmpty());
  EXPECT_THAT(changes->removed, IsEmpty());
  const std::vector<std::string> lines = runner_.commandLines();
  ASSERT_EQ(lines.size(), 3u);  // listing, change, listing (errors)
  EXPECT_EQ(
      lines[1],
      vsctlLine({"--",
                 "--may-exist",
                 "add-port",
                 "br-int",
                 "vx-c151e392ca52",
                 "--",
                 "set",
                 "Interface",
                 "vx-c151e392ca52",
                 "type=vxlan",
                 "options={key=\"4242\", remote_ip=\"192.168.50.1\"}",
                 "--",
                 "set",
                 "Port",
                 "vx-c151e392ca52",
                 "protected=true",
                 "vlan_mode=trunk",
                 "tag=[]",
                 "trunks=[]",
                 "external_ids:flotilla-role=tunnel",
                 "external_ids:flotilla-peer-host=\"host-a\"",
                 "--",
                 "--may-exist",
                 "add-port",
                 "br-int",
                 "vx-86947d14af56",
                 "--",
                 "set",
                 "Interface",
                 "vx-86947d14af56",
                 "type=vxlan",
                 "options={key=\"4242\", local_ip=\"192.168.50.3\", remote_ip=\"192.168.50.2\"}",
                 "--",
                 "set",
                 "Port",
                 "vx-86947d14af56",
                 "protected=true",
                 "vlan_mode=trunk",
                 "tag=[]",
                 "trunks=[]",
                 "external_ids:flotilla-role=tunnel",
                 "external_ids:flotilla-peer-host=\"host-b\""}));
}

// The database as it is after the tunnels of `specs` were created by syncTunnels.
void addTunnels(FakeOvsdb& db, const std::vector<TunnelSpec>& specs) {
  for (const TunnelSpec& spec : specs) {
    FakePort port{
        .bridge = "br-int",
        .vlan_mode = "trunk",
        .is_protected = true,
        .external_ids = {{"flotilla-role", "tunnel"}, {"flotilla-peer-host", spec.peer_host}},
        .type = "vxlan",
        .options = {{"remote_ip", spec.remote_ip}, {"key", std::to_string(spec.vni)}}};
    if (!spec.local_ip.empty()) port.options["local_ip"] = spec.local_ip;
    db.ports[OvsSwitch::tunnelPortName(spec.peer_host)] = port;
  }
}

TEST_F(OvsSwitchTest, SyncTunnelsDoesNothingWhenTheyAreAsWanted) {
  const std::vector<TunnelSpec> tunnels = {
      {.peer_host = "host-a", .remote_ip = "192.168.50.1", .local_ip = "", .vni = 7},
      {.peer_host = "host-b", .remote_ip = "fd00::2", .local_ip = "fd00::3", .vni = 7}};
  addTunnels(db_, tunnels);
  OvsSwitch ovs = makeSwitch();
  auto changes = ovs.syncTunnels("br-int", tunnels);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_TRUE(changes->empty());
  EXPECT_EQ(runner_.callCount(), 1u);  // the listing only

  auto listed = ovs.listTunnels("br-int");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(
      *listed,
      ElementsAre(Tunnel{.port = "vx-86947d14af56", .spec = tunnels[1], .is_protected = true},
                  Tunnel{.port = "vx-c151e392ca52", .spec = tunnels[0], .is_protected = true}));
}

TEST_F(OvsSwitchTest, SyncTunnelsUpdatesChangedAndRemovesDroppedPeers) {
  addTunnels(db_, {{.peer_host = "host-a", .remote_ip = "192.168.50.1", .local_ip = "", .vni = 7},
                   {.peer_host = "host-b", .remote_ip = "192.168.50.2", .local_ip = "", .vni = 7},
                   {.peer_host = "host-c", .remote_ip = "192.168.50.3", .local_ip = "", .vni = 7}});
  db_.ports["vx-c151e392ca52"].is_protected = false;  // host-a: split horizon lost
  db_.ports["foreign-vx"] = FakePort{.bridge = "br-int", .type = "vxlan"};  // not Flotilla's
  const std::vector<TunnelSpec> wanted = {
      {.peer_host = "host-a", .remote_ip = "192.168.50.1", .local_ip = "", .vni = 7},
      {.peer_host = "host-b", .remote_ip = "192.168.60.2", .local_ip = "", .vni = 7}};
  auto changes = makeSwitch().syncTunnels("br-int", wanted);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(changes->added, IsEmpty());
  EXPECT_THAT(changes->updated, ElementsAre("vx-86947d14af56", "vx-c151e392ca52"));
  EXPECT_THAT(changes->removed, ElementsAre(OvsSwitch::tunnelPortName("host-c")));
  const std::string change = runner_.calls()[1].commandLine();
  EXPECT_THAT(change, HasSubstr("remote_ip=\"192.168.60.2\""));
  EXPECT_THAT(change,
              HasSubstr("-- --if-exists del-port br-int " + OvsSwitch::tunnelPortName("host-c")));
  EXPECT_THAT(change, Not(HasSubstr("foreign-vx")));
}

TEST_F(OvsSwitchTest, SyncTunnelsReportsTunnelsOvsCannotSetUp) {
  const std::vector<TunnelSpec> tunnels = {
      {.peer_host = "host-a", .remote_ip = "192.168.50.1", .local_ip = "", .vni = 7}};
  addTunnels(db_, tunnels);
  db_.ports["vx-c151e392ca52"].is_protected = false;
  db_.ports["vx-c151e392ca52"].error = "could not add network device vx-c151e392ca52";
  auto changes = makeSwitch().syncTunnels("br-int", tunnels);
  EXPECT_EQ(changes.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(changes.status().message(),
              HasSubstr("vx-c151e392ca52 (peer host-a): could not add network device"));
}

TEST_F(OvsSwitchTest, SyncTunnelsValidatesTheWholeListFirst) {
  OvsSwitch ovs = makeSwitch();
  auto check = [&](std::vector<TunnelSpec> tunnels, const char* message) {
    auto changes = ovs.syncTunnels("br-int", tunnels);
    EXPECT_EQ(changes.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_THAT(changes.status().message(), HasSubstr(message));
  };
  const TunnelSpec a = {.peer_host = "host-a", .remote_ip = "10.0.0.1", .local_ip = "", .vni = 1};
  check({a, a}, "peer host host-a is listed twice");
  TunnelSpec same_ip = a;
  same_ip.peer_host = "host-b";
  check({a, same_ip}, "host-a and host-b have the same tunnel endpoint 10.0.0.1");
  TunnelSpec bad = a;
  bad.remote_ip = "10.0.0.300";
  check({bad}, "tunnel to host-a: remote_ip \"10.0.0.300\" is not an IP address");
  bad = a;
  bad.local_ip = "eth0";
  check({bad}, "local_ip \"eth0\"");
  bad = a;
  bad.vni = 1u << 24;
  check({bad}, "VNI 16777216 is out of range");
  bad = a;
  bad.peer_host = "";
  check({bad}, "has no peer_host");
  EXPECT_THAT(runner_.calls(), IsEmpty());
}

TEST_F(OvsSwitchTest, SyncToNoPeersRemovesEveryFlotillaTunnel) {
  addTunnels(db_, {{.peer_host = "host-a", .remote_ip = "192.168.50.1", .local_ip = "", .vni = 7}});
  auto changes = makeSwitch().syncTunnels("br-int", {});
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_THAT(changes->removed, ElementsAre("vx-c151e392ca52"));
  EXPECT_EQ(runner_.calls()[1].commandLine(),
            vsctlLine({"--", "--if-exists", "del-port", "br-int", "vx-c151e392ca52"}));
}

TEST_F(OvsSwitchTest, RunnerErrorsNameTheOperation) {
  runner_.setHandler(
      [](const std::vector<std::string>&, const CommandOptions&) -> absl::StatusOr<CommandResult> {
        return absl::NotFoundError("cannot run `ovs-vsctl`: ovs-vsctl not found in PATH");
      });
  absl::Status status = makeSwitch().removePort("br-int", "tap1");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("removing port tap1 from bridge br-int"));
  EXPECT_THAT(status.message(), HasSubstr("ovs-vsctl not found"));
}

}  // namespace
}  // namespace flotilla::network
