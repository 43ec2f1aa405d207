// DRBD resources (see drbd.h): checks, resource files, drbdadm.
#include "storage/drbd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <utility>

#include "common/status.h"
#include "common/text.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "storage/pool.h"

namespace flotilla::storage {
namespace {

constexpr int kMaxNodeId = 31;            // DRBD 9: node ids 0..31
constexpr int kMaxMinor = (1 << 20) - 1;  // the largest minor drbd accepts

struct ParsedAddress {
  int family = 0;  // AF_INET or AF_INET6; 0 when not an address
  std::string canonical;
};

ParsedAddress parseAddress(const std::string& text) {
  ParsedAddress parsed;
  char buffer[INET6_ADDRSTRLEN] = {};
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    parsed.family = AF_INET;
    ::inet_ntop(AF_INET, &v4, buffer, sizeof(buffer));
  } else if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    parsed.family = AF_INET6;
    ::inet_ntop(AF_INET6, &v6, buffer, sizeof(buffer));
  }
  parsed.canonical = buffer;
  return parsed;
}

bool isHostNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

// Characters that would end or break a word in drbd.conf.
bool isConfigSafe(std::string_view text) {
  for (char c : text) {
    if (c <= ' ' || c == ';' || c == '{' || c == '}' || c == '"' || c == '\'' || c == '#' ||
        c == '\\' || c == 0x7f) {
      return false;
    }
  }
  return true;
}

absl::Status validateNode(const DrbdResourceSpec& spec, size_t index) {
  const DrbdNode& node = spec.nodes[index];
  const std::string who = fmt::format("DRBD resource {}, node {} ({})", spec.name, index + 1,
                                      node.host.empty() ? "no host" : node.host);
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("{}: {}", who, why));
  };
  if (node.host.empty()) return bad("the host name is missing (what `uname -n` prints there)");
  if (node.host.size() > 253) return bad("the host name is longer than 253 characters");
  for (char c : node.host) {
    if (!isHostNameChar(c)) {
      return bad(fmt::format("the host name '{}' contains '{}' (letters, digits, '-', '.', '_')",
                             node.host, c));
    }
  }
  ParsedAddress address = parseAddress(node.address);
  if (address.family == 0) {
    return bad(
        fmt::format("'{}' is not an IPv4 or IPv6 address (DRBD needs the address itself, "
                    "not a host name)",
                    node.address));
  }
  if (address.canonical == "0.0.0.0" || address.canonical == "::") {
    return bad(
        fmt::format("address {} is unspecified: give the address of the host's "
                    "replication interface",
                    node.address));
  }
  if (node.node_id < 0 || node.node_id > kMaxNodeId) {
    return bad(fmt::format("node-id {} is out of range (0 to {})", node.node_id, kMaxNodeId));
  }
  if (node.minor < 0 || node.minor > kMaxMinor) {
    return bad(fmt::format("minor {} is out of range (0 to {})", node.minor, kMaxMinor));
  }
  if (!node.disk.starts_with("/dev/") || node.disk.size() <= 5) {
    return bad(
        fmt::format("backing disk '{}' is not a device path (/dev/...): DRBD replicates a "
                    "block device",
                    node.disk));
  }
  if (!isConfigSafe(node.disk)) {
    return bad(
        fmt::format("backing disk '{}' contains a space or one of ; {{ }} \" ' # \\", node.disk));
  }
  return absl::OkStatus();
}

}  // namespace

const DrbdNode* DrbdResourceSpec::node(std::string_view host) const {
  for (const DrbdNode& n : nodes) {
    if (n.host == host) return &n;
  }
  return nullptr;
}

