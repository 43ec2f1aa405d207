// OvsSwitch (see ovs.h). Changes go through ovs-vsctl, one transaction per call; state is
// read back with `ovs-vsctl --format=json`, whose cells use OVSDB's JSON notation (RFC 7047
// section 5.1): an atom is a JSON string, number or boolean, or ["uuid", "..."]; a set is
// ["set", [atoms]] unless it has exactly one element, which is written as the bare atom; a
// map is ["map", [[key, value], ...]].
#include "network/ovs.h"

#include <arpa/inet.h>
#include <openssl/sha.h>
#include <signal.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status.h"
#include "fmt/format.h"
#include "network/mac_allocation.h"
#include "network/tap.h"
#include "nlohmann/json.hpp"

namespace flotilla::network {
namespace {

using Json = nlohmann::json;
using StringMap = std::map<std::string, std::string>;

constexpr absl::Duration kRunnerGrace = absl::Seconds(5);
constexpr uint32_t kMaxVni = (1u << 24) - 1;
constexpr uint16_t kMaxVlan = 4094;

const Logger& logger() {
  static const Logger* log = new Logger("ovs");
  return *log;
}

// An OVSDB string atom in ovs-vsctl's argument syntax: double-quoted, with JSON escapes, so
// that commas, braces, '=' and quotes in a value cannot change the command's meaning.
std::string ovsdbString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      out += fmt::format("\\u{:04x}", byte);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::string trimmed(std::string_view text) {
  while (!text.empty() && std::string_view(" \t\r\n").find(text.back()) != std::string::npos) {
    text.remove_suffix(1);
  }
  return std::string(text);
}

// "192.168.1.5" or "fd00::5"; InvalidArgument naming `what` otherwise.
absl::Status validateIp(std::string_view text, std::string_view what) {
  const std::string copy(text);
  unsigned char buffer[sizeof(in6_addr)];
  if (::inet_pton(AF_INET, copy.c_str(), buffer) == 1 ||
      ::inet_pton(AF_INET6, copy.c_str(), buffer) == 1) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(fmt::format(
      "{} \"{}\" is not an IP address (expected e.g. 192.168.50.11 or fd00::11)", what, text));
}

// "ADDRESS/PREFIX"; returns the address.
absl::StatusOr<std::string> validateCidr(std::string_view cidr, std::string_view what) {
  const size_t slash = cidr.find('/');
  const auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format(
        "{} \"{}\" {} (expected ADDRESS/PREFIX, e.g. 192.168.50.11/24)", what, cidr, why));
  };
  if (slash == std::string_view::npos) return invalid("has no /PREFIX");
  const std::string address(cidr.substr(0, slash));
  const std::string_view prefix = cidr.substr(slash + 1);
  unsigned char buffer[sizeof(in6_addr)];
  int max_prefix = 0;
  if (::inet_pton(AF_INET, address.c_str(), buffer) == 1) {
    max_prefix = 32;
  } else if (::inet_pton(AF_INET6, address.c_str(), buffer) == 1) {
    max_prefix = 128;
  } else {
    return invalid("does not start with an IP address");
  }
  int length = -1;
  auto [end, error] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), length);
  if (prefix.empty() || error != std::errc() || end != prefix.data() + prefix.size() ||
      length < 0 || length > max_prefix) {
    return invalid(fmt::format("has a prefix length that is not 0..{}", max_prefix));
  }
  return address;
}

absl::Status validateName(std::string_view name, std::string_view what) {
  return annotate(validateInterfaceName(name), what);
}

// ---- ovs-vsctl --format=json output ------------------------------------------------------

// One table: each row maps a heading to its cell.
using Row = std::map<std::string, Json>;

