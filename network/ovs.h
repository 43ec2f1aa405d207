// OvsSwitch: how flotilla-agent wires VMs into Open vSwitch, through `ovs-vsctl` (and `ip`,
// `sysctl` for the underlay bridge) run by an injected CommandRunner. The layout
// (docs/network.md, "Open vSwitch wiring"):
//
//   br-int  (integration bridge, NORMAL learning switch)
//     VM taps       access ports, VLAN tag = the VM network's VLAN
//     vx-<hash>     one VXLAN port per peer host, trunk of every VLAN, `protected` so that
//                   traffic from one tunnel never leaves through another (split horizon)
//   br-phy  (underlay bridge, userspace datapath only)
//     eth1          the physical underlay port; br-phy's own interface carries the host's
//                   tunnel address and MAC
//
// Every operation converges on the requested state and can be repeated at any time, also
// after an agent crash part-way through: ovs-vsctl's --may-exist / --if-exists, one
// transaction per call, and changes computed from what the database holds. Flotilla
// recognises its own ports by external_ids (below) and never touches others.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/command.h"
#include "network/mac_address.h"

namespace flotilla::network {

// external_ids keys Flotilla writes. On the Port row:
inline constexpr char kOvsRoleKey[] = "flotilla-role";  // "vm" or "tunnel"
inline constexpr char kOvsVmIdKey[] = "flotilla-vm-id";
inline constexpr char kOvsInterfaceIdKey[] = "flotilla-iface-id";
inline constexpr char kOvsPeerHostKey[] = "flotilla-peer-host";  // tunnels
// On the Interface row, as in Open vSwitch's integration guide (Documentation/topics/
// integration.rst), so that generic OVS tooling shows which MAC is behind a port:
inline constexpr char kOvsAttachedMacKey[] = "attached-mac";
// On the Bridge row: "integration" or "underlay".
inline constexpr char kOvsBridgeKey[] = "flotilla";

struct OvsSwitchOptions {
  // The OVSDB server, as ovs-vsctl's --db takes it ("unix:/run/openvswitch/db.sock",
  // "tcp:127.0.0.1:6640"); an absolute path means "unix:PATH"; empty: ovs-vsctl's default
  // (unix:/var/run/openvswitch/db.sock).
  std::string db{};
  // "system" (the kernel datapath, production) or "netdev" (the userspace datapath; on hosts
  // without the openvswitch kernel module, as in the test environment).
  std::string datapath_type = "system";
  // Bound for each command. ovs-vsctl gets --timeout (whole seconds, at least 1) and gives up
  // by itself, e.g. when ovs-vswitchd does not apply a change; the runner kills it 5 s later.
  absl::Duration command_timeout = absl::Seconds(30);
};

// The underlay bridge of the userspace datapath ("br-phy" in OVS's userspace-tunneling
// howto): `physical_port` becomes a port of `bridge`, whose own interface carries the host's
// tunnel endpoint address `cidr` and the MAC `hwaddr`.
struct UnderlaySpec {
  std::string bridge{};         // e.g. "br-phy"
  std::string physical_port{};  // e.g. "eth1"; must exist, without IP addresses (link-local ok)
  std::string cidr{};           // e.g. "192.168.50.11/24" (IPv4 or IPv6)
  // The bridge's own MAC, distinct from the physical port's (otherwise the kernel answers
  // every packet a second time through the physical port). Zero: deterministicMac("underlay/"
  // + address) (network/mac_allocation.h).
  MacAddress hwaddr{};
};

// A VM's NIC as an access port of the integration bridge.
struct VmPort {
  std::string bridge{};   // e.g. "br-int"
  std::string port{};     // the tap's name (the tap must exist)
  uint16_t vlan_tag = 0;  // 1..4094: the VM network's VLAN
  std::string vm_id{};    // external_ids:flotilla-vm-id; not empty
  std::string
      interface_id{};  // external_ids:flotilla-iface-id (e.g. "0", the NIC index); not empty
  MacAddress mac{};    // the guest's MAC, external_ids:attached-mac; unicast, not zero

  bool operator==(const VmPort&) const = default;
};

// A VXLAN tunnel to one peer host, carrying every VLAN of the integration bridge.
struct TunnelSpec {
  std::string peer_host{};  // the peer's host name; the port name derives from it
  std::string remote_ip{};  // the peer's tunnel endpoint (IPv4 or IPv6)
  std::string local_ip{};   // this host's endpoint; empty: chosen by route
  uint32_t vni = 0;         // VXLAN network identifier (options:key), 0..16777215

  bool operator==(const TunnelSpec&) const = default;
};

// A Flotilla tunnel port as the database holds it.
struct Tunnel {
  std::string port{};
  TunnelSpec spec{};
  bool is_protected = false;  // Port.protected (split horizon)

