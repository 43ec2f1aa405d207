// DRBD 9 two-node resources for volumes replicated between two hosts: the resource
// description (DrbdResourceSpec) with the checks drbdadm does not make (addresses, ports and
// minors that clash, a missing backing disk), its resource file (rendered, written
// atomically), and Drbd, which runs drbdadm through a CommandRunner (create-md, up, primary,
// secondary, adjust, down, dual-primary for live migration, status) or, in dry-run mode,
// returns the drbdsetup/drbdmeta commands drbdadm would run. See docs/storage.md, "DRBD".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/command.h"

namespace flotilla::storage {

struct DrbdNode {
  std::string host;     // the host's name as drbdadm matches it (uname -n, or __DRBD_NODE__)
  std::string address;  // the IPv4 or IPv6 address the resource uses on that host
  int node_id = -1;     // 0 to 31, different on the two nodes
  int minor = -1;       // the device /dev/drbdMINOR on that host, 0 to 1048575
  std::string disk;     // the backing block device on that host (meta-disk internal)
};

struct DrbdResourceSpec {
  std::string name;   // a volume-style name (validateVolumeName): it is also the file name
  uint16_t port = 0;  // the TCP port on both nodes' addresses (DRBD's default range: 7788+)
  // Replication protocol. Only C (synchronous) is accepted: both nodes are primary during a
  // live migration, which DRBD allows only with protocol C.
  char protocol = 'C';
  std::array<DrbdNode, 2> nodes;

  // The node whose host is `host`; null when neither is.
  const DrbdNode* node(std::string_view host) const;
};

// Checks one resource: name, port, protocol, host names (set and different), addresses (IP
// addresses of one family, different), node ids, minors, backing disks (absolute /dev/ paths).
// Errors name the resource, the node and the field, and say what is accepted.
absl::Status validateDrbdResource(const DrbdResourceSpec& spec);

// Checks a set of resources (all those of a cluster or of a host) together: each one alone,
// then that no two use the same name, the same address and port, or the same minor or backing
// disk on the same host (drbdadm sees only one resource file at a time here, so it cannot).
absl::Status validateDrbdResources(std::span<const DrbdResourceSpec> specs);

// Checks on the host `host` itself that its node's backing disk exists and is a block device
// (drbdadm's dry runs do not look, and `up` would fail late).
absl::Status checkDrbdLocalDisk(const DrbdResourceSpec& spec, std::string_view host);

// The resource file's text (drbd.conf(5), DRBD 9 syntax). Only for a valid spec.
std::string renderDrbdResource(const DrbdResourceSpec& spec);

// Validates the spec and writes DIR/NAME.res atomically (a temporary file, fsync, rename,
// fsync of the directory): readers see the old file or the new one, never a partial one.
// Returns the file's path.
absl::StatusOr<std::string> writeDrbdResourceFile(const DrbdResourceSpec& spec,
                                                  const std::string& config_dir);

// "/dev/drbdMINOR" of the node on `host`; NotFound when the resource has no such node.
absl::StatusOr<std::string> drbdDevicePath(const DrbdResourceSpec& spec, std::string_view host);

// ---- drbdadm ----

struct DrbdOptions {
  std::string drbdadm = "drbdadm";
  // `-c FILE`: the configuration drbdadm reads (a single resource file works). Empty:
  // drbdadm's default, /etc/drbd.conf (which includes /etc/drbd.d/*.res).
  std::string config_file;
  // Which node of the resources this host is (__DRBD_NODE__); empty: drbdadm uses the host
  // name (uname -n).
  std::string node_name;
  // Run `drbdadm -d ...`: nothing is changed, and each call returns the drbdsetup/drbdmeta
  // commands drbdadm would run.
  bool dry_run = false;
  absl::Duration timeout = absl::Seconds(120);
};

// One peer in `drbdadm status`.
struct DrbdPeerStatus {
  std::string name;
  std::string connection = "Connected";     // drbdadm status omits it while Connected
  std::string role;                         // "Primary", "Secondary", "Unknown"
  std::string peer_disk;                    // "UpToDate", "Inconsistent", "DUnknown", ...
  std::string replication = "Established";  // omitted while Established; "SyncSource", ...
  std::optional<double> done;               // resync progress in percent, while syncing
};

struct DrbdStatus {
  std::string resource;
  std::string role;  // this node's: "Primary", "Secondary"
  std::string disk;  // this node's disk: "UpToDate", "Diskless", ...
  bool suspended = false;
  std::vector<DrbdPeerStatus> peers;
};

// Parses `drbdadm status RES` (drbd-utils 9: "RES role:Primary", "  disk:UpToDate",
// "  PEER role:Secondary", "    peer-disk:UpToDate"; key:value pairs, indented by level).
absl::StatusOr<DrbdStatus> parseDrbdStatus(std::string_view text);

class Drbd {
 public:
  Drbd(CommandRunner& runner, DrbdOptions options);

  // Each of these runs `drbdadm [-c FILE] [-d] COMMAND RESOURCE` (with __DRBD_NODE__ when
  // set) and returns, in dry-run mode, the commands drbdadm would run, one per element, with
  // the program's name only ("drbdsetup primary web1", not "/usr/sbin/drbdsetup ...");
  // otherwise its output lines. Errors quote the command and drbdadm's message.

  // create-md --force: initialises the metadata on this node's backing disk (internal
  // metadata: the end of the disk). Destroys existing DRBD metadata there.
  absl::StatusOr<std::vector<std::string>> createMetadata(std::string_view resource);
  absl::StatusOr<std::vector<std::string>> up(std::string_view resource);
  absl::StatusOr<std::vector<std::string>> down(std::string_view resource);
  // `force`: make this node primary even though its data is not known to be UpToDate (the
  // very first promotion of a new resource).
  absl::StatusOr<std::vector<std::string>> primary(std::string_view resource, bool force = false);
  absl::StatusOr<std::vector<std::string>> secondary(std::string_view resource);
  // Brings the kernel's state in line with the resource file. It also resets what was changed
  // at run time only, such as allowTwoPrimaries(true).
  absl::StatusOr<std::vector<std::string>> adjust(std::string_view resource);
  // `drbdadm net-options --allow-two-primaries=yes|no RESOURCE`: lets both nodes be primary
  // (for the duration of a live migration), at run time only. Call it on both nodes.
  absl::StatusOr<std::vector<std::string>> allowTwoPrimaries(std::string_view resource, bool allow);

  // `drbdadm dump RESOURCE`: the resource as drbdadm parsed it; an error (with drbdadm's
  // file:line message) when the file is not valid. Works in both modes.
  absl::StatusOr<std::string> dump(std::string_view resource);
  // `drbdadm status RESOURCE`, parsed. FailedPrecondition in dry-run mode.
  absl::StatusOr<DrbdStatus> status(std::string_view resource);

  const DrbdOptions& options() const { return options_; }

 private:
  absl::StatusOr<std::string> run(std::vector<std::string> args, bool dry_run);
  absl::StatusOr<std::vector<std::string>> step(std::vector<std::string> command,
                                                std::string_view resource);

  CommandRunner& runner_;
  const DrbdOptions options_;
};

}  // namespace flotilla::storage