// The tables printed by the commands of one ovs-vsctl run, one JSON object per line.
absl::StatusOr<std::vector<std::vector<Row>>> parseTables(std::string_view output,
                                                          size_t expected) {
  std::vector<std::vector<Row>> tables;
  for (absl::string_view line : absl::StrSplit(absl::string_view(output.data(), output.size()),
                                               '\n', absl::SkipWhitespace())) {
    const Json table = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (table.is_discarded() || !table.is_object() || !table.contains("headings") ||
        !table.contains("data") || !table["headings"].is_array() || !table["data"].is_array()) {
      return absl::InternalError(
          fmt::format("cannot parse ovs-vsctl's JSON output: \"{}\"", line.substr(0, 300)));
    }
    const Json& headings = table["headings"];
    std::vector<Row>& rows = tables.emplace_back();
    for (const Json& data : table["data"]) {
      if (!data.is_array() || data.size() != headings.size()) {
        return absl::InternalError(fmt::format(
            "ovs-vsctl's JSON output has a row that does not match its headings: \"{}\"",
            line.substr(0, 300)));
      }
      Row& row = rows.emplace_back();
      for (size_t i = 0; i < headings.size(); ++i) {
        if (!headings[i].is_string()) return absl::InternalError("ovs-vsctl: non-string heading");
        row[headings[i].get<std::string>()] = data[i];
      }
    }
  }
  if (tables.size() != expected) {
    return absl::InternalError(fmt::format("ovs-vsctl printed {} tables, expected {}: \"{}\"",
                                           tables.size(), expected, output.substr(0, 300)));
  }
  return tables;
}

const Json& cell(const Row& row, const std::string& column) {
  static const Json* null_json = new Json();
  auto found = row.find(column);
  return found == row.end() ? *null_json : found->second;
}

// The elements of a set cell (a bare atom is a set of one).
std::vector<Json> setElements(const Json& value) {
  if (value.is_array() && value.size() == 2 && value[0] == "set" && value[1].is_array()) {
    return std::vector<Json>(value[1].begin(), value[1].end());
  }
  if (value.is_null()) return {};
  return {value};
}

// ["uuid", "..."] → "..."; "" for anything else.
std::string uuidOf(const Json& atom) {
  if (atom.is_array() && atom.size() == 2 && atom[0] == "uuid" && atom[1].is_string()) {
    return atom[1].get<std::string>();
  }
  return "";
}

std::string stringOf(const Json& atom) {
  return atom.is_string() ? atom.get<std::string>() : "";
}

// A map cell with string keys and values (others are skipped).
StringMap mapOf(const Json& value) {
  StringMap map;
  if (!value.is_array() || value.size() != 2 || value[0] != "map" || !value[1].is_array()) {
    return map;
  }
  for (const Json& pair : value[1]) {
    if (pair.is_array() && pair.size() == 2 && pair[0].is_string() && pair[1].is_string()) {
      map[pair[0].get<std::string>()] = pair[1].get<std::string>();
    }
  }
  return map;
}

// An optional integer column (a set of at most one integer): the value, or nullopt.
std::optional<int64_t> optionalInteger(const Json& value) {
  std::vector<Json> elements = setElements(value);
  if (elements.size() != 1 || !elements[0].is_number_integer()) return std::nullopt;
  return elements[0].get<int64_t>();
}

std::string valueOr(const StringMap& map, const std::string& key,
                    const std::string& fallback = "") {
  auto found = map.find(key);
  return found == map.end() ? fallback : found->second;
}

// A Port of a bridge with the Interface of the same name, as far as Flotilla reads them.
struct PortRecord {
  std::string name;
  std::optional<int64_t> tag;
  bool has_trunks = false;
  std::string vlan_mode;
  bool is_protected = false;
  StringMap external_ids;
  // Its interface (Flotilla's ports have exactly one, named like the port).
  std::string type;
  StringMap options;
  std::string error;
  StringMap interface_external_ids;
};

// The ovs-vsctl arguments reading the ports of `bridge` with external_ids:flotilla-role=ROLE
// and all interfaces; readPortRecords() parses what they print.
std::vector<std::string> portQuery(std::string_view bridge, std::string_view role) {
  std::vector<std::string> args = {"--format=json", "--",     "--columns=ports",
                                   "list",          "Bridge", std::string(bridge)};
  args.insert(args.end(),
              {"--", "--columns=_uuid,name,tag,trunks,vlan_mode,protected,interfaces,external_ids",
               "find", "Port", fmt::format("external_ids:{}={}", kOvsRoleKey, role)});
  args.insert(args.end(),
              {"--", "--columns=_uuid,type,options,error,external_ids", "list", "Interface"});
  return args;
}

