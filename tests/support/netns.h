// Network test support: network namespaces as simulated hosts, veth pairs between them, taps
// inside them, and private Open vSwitch instances (userspace datapath), all created by the
// test and removed again by name and PID, also when the test fails. Objects left behind by a
// crashed test (namespaces and OVS directories named after a process that no longer exists,
// and the daemons recorded in their pidfiles) are removed by the next run.
//
// Everything here needs root and the host tools (ip, ovs-*): when they are missing, creating
// the object fails with a message that names what to install; tests ASSERT on it, so they
// fail rather than skip.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/command.h"
#include "common/unique_fd.h"
#include "network/tap.h"

namespace flotilla::testing {

// FailedPrecondition naming what is missing unless this process runs as root, for tests that
// create namespaces, taps and bridges.
absl::Status requireRoot(std::string_view why);

struct NetNamespaceOptions {
  // Bring `lo` up inside.
  bool loopback_up = true;
  // Turn IPv6 off inside, so that interfaces do not send router solicitations, MLD reports
  // and duplicate-address probes of their own into the traffic a test inspects.
  bool disable_ipv6 = true;
};

// A network namespace named "flt-<prefix>-<pid>-<counter>" (`ip netns add`), deleted on
// destruction (`ip netns del`). Interfaces inside it go away with it.
class NetNamespace {
 public:
  static absl::StatusOr<std::unique_ptr<NetNamespace>> create(
      std::string_view prefix = "t", const NetNamespaceOptions& options = {});
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  const std::string& name() const { return name_; }

  // `ip netns exec NAME argv...` through CommandRunner (no shell).
  absl::StatusOr<CommandResult> exec(const std::vector<std::string>& argv,
                                     const CommandOptions& options = {}) const;
  // The same, requiring exit status 0; returns standard output.
  absl::StatusOr<std::string> execChecked(const std::vector<std::string>& argv,
                                          const CommandOptions& options = {}) const;

  // Runs `fn` on a new thread that joined this namespace with setns(2), waits for it and
  // returns what `fn` returned (an absl::Status or absl::StatusOr<T>), or the setns error.
  // Descriptors `fn` opens there (sockets, taps) stay bound to this namespace wherever they
  // are used afterwards. A dedicated thread is used because setns changes only the calling
  // thread's namespace: no other work ever runs in it. Only the network namespace changes:
  // paths under /sys still show the original namespace (use ioctls or `exec`).
  template <typename Fn>
  auto runInside(Fn&& fn) const -> std::invoke_result_t<Fn&> {
    using Result = std::invoke_result_t<Fn&>;
    std::optional<Result> result;
    absl::Status entered = runOnThreadInside([&] { result.emplace(fn()); });
    if (!entered.ok()) return entered;
    return std::move(*result);
  }
  absl::Status runOnThreadInside(const std::function<void()>& fn) const;

  // A socket created inside the namespace.
  absl::StatusOr<UniqueFd> socket(int domain, int type, int protocol) const;
  // A UDP socket bound to `address`:`port` inside (port 0: any free port).
  absl::StatusOr<UniqueFd> udpSocket(std::string_view address = "0.0.0.0", uint16_t port = 0) const;
  // A raw packet socket (AF_PACKET, ETH_P_ALL) bound to `interface` inside: it receives every
  // frame the interface receives or sends, and send() transmits a whole Ethernet frame on it.
  absl::StatusOr<UniqueFd> packetSocket(std::string_view interface) const;

  // network::Tap::open inside the namespace (the tap is created there when it does not exist).
  absl::StatusOr<network::Tap> openTap(std::string_view name,
                                       const network::TapOptions& options = {}) const;
  absl::Status setLinkUp(std::string_view interface) const;
  // `ip -n NAME address add CIDR dev INTERFACE`.
  absl::Status addAddress(std::string_view interface, std::string_view cidr) const;
  bool hasLink(std::string_view interface) const;

 private:
  NetNamespace(std::string name, UniqueFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}

  std::string name_;
  UniqueFd fd_;  // /run/netns/NAME, for setns
};

// One end of a veth pair: its namespace (nullptr: this process's own), its name (at most 15
// characters; pick unique names for ends outside test namespaces) and an optional address.
struct VethEnd {
  const NetNamespace* ns = nullptr;
  std::string name{};
  std::string cidr{};  // e.g. "10.0.0.1/24"; empty: no address
};

// A veth pair with both ends up, deleted on destruction (deleting one end deletes both).
class VethPair {
 public:
  static absl::StatusOr<VethPair> create(VethEnd a, VethEnd b);
  VethPair(VethPair&& other) noexcept;
  VethPair& operator=(VethPair&& other) noexcept;
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;
  ~VethPair();

  const VethEnd& a() const { return a_; }
  const VethEnd& b() const { return b_; }
  // Deletes the pair now; NotFound is not an error (its namespace may already be gone).
  absl::Status remove();

 private:
  VethPair(VethEnd a, VethEnd b) : a_(std::move(a)), b_(std::move(b)), owned_(true) {}