absl::Status validateDrbdResource(const DrbdResourceSpec& spec) {
  if (absl::Status name = validateVolumeName(spec.name); !name.ok()) {
    return absl::InvalidArgumentError(fmt::format("DRBD resource: {}", name.message()));
  }
  if (spec.port == 0) {
    return absl::InvalidArgumentError(fmt::format(
        "DRBD resource {}: the port is missing (1 to 65535; DRBD's are usually 7788 and up)",
        spec.name));
  }
  if (spec.protocol != 'C') {
    return absl::InvalidArgumentError(fmt::format(
        "DRBD resource {}: protocol {} is not supported: only C (synchronous replication), "
        "which live migration needs (both nodes are primary for a moment)",
        spec.name, spec.protocol));
  }
  for (size_t i = 0; i < spec.nodes.size(); ++i) RETURN_IF_ERROR(validateNode(spec, i));
  const DrbdNode& a = spec.nodes[0];
  const DrbdNode& b = spec.nodes[1];
  if (a.host == b.host) {
    return absl::InvalidArgumentError(fmt::format(
        "DRBD resource {}: both nodes are on host {}; the two copies must be on two hosts",
        spec.name, a.host));
  }
  if (a.node_id == b.node_id) {
    return absl::InvalidArgumentError(
        fmt::format("DRBD resource {}: both nodes have node-id {}; give them different ids",
                    spec.name, a.node_id));
  }
  ParsedAddress address_a = parseAddress(a.address);
  ParsedAddress address_b = parseAddress(b.address);
  if (address_a.family != address_b.family) {
    return absl::InvalidArgumentError(fmt::format(
        "DRBD resource {}: {} and {} are not of the same family (both IPv4 or both IPv6)",
        spec.name, a.address, b.address));
  }
  if (address_a.canonical == address_b.canonical) {
    return absl::InvalidArgumentError(fmt::format(
        "DRBD resource {}: hosts {} and {} both have address {}; each host needs its own",
        spec.name, a.host, b.host, a.address));
  }
  return absl::OkStatus();
}