absl::StatusOr<std::vector<PortRecord>> readPortRecords(std::string_view output) {
  ASSIGN_OR_RETURN(std::vector<std::vector<Row>> tables, parseTables(output, 3));
  if (tables[0].size() != 1) {
    return absl::InternalError(
        fmt::format("ovs-vsctl listed {} bridges, expected 1", tables[0].size()));
  }
  std::set<std::string> bridge_ports;
  for (const Json& port : setElements(cell(tables[0][0], "ports"))) {
    bridge_ports.insert(uuidOf(port));
  }
  std::map<std::string, const Row*> interfaces;
  for (const Row& row : tables[2]) interfaces[uuidOf(cell(row, "_uuid"))] = &row;

  std::vector<PortRecord> records;
  for (const Row& row : tables[1]) {
    if (bridge_ports.count(uuidOf(cell(row, "_uuid"))) == 0) continue;  // another bridge's
    PortRecord& record = records.emplace_back();
    record.name = stringOf(cell(row, "name"));
    record.tag = optionalInteger(cell(row, "tag"));
    record.has_trunks = !setElements(cell(row, "trunks")).empty();
    std::vector<Json> mode = setElements(cell(row, "vlan_mode"));
    record.vlan_mode = mode.size() == 1 ? stringOf(mode[0]) : "";
    record.is_protected = cell(row, "protected").is_boolean() && cell(row, "protected").get<bool>();
    record.external_ids = mapOf(cell(row, "external_ids"));
    for (const Json& uuid : setElements(cell(row, "interfaces"))) {
      auto found = interfaces.find(uuidOf(uuid));
      if (found == interfaces.end()) continue;
      const Row& interface = *found->second;
      record.type = stringOf(cell(interface, "type"));
      record.options = mapOf(cell(interface, "options"));
      std::vector<Json> error = setElements(cell(interface, "error"));
      record.error = error.size() == 1 ? stringOf(error[0]) : "";
      record.interface_external_ids = mapOf(cell(interface, "external_ids"));
    }
  }
  std::sort(records.begin(), records.end(),
            [](const PortRecord& a, const PortRecord& b) { return a.name < b.name; });
  return records;
}

// readPortRecords() of the port query's output; NotFound when the bridge does not exist.
absl::StatusOr<std::vector<PortRecord>> portRecords(const absl::StatusOr<std::string>& out,
                                                    std::string_view bridge,
                                                    std::string_view what) {
  if (!out.ok()) {
    if (absl::StrContains(out.status().message(),
                          fmt::format("no row \"{}\" in table Bridge", bridge))) {
      return absl::NotFoundError(fmt::format("{}: the bridge does not exist", what));
    }
    return out.status();
  }
  absl::StatusOr<std::vector<PortRecord>> records = readPortRecords(*out);
  if (!records.ok()) return annotate(records.status(), what);
  return records;
}

// The tunnel's Interface options as Flotilla sets them.
StringMap tunnelOptions(const TunnelSpec& spec) {
  StringMap options = {{"remote_ip", spec.remote_ip}, {"key", std::to_string(spec.vni)}};
  if (!spec.local_ip.empty()) options["local_ip"] = spec.local_ip;
  return options;
}

// {key="1", remote_ip="10.0.0.2"}: a whole map value for ovs-vsctl's `set`.
std::string mapArgument(const StringMap& map) {
  std::vector<std::string> pairs;
  for (const auto& [key, value] : map)
    pairs.push_back(fmt::format("{}={}", key, ovsdbString(value)));
  return fmt::format("{{{}}}", fmt::join(pairs, ", "));
}

bool tunnelIsAsWanted(const PortRecord& record, const TunnelSpec& spec) {
  return record.type == "vxlan" && record.options == tunnelOptions(spec) && record.is_protected &&
         !record.tag.has_value() && !record.has_trunks && record.vlan_mode == "trunk" &&
         valueOr(record.external_ids, kOvsPeerHostKey) == spec.peer_host;
}