  bool operator==(const Tunnel&) const = default;
};

// Tunnel ports syncTunnels created, changed and deleted (port names, sorted).
struct TunnelChanges {
  std::vector<std::string> added{};
  std::vector<std::string> updated{};
  std::vector<std::string> removed{};

  bool empty() const { return added.empty() && updated.empty() && removed.empty(); }
};

class OvsSwitch {
 public:
  // Validates the options (InvalidArgument naming the bad one). `runner` must outlive the
  // switch.
  static absl::StatusOr<OvsSwitch> create(CommandRunner& runner, OvsSwitchOptions options);

  const OvsSwitchOptions& options() const { return options_; }

  // Creates the bridge if missing; sets datapath_type, fail_mode=standalone (with no
  // controller: a NORMAL MAC-learning switch) and external_ids:flotilla=integration.
  absl::Status ensureIntegrationBridge(std::string_view bridge);

  // Userspace datapath only (FailedPrecondition with datapath "system": the kernel routes
  // VXLAN packets through the host's own interfaces, the address stays on the NIC). Creates
  // the bridge if missing (datapath_type, other_config:hwaddr, external_ids:flotilla=underlay),
  // adds the physical port, sets it up with arp_ignore=1 (its kernel side must not answer ARP
  // for the bridge's address), assigns `cidr` to the bridge's interface (`ip address
  // replace`; other addresses stay) and sets it up. The physical port is checked first: it
  // must exist and carry no IP address (FailedPrecondition saying to move it to the bridge).
  absl::Status ensureUnderlayBridge(const UnderlaySpec& spec);

  // Adds the tap as an access port (vlan_mode=access, tag, no trunks) with Flotilla's
  // external_ids, or brings an existing port of that name on that bridge to exactly that.
  // FailedPrecondition when OVS cannot open the interface (the tap does not exist): the port
  // is removed again and the message quotes OVS's reason. A port of that name on another
  // bridge is an error (ovs-vsctl's message quoted).
  absl::Status addVmPort(const VmPort& port);

  // Deletes the port from the bridge; nothing to do when it does not exist. An error when it
  // is a port of another bridge.
  absl::Status removePort(std::string_view bridge, std::string_view port);

  // Flotilla's VM ports on `bridge` (external_ids:flotilla-role=vm), sorted by port name.
  // NotFound when the bridge does not exist.
  absl::StatusOr<std::vector<VmPort>> listVmPorts(std::string_view bridge);

  // Deletes Flotilla's VM ports on `bridge` whose name is not in `keep`, in one transaction;
  // returns their names (sorted). Ports without Flotilla's external_ids and tunnels are left
  // alone (syncTunnels removes tunnels).
  absl::StatusOr<std::vector<std::string>> removeStalePorts(std::string_view bridge,
                                                            std::span<const std::string> keep);

  // Flotilla's tunnel ports on `bridge` (external_ids:flotilla-role=tunnel), sorted by port.
  absl::StatusOr<std::vector<Tunnel>> listTunnels(std::string_view bridge);

  // Makes the bridge's Flotilla tunnels exactly `tunnels`: one VXLAN port per peer,
  // tunnelPortName(peer_host), trunk of every VLAN, protected; adds what is missing, updates
  // what differs (options replaced as a whole), deletes tunnels to peers no longer listed, all
  // in one transaction (none when nothing differs). InvalidArgument for duplicate peers,
  // duplicate remote endpoints, bad addresses or VNIs; FailedPrecondition naming the peer when
  // OVS reports an error for a tunnel afterwards.
  absl::StatusOr<TunnelChanges> syncTunnels(std::string_view bridge,
                                            std::span<const TunnelSpec> tunnels);

  // "vx-" + the first 12 hex digits of SHA-256(peer_host): 15 characters (IFNAMSIZ - 1),
  // the same on every host.
  static std::string tunnelPortName(std::string_view peer_host);

 private:
  OvsSwitch(CommandRunner& runner, OvsSwitchOptions options)
      : runner_(&runner), options_(std::move(options)) {}

  // ovs-vsctl [--db=...] --timeout=N ARGS...; its standard output. Errors quote the command
  // line and ovs-vsctl's message, prefixed with `what`.
  absl::StatusOr<std::string> vsctl(const std::vector<std::string>& args, std::string_view what);
  absl::StatusOr<std::string> runTool(const std::vector<std::string>& argv, std::string_view what);
  absl::StatusOr<std::string> interfaceError(std::string_view interface, std::string_view what);

  CommandRunner* runner_;
  OvsSwitchOptions options_;
};

}  // namespace flotilla::network