absl::Status validateDrbdResources(std::span<const DrbdResourceSpec> specs) {
  std::map<std::string, std::string> names;      // name → itself
  std::map<std::string, std::string> endpoints;  // "address port" → resource
  std::map<std::string, std::string> minors;     // "host minor" → resource
  std::map<std::string, std::string> disks;      // "host disk" → resource
  for (const DrbdResourceSpec& spec : specs) {
    RETURN_IF_ERROR(validateDrbdResource(spec));
    if (!names.emplace(spec.name, spec.name).second) {
      return absl::InvalidArgumentError(fmt::format(
          "DRBD resource {} is defined twice; resource names must be unique", spec.name));
    }
    for (const DrbdNode& node : spec.nodes) {
      const std::string address = parseAddress(node.address).canonical;
      auto [endpoint, new_endpoint] =
          endpoints.emplace(fmt::format("{} {}", address, spec.port), spec.name);
      if (!new_endpoint) {
        return absl::InvalidArgumentError(fmt::format(
            "DRBD resources {} and {} both use {} port {} (host {}); give each resource its own "
            "port",
            endpoint->second, spec.name, node.address, spec.port, node.host));
      }
      auto [minor, new_minor] =
          minors.emplace(fmt::format("{} {}", node.host, node.minor), spec.name);
      if (!new_minor) {
        return absl::InvalidArgumentError(fmt::format(
            "DRBD resources {} and {} both use minor {} on host {}; give each its own minor",
            minor->second, spec.name, node.minor, node.host));
      }
      auto [disk, new_disk] = disks.emplace(fmt::format("{} {}", node.host, node.disk), spec.name);
      if (!new_disk) {
        return absl::InvalidArgumentError(
            fmt::format("DRBD resources {} and {} both use backing disk {} on host {}",
                        disk->second, spec.name, node.disk, node.host));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status checkDrbdLocalDisk(const DrbdResourceSpec& spec, std::string_view host) {
  const DrbdNode* node = spec.node(host);
  if (node == nullptr) {
    return absl::NotFoundError(
        fmt::format("DRBD resource {} has no node on host {} (its nodes: "
                    "{}, {})",
                    spec.name, host, spec.nodes[0].host, spec.nodes[1].host));
  }
  struct stat st {};
  if (::stat(node->disk.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(fmt::format(
          "DRBD resource {}: backing disk {} does not exist on host {}; create it (a logical "
          "volume, a partition) or fix the resource",
          spec.name, node->disk, host));
    }
    return errnoStatus(
        errno, fmt::format("DRBD resource {}: examining backing disk {}", spec.name, node->disk));
  }
  if (!S_ISBLK(st.st_mode)) {
    return absl::FailedPreconditionError(fmt::format(
        "DRBD resource {}: backing disk {} on host {} is not a block device; DRBD needs one (a "
        "logical volume, a partition, or a loop device over a file)",
        spec.name, node->disk, host));
  }
  return absl::OkStatus();
}

std::string renderDrbdResource(const DrbdResourceSpec& spec) {
  std::string text = fmt::format(
      "# DRBD resource {}, written by Flotilla's agent (storage/drbd.h); it rewrites this file.\n"
      "resource {} {{\n"
      "  options {{\n"
      "    auto-promote no;  # the agent promotes explicitly (drbdadm primary)\n"
      "  }}\n"
      "  net {{\n"
      "    protocol {};\n"
      "    allow-two-primaries no;  # yes only during a live migration (net-options)\n"
      "    after-sb-0pri discard-zero-changes;\n"
      "    after-sb-1pri discard-secondary;\n"
      "    after-sb-2pri disconnect;\n"
      "  }}\n",
      spec.name, spec.name, spec.protocol);
  for (const DrbdNode& node : spec.nodes) {
    const ParsedAddress address = parseAddress(node.address);
    const std::string endpoint = address.family == AF_INET6
                                     ? fmt::format("ipv6 [{}]:{}", address.canonical, spec.port)
                                     : fmt::format("ipv4 {}:{}", address.canonical, spec.port);
    text += fmt::format(
        "  on {} {{\n"
        "    node-id {};\n"
        "    device minor {};\n"
        "    disk {};\n"
        "    meta-disk internal;\n"
        "    address {};\n"
        "  }}\n",
        node.host, node.node_id, node.minor, node.disk, endpoint);
  }
  text += "}\n";
  return text;
}

absl::StatusOr<std::string> writeDrbdResourceFile(const DrbdResourceSpec& spec,
                                                  const std::string& config_dir) {
  RETURN_IF_ERROR(validateDrbdResource(spec));
  const std::string path = fmt::format("{}/{}.res", config_dir, spec.name);
  const std::string text = renderDrbdResource(spec);
  UniqueFd dir(::open(config_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    return errnoStatus(errno, fmt::format("DRBD resource {}: opening the configuration directory "
                                          "{}",
                                          spec.name, config_dir));
  }
  // ".NAME.res.tmp-XXXXXX" does not match the *.res that drbd.conf includes.
  std::string pattern = fmt::format("{}/.{}.res.tmp-XXXXXX", config_dir, spec.name);
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  UniqueFd fd(::mkostemp(buffer.data(), O_CLOEXEC));
  if (!fd.valid()) {
    return errnoStatus(errno, fmt::format("DRBD resource {}: creating a temporary file in {}",
                                          spec.name, config_dir));
  }
  const std::string temp(buffer.data());
  auto fail = [&](std::string_view what) {
    absl::Status status =
        errnoStatus(errno, fmt::format("DRBD resource {}: {} {}", spec.name, what, temp));
    (void)::unlink(temp.c_str());
    return status;
  };
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("writing");
    }
    written += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), 0644) != 0) return fail("setting the mode of");
  if (::fsync(fd.get()) != 0) return fail("syncing");
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("renaming into place");
  if (::fsync(dir.get()) != 0) {
    return errnoStatus(errno, fmt::format("DRBD resource {}: syncing {}", spec.name, config_dir));
  }
  return path;
}

absl::StatusOr<std::string> drbdDevicePath(const DrbdResourceSpec& spec, std::string_view host) {
  const DrbdNode* node = spec.node(host);
  if (node == nullptr) {
    return absl::NotFoundError(
        fmt::format("DRBD resource {} has no node on host {}", spec.name, host));
  }
  return fmt::format("/dev/drbd{}", node->minor);
}

// ---- status ----

absl::StatusOr<DrbdStatus> parseDrbdStatus(std::string_view text) {
  DrbdStatus status;
  bool have_resource = false;
  int line_number = 0;
  for (std::string_view raw : splitText(text, '\n')) {
    ++line_number;
    while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\r')) raw.remove_suffix(1);
    if (raw.empty()) continue;
    const size_t indent = raw.find_first_not_of(' ');
    std::vector<std::string_view> tokens;
    for (std::string_view token : splitText(raw.substr(indent), ' ')) {
      if (!token.empty()) tokens.push_back(token);
    }
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(fmt::format(
          "unexpected output of drbdadm status, line {} ('{}'): {}", line_number, raw, why));
    };
    std::map<std::string_view, std::string_view> values;
    std::string_view head;
    for (std::string_view token : tokens) {
      size_t colon = token.find(':');
      if (colon == std::string_view::npos) {
        if (head.empty()) head = token;
        continue;
      }
      values[token.substr(0, colon)] = token.substr(colon + 1);
    }
    auto value = [&](std::string_view key) -> std::string {
      auto it = values.find(key);
      return it == values.end() ? std::string() : std::string(it->second);
    };
    if (indent == 0) {
      if (have_resource) return bad("a second resource (ask for one resource at a time)");
      if (head.empty()) return bad("expected 'RESOURCE role:ROLE'");
      have_resource = true;
      status.resource = std::string(head);
      status.role = value("role");
      status.suspended = !value("suspended").empty() && value("suspended") != "no";
      continue;
    }
    if (!have_resource) return bad("indented line before the resource line");
    if (indent <= 2) {
      if (head.empty()) {  // this node's volume: "disk:UpToDate" or "volume:0 disk:UpToDate"
        if (values.count("disk") != 0) status.disk = value("disk");
      } else {  // a peer: "beta role:Secondary" or "beta connection:Connecting"
        DrbdPeerStatus peer;
        peer.name = std::string(head);
        if (values.count("connection") != 0) peer.connection = value("connection");
        peer.role = value("role");
        status.peers.push_back(std::move(peer));
      }
      continue;
    }
    if (indent <= 4) {  // the peer's volume
      if (status.peers.empty()) return bad("peer volume before any peer");
      DrbdPeerStatus& peer = status.peers.back();
      if (values.count("peer-disk") != 0) peer.peer_disk = value("peer-disk");
      if (values.count("replication") != 0) peer.replication = value("replication");
      if (values.count("done") != 0) {
        double done = 0;
        std::string_view text_done = values["done"];
        auto [end, error] =
            std::from_chars(text_done.data(), text_done.data() + text_done.size(), done);
        if (error != std::errc() || end != text_done.data() + text_done.size()) {
          return bad("done: is not a number");
        }
        peer.done = done;
      }
    }
    // Deeper lines (statistics of --verbose output) are not needed.
  }
  if (!have_resource) {
    return absl::InvalidArgumentError("drbdadm status printed nothing (is the resource up?)");
  }
  return status;
}