absl::Status validateTunnels(std::span<const TunnelSpec> tunnels) {
  std::map<std::string, std::string> peers_by_port;
  std::map<std::tuple<std::string, std::string, uint32_t>, std::string> peers_by_endpoint;
  for (const TunnelSpec& spec : tunnels) {
    if (spec.peer_host.empty()) {
      return absl::InvalidArgumentError(fmt::format(
          "a tunnel to {} has no peer_host (the peer's host name names the tunnel port)",
          spec.remote_ip));
    }
    const std::string what = fmt::format("tunnel to {}:", spec.peer_host);
    RETURN_IF_ERROR(validateIp(spec.remote_ip, fmt::format("{} remote_ip", what)));
    if (!spec.local_ip.empty()) {
      RETURN_IF_ERROR(validateIp(spec.local_ip, fmt::format("{} local_ip", what)));
    }
    if (spec.vni > kMaxVni) {
      return absl::InvalidArgumentError(fmt::format(
          "{} VNI {} is out of range (VXLAN has 24 bits: 0..{})", what, spec.vni, kMaxVni));
    }
    const std::string port = OvsSwitch::tunnelPortName(spec.peer_host);
    auto [at, fresh] = peers_by_port.emplace(port, spec.peer_host);
    if (!fresh) {
      return absl::InvalidArgumentError(
          at->second == spec.peer_host
              ? fmt::format("peer host {} is listed twice; list each peer once", spec.peer_host)
              : fmt::format("peer hosts {} and {} both map to tunnel port {} (a hash collision); "
                            "rename one of them",
                            at->second, spec.peer_host, port));
    }
    auto [same, unique] = peers_by_endpoint.emplace(
        std::tuple{spec.remote_ip, spec.local_ip, spec.vni}, spec.peer_host);
    if (!unique) {
      return absl::InvalidArgumentError(fmt::format(
          "peer hosts {} and {} have the same tunnel endpoint {} (VNI {}); Open vSwitch accepts "
          "one tunnel per endpoint: fix the peers' addresses",
          same->second, spec.peer_host, spec.remote_ip, spec.vni));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ---- OvsSwitch -----------------------------------------------------------------------------

absl::StatusOr<OvsSwitch> OvsSwitch::create(CommandRunner& runner, OvsSwitchOptions options) {
  if (options.datapath_type != "system" && options.datapath_type != "netdev") {
    return absl::InvalidArgumentError(fmt::format(
        "Open vSwitch datapath_type \"{}\" is not supported: use \"system\" (the kernel "
        "datapath) or \"netdev\" (the userspace datapath, without the kernel module)",
        options.datapath_type));
  }
  if (options.command_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        fmt::format("Open vSwitch command_timeout must be positive, got {}",
                    absl::FormatDuration(options.command_timeout)));
  }
  if (!options.db.empty() && options.db.front() == '/') options.db = "unix:" + options.db;
  if (!options.db.empty() && !absl::StartsWith(options.db, "unix:") &&
      !absl::StartsWith(options.db, "tcp:") && !absl::StartsWith(options.db, "ssl:")) {
    return absl::InvalidArgumentError(
        fmt::format("Open vSwitch database \"{}\" is neither a socket path nor a remote like "
                    "unix:/run/openvswitch/db.sock or tcp:127.0.0.1:6640",
                    options.db));
  }
  return OvsSwitch(runner, std::move(options));
}

std::string OvsSwitch::tunnelPortName(std::string_view peer_host) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(peer_host.data()), peer_host.size(), digest);
  return fmt::format("vx-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2],
                     digest[3], digest[4], digest[5]);
}

absl::StatusOr<std::string> OvsSwitch::runTool(const std::vector<std::string>& argv,
                                               std::string_view what) {
  CommandOptions command;
  command.timeout = options_.command_timeout + kRunnerGrace;
  absl::StatusOr<CommandResult> result = runner_->run(argv, command);
  if (!result.ok()) return annotate(result.status(), what);
  if (result->status.success()) return std::move(result->out);

  std::string error = trimmed(result->err);
  if (error.empty()) error = trimmed(result->out);
  if (error.empty()) error = "(no error output)";
  absl::StatusCode code = absl::StatusCode::kInternal;
  std::string hint;
  if (argv[0] == "ovs-vsctl" && result->status.signal == SIGALRM) {
    // ovs-vsctl --timeout ends itself with SIGALRM.
    code = absl::StatusCode::kDeadlineExceeded;
    hint = " (ovs-vsctl waits for ovs-vswitchd to apply each change: is ovs-vswitchd running?)";
  } else if (absl::StrContains(error, "database connection failed")) {
    code = absl::StatusCode::kUnavailable;
    hint = fmt::format(" (is ovsdb-server running, and is the database \"{}\" right?)",
                       options_.db.empty() ? "(ovs-vsctl's default)" : options_.db);
  }
  return absl::Status(code, fmt::format("{}: `{}` {}: {}{}", what, formatCommandLine(argv),
                                        result->status.describe(), error, hint));
}