  VethEnd a_;
  VethEnd b_;
  std::string a_ns_name_;  // where a_ lives ("": ours), usable after its NetNamespace is gone
  bool owned_ = false;
};

// Turns off checksum and segmentation offloads (`ethtool -K DEV tx off tso off gso off`) on
// an interface inside `ns` (nullptr: this process's namespace). Needed on veths whose
// traffic crosses a userspace-datapath OVS without userspace-tso-enable (ENVIRONMENT.md).
absl::Status disableInterfaceOffloads(const NetNamespace* ns, std::string_view interface);

struct OvsOptions {
  // Run the daemons inside this namespace (nullptr: this process's own): the interfaces a
  // bridge can take as ports are that namespace's. Use one namespace per instance: the
  // userspace datapath creates interfaces named after its bridges and "ovs-netdev". It must
  // outlive start() and the calls that run commands; stop() does not use it.
  const NetNamespace* ns = nullptr;
  // other_config:userspace-tso-enable=true (read by ovs-vswitchd at start only).
  bool userspace_tso = false;
};

// A private Open vSwitch: ovsdb-server and ovs-vswitchd --disable-system (userspace
// datapath) with their database, sockets, pidfiles and logs in a directory of their own under
// $TMPDIR/flotilla-ovs/ (ENVIRONMENT.md's recipe). The system's OVS, if any, is never
// touched: every ovs-vsctl call names this instance's database socket and every ovs-appctl
// call its control socket, with OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR set to the directory.
class OvsInstance {
 public:
  // Starts both daemons (they detach once ready) and initialises the database. Fails naming
  // the missing program or quoting the daemon's log.
  static absl::StatusOr<std::unique_ptr<OvsInstance>> start(const OvsOptions& options = {});
  // stop(), errors ignored.
  ~OvsInstance();
  OvsInstance(const OvsInstance&) = delete;
  OvsInstance& operator=(const OvsInstance&) = delete;

  // SIGTERM to ovs-vswitchd, then ovsdb-server, by the PIDs in their pidfiles (checked to
  // still be this instance's daemons), waiting up to 10 s for each to exit and SIGKILLing it
  // otherwise; then removes the directory. Idempotent.
  absl::Status stop();

  const std::string& dir() const { return dir_; }
  std::string dbSocket() const { return dir_ + "/db.sock"; }
  pid_t ovsdbServerPid() const { return ovsdb_pid_; }
  pid_t vswitchdPid() const { return vswitchd_pid_; }

  // ovs-vsctl --db=unix:DIR/db.sock ARGS...; returns standard output. (Waits until
  // ovs-vswitchd applied the change, unless ARGS start with --no-wait.)
  absl::StatusOr<std::string> vsctl(const std::vector<std::string>& args) const;
  // ovs-appctl -t DIR/ovs-vswitchd.ctl ARGS...
  absl::StatusOr<std::string> appctl(const std::vector<std::string>& args) const;

  // A bridge on the userspace datapath (datapath_type=netdev).
  absl::Status addBridge(std::string_view bridge) const;
  // Adds an existing interface (tap, veth) as a port; access port of VLAN `tag` when given.
  absl::Status addPort(std::string_view bridge, std::string_view port,
                       std::optional<uint16_t> vlan_tag = std::nullopt) const;
  absl::Status deletePort(std::string_view bridge, std::string_view port) const;

  // The end of ovs-vswitchd's log, for failure messages.
  std::string logTail() const;

 private:
  OvsInstance(std::string dir, const NetNamespace* ns) : dir_(std::move(dir)), ns_(ns) {}
  absl::Status launch(const OvsOptions& options);
  absl::StatusOr<std::string> run(std::vector<std::string> argv, bool in_namespace) const;
  std::vector<std::string> environment() const;

  std::string dir_;
  const NetNamespace* ns_ = nullptr;
  pid_t ovsdb_pid_ = -1;
  pid_t vswitchd_pid_ = -1;
  bool stopped_ = false;
};

// Removes what test processes that no longer exist left behind: network namespaces named
// flt-*-<pid>-<n> (`ip netns del`, after SIGKILL by PID to the processes still inside,
// `ip netns pids`), and OVS instance directories <pid>-* under
// $TMPDIR/flotilla-ovs with the daemons recorded in their pidfiles (SIGKILL, by PID, only
// when the process's command line names that directory). Objects of live processes are left
// alone. NetNamespace::create and OvsInstance::start call these once per process.
void removeStaleNetNamespaces();
void removeStaleOvsInstances();

// Frame helpers for tests reading taps and packet sockets.

// Reads datagrams (frames) from `fd` until one satisfies `match` and returns it, skipping
// the others. DeadlineExceeded after `timeout` (a bound for a failing test, not a measurement),
// listing how many frames were skipped.
absl::StatusOr<std::vector<uint8_t>> readMatchingFrame(
    int fd, const std::function<bool(std::span<const uint8_t>)>& match, absl::Duration timeout);
// Sends a datagram to `ip`:7 (the test guest's UDP echo port) from the UDP socket `socket`
// and waits up to `timeout` for the same payload to come back.
bool udpEchoed(int socket, const std::string& ip, int sequence, absl::Duration timeout);

// Every frame queued on `fd` right now (non-blocking reads until EAGAIN).
absl::StatusOr<std::vector<std::vector<uint8_t>>> drainFrames(int fd);

}  // namespace flotilla::testing