// ---- drbdadm ----

Drbd::Drbd(CommandRunner& runner, DrbdOptions options)
    : runner_(runner), options_(std::move(options)) {}

absl::StatusOr<std::string> Drbd::run(std::vector<std::string> args, bool dry_run) {
  std::vector<std::string> argv = {options_.drbdadm};
  if (!options_.config_file.empty()) {
    argv.push_back("-c");
    argv.push_back(options_.config_file);
  }
  if (dry_run) argv.push_back("-d");
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  CommandOptions command_options;
  command_options.timeout = options_.timeout;
  if (!options_.node_name.empty()) {
    command_options.env.push_back(fmt::format("__DRBD_NODE__={}", options_.node_name));
  }
  ASSIGN_OR_RETURN(CommandResult result, runner_.run(argv, command_options));
  if (result.status.success()) return std::move(result.out);
  // drbdadm's standard error carries noise around the message: modinfo's complaints (drbdadm
  // asks for the module's version on every run) and the __DRBD_NODE__ notice.
  std::vector<std::string> lines;
  bool no_module = false;
  for (std::string_view line : splitText(result.err, '\n')) {
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.starts_with("modinfo: ") || contains(line, "found __DRBD_NODE__") ||
        contains(line, "PRETENDING that I am")) {
      continue;
    }
    if (contains(line, "modprobe drbd")) no_module = true;
    lines.emplace_back(line);
  }
  std::string message = lines.empty() ? "(no message)" : fmt::format("{}", fmt::join(lines, "; "));
  if (no_module) {
    message +=
        " (the drbd kernel module is not available on this host; install it, e.g. "
        "drbd-dkms, or use dry runs)";
  }
  return absl::InternalError(
      fmt::format("`{}` {}: {}", formatCommandLine(argv), result.status.describe(), message));
}