absl::StatusOr<std::string> OvsSwitch::vsctl(const std::vector<std::string>& args,
                                             std::string_view what) {
  std::vector<std::string> argv = {"ovs-vsctl"};
  if (!options_.db.empty()) argv.push_back("--db=" + options_.db);
  const auto seconds = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(options_.command_timeout))));
  argv.push_back(fmt::format("--timeout={}", seconds));
  argv.insert(argv.end(), args.begin(), args.end());
  return runTool(argv, what);
}

absl::StatusOr<std::string> OvsSwitch::interfaceError(std::string_view interface,
                                                      std::string_view what) {
  ASSIGN_OR_RETURN(std::string out, vsctl({"--format=json", "--columns=error", "list", "Interface",
                                           std::string(interface)},
                                          what));
  ASSIGN_OR_RETURN(std::vector<std::vector<Row>> tables, parseTables(out, 1));
  if (tables[0].size() != 1) return std::string();
  std::vector<Json> error = setElements(cell(tables[0][0], "error"));
  return error.size() == 1 ? stringOf(error[0]) : std::string();
}

absl::Status OvsSwitch::ensureIntegrationBridge(std::string_view bridge) {
  RETURN_IF_ERROR(validateName(bridge, "integration bridge"));
  const std::string name(bridge);
  RETURN_IF_ERROR(vsctl({"--may-exist", "add-br", name, "--", "set", "Bridge", name,
                         "datapath_type=" + options_.datapath_type, "fail_mode=standalone",
                         fmt::format("external_ids:{}=integration", kOvsBridgeKey)},
                        fmt::format("creating integration bridge {}", bridge))
                      .status());
  logger().debug("integration bridge {} ready (datapath {})", bridge, options_.datapath_type);
  return absl::OkStatus();
}

absl::Status OvsSwitch::ensureUnderlayBridge(const UnderlaySpec& spec) {
  if (options_.datapath_type != "netdev") {
    return absl::FailedPreconditionError(fmt::format(
        "underlay bridge {}: only the userspace datapath (netdev) needs one; with datapath "
        "\"{}\" the kernel routes VXLAN packets through the host's own interfaces: keep the "
        "tunnel address on {} and do not create {}",
        spec.bridge, options_.datapath_type, spec.physical_port, spec.bridge));
  }
  RETURN_IF_ERROR(validateName(spec.bridge, "underlay bridge"));
  RETURN_IF_ERROR(validateName(spec.physical_port, "underlay physical port"));
  if (spec.bridge == spec.physical_port) {
    return absl::InvalidArgumentError(fmt::format(
        "underlay bridge and physical port are both named {}: the bridge needs its own name",
        spec.bridge));
  }
  ASSIGN_OR_RETURN(std::string address,
                   validateCidr(spec.cidr, fmt::format("underlay bridge {}: cidr", spec.bridge)));
  MacAddress hwaddr = spec.hwaddr;
  if (hwaddr.isZero()) hwaddr = deterministicMac("underlay/" + address);
  if (hwaddr.isMulticast()) {
    return absl::InvalidArgumentError(fmt::format(
        "underlay bridge {}: hwaddr {} is a multicast address; use a unicast one (or zero for "
        "a deterministic one)",
        spec.bridge, hwaddr.toString()));
  }

  // The physical port must exist and have no address of its own: the host's address belongs
  // on the bridge, and the port's kernel side would otherwise take part in IP as well.
  const std::string port_what =
      fmt::format("checking underlay physical port {}", spec.physical_port);
  CommandOptions command;
  command.timeout = options_.command_timeout + kRunnerGrace;
  ASSIGN_OR_RETURN(
      CommandResult shown,
      runner_->run({"ip", "-j", "address", "show", "dev", spec.physical_port}, command));
  if (!shown.status.success()) {
    if (absl::StrContains(shown.err, "does not exist")) {
      return absl::FailedPreconditionError(
          fmt::format("underlay physical port {} does not exist on this host: {}",
                      spec.physical_port, trimmed(shown.err)));
    }
    return absl::InternalError(fmt::format("{}: `ip -j address show dev {}` {}: {}", port_what,
                                           spec.physical_port, shown.status.describe(),
                                           trimmed(shown.err)));
  }
  const Json links = Json::parse(shown.out, nullptr, /*allow_exceptions=*/false);
  if (links.is_discarded() || !links.is_array()) {
    return absl::InternalError(fmt::format("{}: cannot parse `ip -j address show` output: \"{}\"",
                                           port_what, trimmed(shown.out).substr(0, 300)));
  }
  for (const Json& link : links) {
    if (!link.is_object() || !link.contains("addr_info") || !link["addr_info"].is_array()) continue;
    for (const Json& info : link["addr_info"]) {
      if (!info.is_object()) continue;
      const std::string scope = info.contains("scope") ? stringOf(info["scope"]) : "";
      if (scope == "link" || scope == "host") continue;  // IPv6 link-local is harmless
      const std::string local = info.contains("local") ? stringOf(info["local"]) : "?";
      const int64_t prefix = info.contains("prefixlen") && info["prefixlen"].is_number_integer()
                                 ? info["prefixlen"].get<int64_t>()
                                 : 0;
      return absl::FailedPreconditionError(fmt::format(
          "underlay physical port {} carries the address {}/{}: with the userspace datapath the "
          "host's tunnel address belongs on the bridge {}; remove it from the port (`ip address "
          "del {}/{} dev {}`)",
          spec.physical_port, local, prefix, spec.bridge, local, prefix, spec.physical_port));
    }
  }

  const std::string what = fmt::format("setting up underlay bridge {} with physical port {}",
                                       spec.bridge, spec.physical_port);
  RETURN_IF_ERROR(vsctl({"--may-exist", "add-br", spec.bridge, "--", "set", "Bridge", spec.bridge,
                         "datapath_type=" + options_.datapath_type, "fail_mode=standalone",
                         fmt::format("other_config:hwaddr={}", ovsdbString(hwaddr.toString())),
                         fmt::format("external_ids:{}=underlay", kOvsBridgeKey), "--",
                         "--may-exist", "add-port", spec.bridge, spec.physical_port},
                        what)
                      .status());
  ASSIGN_OR_RETURN(std::string error, interfaceError(spec.physical_port, what));
  if (!error.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("{}: Open vSwitch cannot use the physical port: {}", what, error));
  }
  // The port's own kernel stack still sees every frame (the userspace datapath reads it
  // through a packet socket) and by default answers ARP for any address of the host, so a
  // peer would get two replies, one with the port's MAC (arp_ignore=1: only for addresses on
  // the port itself, of which there are none).
  RETURN_IF_ERROR(runTool({"sysctl", "-q", "-w",
                           fmt::format("net/ipv4/conf/{}/arp_ignore=1", spec.physical_port)},
                          what)
                      .status());
  RETURN_IF_ERROR(runTool({"ip", "link", "set", spec.physical_port, "up"}, what).status());
  RETURN_IF_ERROR(
      runTool({"ip", "address", "replace", spec.cidr, "dev", spec.bridge}, what).status());
  RETURN_IF_ERROR(runTool({"ip", "link", "set", spec.bridge, "up"}, what).status());
  logger().info("underlay bridge {} ready: port {}, address {}, MAC {}", spec.bridge,
                spec.physical_port, spec.cidr, hwaddr.toString());
  return absl::OkStatus();
}