absl::StatusOr<std::vector<std::string>> Drbd::step(std::vector<std::string> command,
                                                    std::string_view resource) {
  command.emplace_back(resource);
  ASSIGN_OR_RETURN(std::string out, run(std::move(command), options_.dry_run));
  std::vector<std::string> lines;
  for (std::string_view line : splitText(out, '\n')) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (options_.dry_run) {
      // drbdadm run by its path prints its helpers by path too ("/usr/sbin/drbdsetup ..."):
      // keep the program's name only, so that the sequence reads the same however it ran.
      const size_t space = line.find(' ');
      const size_t slash = line.substr(0, space).rfind('/');
      if (slash != std::string_view::npos) line.remove_prefix(slash + 1);
    }
    lines.emplace_back(line);
  }
  return lines;
}

absl::StatusOr<std::vector<std::string>> Drbd::createMetadata(std::string_view resource) {
  return step({"create-md", "--force"}, resource);
}

absl::StatusOr<std::vector<std::string>> Drbd::up(std::string_view resource) {
  return step({"up"}, resource);
}

absl::StatusOr<std::vector<std::string>> Drbd::down(std::string_view resource) {
  return step({"down"}, resource);
}

absl::StatusOr<std::vector<std::string>> Drbd::primary(std::string_view resource, bool force) {
  if (force) return step({"primary", "--force"}, resource);
  return step({"primary"}, resource);
}

absl::StatusOr<std::vector<std::string>> Drbd::secondary(std::string_view resource) {
  return step({"secondary"}, resource);
}

absl::StatusOr<std::vector<std::string>> Drbd::adjust(std::string_view resource) {
  return step({"adjust"}, resource);
}

absl::StatusOr<std::vector<std::string>> Drbd::allowTwoPrimaries(std::string_view resource,
                                                                 bool allow) {
  return step({"net-options", allow ? "--allow-two-primaries=yes" : "--allow-two-primaries=no"},
              resource);
}

absl::StatusOr<std::string> Drbd::dump(std::string_view resource) {
  return run({"dump", std::string(resource)}, /*dry_run=*/false);
}

absl::StatusOr<DrbdStatus> Drbd::status(std::string_view resource) {
  if (options_.dry_run) {
    return absl::FailedPreconditionError(fmt::format(
        "DRBD resource {}: status needs the kernel's state, which a dry run does not have",
        resource));
  }
  ASSIGN_OR_RETURN(std::string out, run({"status", std::string(resource)}, /*dry_run=*/false));
  return parseDrbdStatus(out);
}

}  // namespace flotilla::storage