absl::Status OvsSwitch::addVmPort(const VmPort& port) {
  RETURN_IF_ERROR(validateName(port.bridge, "VM port's bridge"));
  RETURN_IF_ERROR(validateName(port.port, fmt::format("port of VM {}", port.vm_id)));
  const std::string what =
      fmt::format("adding port {} of VM {} to bridge {}", port.port, port.vm_id, port.bridge);
  if (port.vlan_tag < 1 || port.vlan_tag > kMaxVlan) {
    return absl::InvalidArgumentError(
        fmt::format("{}: VLAN tag {} is out of range; use 1..{} (the VM network's VLAN)", what,
                    port.vlan_tag, kMaxVlan));
  }
  if (port.vm_id.empty() || port.interface_id.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: vm_id and interface_id must both be set (they identify the port's VM and NIC)", what));
  }
  if (port.mac.isZero() || port.mac.isMulticast()) {
    return absl::InvalidArgumentError(fmt::format(
        "{}: MAC {} is not a unicast address; use the NIC's MAC (e.g. from allocateMac)", what,
        port.mac.toString()));
  }
  RETURN_IF_ERROR(
      vsctl(
          {"--may-exist", "add-port", port.bridge, port.port, "--", "set", "Port", port.port,
           fmt::format("tag={}", port.vlan_tag), "vlan_mode=access", "trunks=[]",
           fmt::format("external_ids:{}=vm", kOvsRoleKey),
           fmt::format("external_ids:{}={}", kOvsVmIdKey, ovsdbString(port.vm_id)),
           fmt::format("external_ids:{}={}", kOvsInterfaceIdKey, ovsdbString(port.interface_id)),
           "--", "set", "Interface", port.port,
           fmt::format("external_ids:{}={}", kOvsAttachedMacKey, ovsdbString(port.mac.toString()))},
          what)
          .status());
  // ovs-vsctl succeeds even when ovs-vswitchd cannot open the interface; it records why.
  ASSIGN_OR_RETURN(std::string error, interfaceError(port.port, what));
  if (!error.empty()) {
    absl::Status removed = removePort(port.bridge, port.port);
    return absl::FailedPreconditionError(fmt::format(
        "{}: Open vSwitch cannot use the interface: {}; create the tap first{}", what, error,
        removed.ok() ? " (the port was removed again)"
                     : fmt::format(" (removing the port again failed too: {})", removed)));
  }
  logger().info("VM {} NIC {} on {} port {} (VLAN {}, MAC {})", port.vm_id, port.interface_id,
                port.bridge, port.port, port.vlan_tag, port.mac.toString());
  return absl::OkStatus();
}

absl::Status OvsSwitch::removePort(std::string_view bridge, std::string_view port) {
  RETURN_IF_ERROR(validateName(bridge, "bridge"));
  RETURN_IF_ERROR(validateName(port, "port"));
  return vsctl({"--if-exists", "del-port", std::string(bridge), std::string(port)},
               fmt::format("removing port {} from bridge {}", port, bridge))
      .status();
}

absl::StatusOr<std::vector<VmPort>> OvsSwitch::listVmPorts(std::string_view bridge) {
  RETURN_IF_ERROR(validateName(bridge, "bridge"));
  const std::string what = fmt::format("listing the VM ports of bridge {}", bridge);
  ASSIGN_OR_RETURN(std::vector<PortRecord> records,
                   portRecords(vsctl(portQuery(bridge, "vm"), what), bridge, what));
  std::vector<VmPort> ports;
  for (const PortRecord& record : records) {
    VmPort& port = ports.emplace_back();
    port.bridge = std::string(bridge);
    port.port = record.name;
    // Out-of-range or missing values (a port edited by hand) read as 0 / zero MAC.
    if (record.tag.has_value() && *record.tag >= 1 && *record.tag <= kMaxVlan) {
      port.vlan_tag = static_cast<uint16_t>(*record.tag);
    }
    port.vm_id = valueOr(record.external_ids, kOvsVmIdKey);
    port.interface_id = valueOr(record.external_ids, kOvsInterfaceIdKey);
    absl::StatusOr<MacAddress> mac =
        MacAddress::parse(valueOr(record.interface_external_ids, kOvsAttachedMacKey));
    if (mac.ok()) port.mac = *mac;
  }
  return ports;
}

absl::StatusOr<std::vector<std::string>> OvsSwitch::removeStalePorts(
    std::string_view bridge, std::span<const std::string> keep) {
  ASSIGN_OR_RETURN(std::vector<VmPort> ports, listVmPorts(bridge));
  const std::set<std::string> wanted(keep.begin(), keep.end());
  std::vector<std::string> stale;
  std::vector<std::string> args;
  for (const VmPort& port : ports) {
    if (wanted.count(port.port) != 0) continue;
    stale.push_back(port.port);
    args.insert(args.end(), {"--", "--if-exists", "del-port", std::string(bridge), port.port});
  }
  if (stale.empty()) return stale;
  RETURN_IF_ERROR(vsctl(args, fmt::format("removing stale VM ports {} from bridge {}",
                                          absl::StrJoin(stale, ", "), bridge))
                      .status());
  logger().info("removed stale VM ports from {}: {}", bridge, absl::StrJoin(stale, ", "));
  return stale;
}

absl::StatusOr<std::vector<Tunnel>> OvsSwitch::listTunnels(std::string_view bridge) {
  RETURN_IF_ERROR(validateName(bridge, "bridge"));
  const std::string what = fmt::format("listing the tunnels of bridge {}", bridge);
  ASSIGN_OR_RETURN(std::vector<PortRecord> records,
                   portRecords(vsctl(portQuery(bridge, "tunnel"), what), bridge, what));
  std::vector<Tunnel> tunnels;
  for (const PortRecord& record : records) {
    Tunnel& tunnel = tunnels.emplace_back();
    tunnel.port = record.name;
    tunnel.is_protected = record.is_protected;
    tunnel.spec.peer_host = valueOr(record.external_ids, kOvsPeerHostKey);
    tunnel.spec.remote_ip = valueOr(record.options, "remote_ip");
    tunnel.spec.local_ip = valueOr(record.options, "local_ip");
    const std::string key = valueOr(record.options, "key", "0");
    uint32_t vni = 0;
    auto [end, error] = std::from_chars(key.data(), key.data() + key.size(), vni);
    tunnel.spec.vni = error == std::errc() && end == key.data() + key.size() ? vni : 0;
  }
  return tunnels;
}

absl::StatusOr<TunnelChanges> OvsSwitch::syncTunnels(std::string_view bridge,
                                                     std::span<const TunnelSpec> tunnels) {
  RETURN_IF_ERROR(validateName(bridge, "bridge"));
  RETURN_IF_ERROR(annotate(validateTunnels(tunnels), fmt::format("tunnels of bridge {}", bridge)));
  const std::string what = fmt::format("syncing the tunnels of bridge {}", bridge);
  ASSIGN_OR_RETURN(std::vector<PortRecord> records,
                   portRecords(vsctl(portQuery(bridge, "tunnel"), what), bridge, what));
  std::map<std::string, const PortRecord*> existing;
  for (const PortRecord& record : records) existing[record.name] = &record;

  TunnelChanges changes;
  std::vector<std::string> args;
  std::set<std::string> wanted;
  for (const TunnelSpec& spec : tunnels) {
    const std::string port = tunnelPortName(spec.peer_host);
    wanted.insert(port);
    auto found = existing.find(port);
    if (found != existing.end() && tunnelIsAsWanted(*found->second, spec)) continue;
    (found == existing.end() ? changes.added : changes.updated).push_back(port);
    // --may-exist also adopts a port of that name that lacks Flotilla's external_ids.
    const std::string name(bridge);
    args.insert(args.end(), {"--", "--may-exist", "add-port", name, port});
    args.insert(args.end(), {"--", "set", "Interface", port, "type=vxlan",
                             "options=" + mapArgument(tunnelOptions(spec))});
    args.insert(args.end(),
                {"--", "set", "Port", port, "protected=true", "vlan_mode=trunk", "tag=[]",
                 "trunks=[]", fmt::format("external_ids:{}=tunnel", kOvsRoleKey),
                 fmt::format("external_ids:{}={}", kOvsPeerHostKey, ovsdbString(spec.peer_host))});
  }
  for (const auto& [port, record] : existing) {
    if (wanted.count(port) != 0) continue;
    changes.removed.push_back(port);
    args.insert(args.end(), {"--", "--if-exists", "del-port", std::string(bridge), port});
  }
  if (changes.empty()) return changes;
  std::sort(changes.added.begin(), changes.added.end());
  std::sort(changes.updated.begin(), changes.updated.end());
  RETURN_IF_ERROR(vsctl(args, what).status());
  logger().info("tunnels of {}: added [{}], updated [{}], removed [{}]", bridge,
                absl::StrJoin(changes.added, ", "), absl::StrJoin(changes.updated, ", "),
                absl::StrJoin(changes.removed, ", "));

  // ovs-vswitchd has applied the transaction (ovs-vsctl waited for it): report tunnels it
  // could not set up. They stay configured; the next sync (or a fixed peer) retries.
  ASSIGN_OR_RETURN(std::vector<PortRecord> after,
                   portRecords(vsctl(portQuery(bridge, "tunnel"), what), bridge, what));
  std::vector<std::string> failures;
  for (const PortRecord& record : after) {
    if (!record.error.empty()) {
      failures.push_back(fmt::format("{} (peer {}): {}", record.name,
                                     valueOr(record.external_ids, kOvsPeerHostKey), record.error));
    }
  }
  if (!failures.empty()) {
    return absl::FailedPreconditionError(
        fmt::format("{}: Open vSwitch cannot set up {}", what, absl::StrJoin(failures, "; ")));
  }
  return changes;
}

}  // namespace flotilla::network
