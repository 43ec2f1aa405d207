// Network namespaces, veth pairs and private Open vSwitch instances for tests (see netns.h).
#include "tests/support/netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS, so C++ would mangle these C functions.
extern "C" {
#include <sys/pidfd.h>
}
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_split.h"
#include "common/clock.h"
#include "common/status.h"
#include "fmt/format.h"
#include "tests/support/test_env.h"

namespace flotilla::testing {
namespace {

constexpr char kNamespacePrefix[] = "flt-";
constexpr char kOvsSchema[] = "/usr/share/openvswitch/vswitch.ovsschema";
constexpr absl::Duration kCommandTimeout = absl::Seconds(60);
constexpr absl::Duration kDaemonExitGrace = absl::Seconds(10);

CommandRunner& runner() {
  static SystemCommandRunner* system_runner = new SystemCommandRunner();
  return *system_runner;
}

absl::StatusOr<std::string> runCommand(const std::vector<std::string>& argv,
                                       std::vector<std::string> env = {},
                                       absl::Duration timeout = kCommandTimeout) {
  CommandOptions options;
  options.timeout = timeout;
  options.env = std::move(env);
  return runChecked(runner(), argv, options);
}

std::optional<pid_t> parsePid(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  pid_t pid = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (error != std::errc() || end != text.data() + text.size() || pid <= 1) return std::nullopt;
  return pid;
}

bool allDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool processAlive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

std::string tempBase() {
  const char* base = std::getenv("TMPDIR");
  return (base != nullptr && base[0] != '\0') ? base : "/tmp";
}

// Namespaces are named flt-<prefix>-<pid>-<counter>; the pid of a name made this way.
std::optional<pid_t> namespaceOwner(std::string_view name) {
  if (name.substr(0, sizeof(kNamespacePrefix) - 1) != kNamespacePrefix) return std::nullopt;
  size_t counter_dash = name.rfind('-');
  if (counter_dash == std::string_view::npos || counter_dash == 0) return std::nullopt;
  size_t pid_dash = name.rfind('-', counter_dash - 1);
  if (pid_dash == std::string_view::npos || pid_dash < sizeof(kNamespacePrefix) - 1) {
    return std::nullopt;
  }
  if (!allDigits(name.substr(counter_dash + 1))) return std::nullopt;
  return parsePid(name.substr(pid_dash + 1, counter_dash - pid_dash - 1));
}

}  // namespace

// Another test process running now may race us: errors are ignored.
void removeStaleNetNamespaces() {
  DIR* dir = ::opendir("/run/netns");
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (const dirent* entry = ::readdir(dir)) {
    std::optional<pid_t> owner = namespaceOwner(entry->d_name);
    if (owner.has_value() && !processAlive(*owner)) stale.emplace_back(entry->d_name);
  }
  ::closedir(dir);
  for (const std::string& name : stale) {
    std::fprintf(stderr, "removing network namespace %s left by a test that is gone\n",
                 name.c_str());
    // The VMMs or QEMUs the dead test ran inside would outlive the namespace's name.
    absl::StatusOr<std::string> pids = runCommand({"ip", "netns", "pids", name});
    for (absl::string_view text : absl::StrSplit(pids.ok() ? *pids : "", '\n', absl::SkipEmpty())) {
      std::optional<pid_t> pid = parsePid(std::string_view(text.data(), text.size()));
      if (pid.has_value()) ::kill(*pid, SIGKILL);
    }
    (void)runCommand({"ip", "netns", "del", name});
  }
}

namespace {

absl::StatusOr<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{} cannot be read", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether `pid` is a daemon of the OVS instance in `dir` (its command line names the
// directory): a pid from a pidfile may have been reused by an unrelated process since.
bool isDaemonOf(pid_t pid, const std::string& dir) {
  absl::StatusOr<std::string> cmdline = readFile(fmt::format("/proc/{}/cmdline", pid));
  return cmdline.ok() && cmdline->find(dir + "/") != std::string::npos;
}

// Waits up to `timeout` for the process behind `pidfd` to exit.
bool waitForExit(int pidfd, absl::Duration timeout) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  while (true) {
    pollfd entry{.fd = pidfd, .events = POLLIN, .revents = 0};
    int ready = ::poll(&entry, 1, pollTimeoutMs(deadline - clock.monotonicNow()));
    if (ready > 0) return true;
    if (ready == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Stops a daemon that is not our child (it detached): through a pidfd, so that the signal
// cannot reach a process that reused the pid after the check. `first_signal` nullopt: the
// daemon was already asked to exit; only wait for it (and SIGKILL it after the grace time).
absl::Status stopDaemon(pid_t pid, const std::string& dir, std::optional<int> first_signal,
                        std::string_view what) {
  UniqueFd pidfd(pidfd_open(pid, 0));
  if (!pidfd.valid()) {
    if (errno == ESRCH) return absl::OkStatus();  // already gone
    return errnoStatus(errno, fmt::format("pidfd_open for {} (pid {})", what, pid));
  }
  if (!isDaemonOf(pid, dir)) return absl::OkStatus();  // gone, and the pid reused
  if (first_signal.has_value() && pidfd_send_signal(pidfd.get(), *first_signal, nullptr, 0) != 0) {
    if (errno == ESRCH) return absl::OkStatus();
    return errnoStatus(errno, fmt::format("signalling {} (pid {})", what, pid));
  }
  if (waitForExit(pidfd.get(), kDaemonExitGrace)) return absl::OkStatus();
  if (pidfd_send_signal(pidfd.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH) {
    return errnoStatus(errno, fmt::format("killing {} (pid {})", what, pid));
  }
  if (!waitForExit(pidfd.get(), kDaemonExitGrace)) {
    return absl::InternalError(fmt::format("{} (pid {}) did not exit after SIGKILL within {}", what,
                                           pid, absl::FormatDuration(kDaemonExitGrace)));
  }
  return absl::OkStatus();
}

std::string ovsBaseDir() {
  return tempBase() + "/flotilla-ovs";
}

}  // namespace

void removeStaleOvsInstances() {
  const std::string base = ovsBaseDir();
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(base, error)) {
    const std::string name = entry.path().filename().string();
    size_t dash = name.find('-');
    std::optional<pid_t> owner =
        dash == std::string::npos ? std::nullopt : parsePid(name.substr(0, dash));
    if (!owner.has_value() || processAlive(*owner)) continue;
    const std::string dir = entry.path().string();
    std::fprintf(stderr, "removing Open vSwitch instance %s left by a test that is gone\n",
                 dir.c_str());
    for (const char* daemon : {"ovs-vswitchd", "ovsdb-server"}) {
      absl::StatusOr<std::string> text = readFile(fmt::format("{}/{}.pid", dir, daemon));
      if (!text.ok()) continue;
      std::optional<pid_t> pid = parsePid(*text);
      if (pid.has_value()) (void)stopDaemon(*pid, dir, SIGKILL, daemon);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}

namespace {

std::vector<std::string> ipCommand(const NetNamespace* ns, std::vector<std::string> args) {
  std::vector<std::string> argv = {"ip"};
  if (ns != nullptr) argv.insert(argv.end(), {"-n", ns->name()});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::vector<std::string> ipCommandIn(const std::string& ns_name, std::vector<std::string> args) {
  std::vector<std::string> argv = {"ip"};
  if (!ns_name.empty()) argv.insert(argv.end(), {"-n", ns_name});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace

absl::Status requireRoot(std::string_view why) {
  if (::geteuid() == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(fmt::format(
      "{} needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); this test runs as uid {}: run it as "
      "root (deploy/test.sh does)",
      why, ::geteuid()));
}

// NetNamespace --------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<NetNamespace>> NetNamespace::create(
    std::string_view prefix, const NetNamespaceOptions& options) {
  RETURN_IF_ERROR(requireRoot("creating a network namespace"));
  RETURN_IF_ERROR(findProgram("ip", "iproute2").status());
  static std::once_flag janitor;
  std::call_once(janitor, removeStaleNetNamespaces);

  static std::atomic<int> counter{0};
  std::string name = fmt::format("{}{}-{}-{}", kNamespacePrefix, prefix, ::getpid(), counter++);
  RETURN_IF_ERROR(runCommand({"ip", "netns", "add", name}).status());
  // From here on the destructor deletes it, whatever fails next.
  std::unique_ptr<NetNamespace> ns(new NetNamespace(name, UniqueFd()));
  ns->fd_.reset(::open(fmt::format("/run/netns/{}", name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns->fd_.valid()) {
    return errnoStatus(errno, fmt::format("opening /run/netns/{} after ip netns add", name));
  }
  if (options.loopback_up) RETURN_IF_ERROR(ns->setLinkUp("lo"));
  if (options.disable_ipv6) {
    RETURN_IF_ERROR(ns->runInside([]() -> absl::Status {
      // /proc/sys/net shows the namespace of the thread that opens the file.
      for (const char* scope : {"all", "default"}) {
        std::string path = fmt::format("/proc/sys/net/ipv6/conf/{}/disable_ipv6", scope);
        std::ofstream out(path);
        out << "1\n";
        out.close();
        if (!out) return absl::InternalError(fmt::format("cannot write 1 to {}", path));
      }
      return absl::OkStatus();
    }));
  }
  return ns;
}

NetNamespace::~NetNamespace() {
  fd_.reset();
  absl::StatusOr<std::string> deleted = runCommand({"ip", "netns", "del", name_});
  if (!deleted.ok()) {
    std::fprintf(stderr, "cannot delete network namespace %s: %s\n", name_.c_str(),
                 deleted.status().ToString().c_str());
  }
}

absl::StatusOr<CommandResult> NetNamespace::exec(const std::vector<std::string>& argv,
                                                 const CommandOptions& options) const {
  std::vector<std::string> full = {"ip", "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return runner().run(full, options);
}

absl::StatusOr<std::string> NetNamespace::execChecked(const std::vector<std::string>& argv,
                                                      const CommandOptions& options) const {
  std::vector<std::string> full = {"ip", "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return runChecked(runner(), full, options);
}

absl::Status NetNamespace::runOnThreadInside(const std::function<void()>& fn) const {
  absl::Status entered;
  std::thread thread([&] {
    if (::setns(fd_.get(), CLONE_NEWNET) != 0) {
      entered = errnoStatus(errno, fmt::format("setns into network namespace {}", name_));
      return;
    }
    fn();
  });
  thread.join();
  return entered;
}

absl::StatusOr<UniqueFd> NetNamespace::socket(int domain, int type, int protocol) const {
  return runInside([&]() -> absl::StatusOr<UniqueFd> {
    UniqueFd fd(::socket(domain, type | SOCK_CLOEXEC, protocol));
    if (!fd.valid()) return errnoStatus(errno, fmt::format("socket() in namespace {}", name_));
    return fd;
  });
}

absl::StatusOr<UniqueFd> NetNamespace::udpSocket(std::string_view address, uint16_t port) const {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, std::string(address).c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(fmt::format("\"{}\" is not an IPv4 address", address));
  }
  ASSIGN_OR_RETURN(UniqueFd fd, socket(AF_INET, SOCK_DGRAM, 0));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return errnoStatus(errno,
                       fmt::format("binding a UDP socket to {}:{} in {}", address, port, name_));
  }
  return fd;
}

absl::StatusOr<UniqueFd> NetNamespace::packetSocket(std::string_view interface) const {
  return runInside([&]() -> absl::StatusOr<UniqueFd> {
    // Protocol 0 until bound: an ETH_P_ALL socket would queue frames of every interface in
    // the meantime.
    UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      return errnoStatus(errno, fmt::format("packet socket in namespace {}", name_));
    }
    const unsigned int index = ::if_nametoindex(std::string(interface).c_str());
    if (index == 0) {
      return absl::NotFoundError(
          fmt::format("no interface {} in network namespace {}", interface, name_));
    }
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = static_cast<int>(index);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      return errnoStatus(errno,
                         fmt::format("binding a packet socket to {} in {}", interface, name_));
    }
    return fd;
  });
}

absl::StatusOr<network::Tap> NetNamespace::openTap(std::string_view name,
                                                   const network::TapOptions& options) const {
  return runInside([&] { return network::Tap::open(name, options); });
}

absl::Status NetNamespace::setLinkUp(std::string_view interface) const {
  return annotate(runInside([&] { return network::setLinkUp(interface); }),
                  fmt::format("in network namespace {}", name_));
}

absl::Status NetNamespace::addAddress(std::string_view interface, std::string_view cidr) const {
  return runCommand(
             ipCommand(this, {"address", "add", std::string(cidr), "dev", std::string(interface)}))
      .status();
}

bool NetNamespace::hasLink(std::string_view interface) const {
  absl::StatusOr<bool> exists =
      runInside([&]() -> absl::StatusOr<bool> { return network::linkExists(interface); });
  return exists.ok() && *exists;
}

// VethPair --------------------------------------------------------------------------------------

absl::StatusOr<VethPair> VethPair::create(VethEnd a, VethEnd b) {
  RETURN_IF_ERROR(requireRoot("creating a veth pair"));
  RETURN_IF_ERROR(findProgram("ip", "iproute2").status());
  RETURN_IF_ERROR(network::validateInterfaceName(a.name));
  RETURN_IF_ERROR(network::validateInterfaceName(b.name));
  std::vector<std::string> argv;
  if (a.ns == nullptr) {
    argv = {"ip", "link", "add", a.name, "type", "veth", "peer", "name", b.name};
    if (b.ns != nullptr) argv.insert(argv.end(), {"netns", b.ns->name()});
  } else if (b.ns == nullptr) {
    argv = {"ip",   "link", "add",  b.name,  "type",      "veth",
            "peer", "name", a.name, "netns", a.ns->name()};
  } else {
    argv = {"ip",   "-n",   a.ns->name(), "link", "add",   a.name,      "type",
            "veth", "peer", "name",       b.name, "netns", b.ns->name()};
  }
  RETURN_IF_ERROR(runCommand(argv).status());
  VethPair pair(std::move(a), std::move(b));  // deleted again if what follows fails
  pair.a_ns_name_ = pair.a_.ns != nullptr ? pair.a_.ns->name() : "";
  for (const VethEnd* end : {&pair.a_, &pair.b_}) {
    if (!end->cidr.empty()) {
      RETURN_IF_ERROR(
          runCommand(ipCommand(end->ns, {"address", "add", end->cidr, "dev", end->name})).status());
    }
    RETURN_IF_ERROR(runCommand(ipCommand(end->ns, {"link", "set", end->name, "up"})).status());
  }
  return pair;
}

VethPair::VethPair(VethPair&& other) noexcept
    : a_(std::move(other.a_)),
      b_(std::move(other.b_)),
      a_ns_name_(std::move(other.a_ns_name_)),
      owned_(std::exchange(other.owned_, false)) {}

VethPair& VethPair::operator=(VethPair&& other) noexcept {
  if (this != &other) {
    (void)remove();
    a_ = std::move(other.a_);
    b_ = std::move(other.b_);
    a_ns_name_ = std::move(other.a_ns_name_);
    owned_ = std::exchange(other.owned_, false);
  }
  return *this;
}

VethPair::~VethPair() {
  absl::Status removed = remove();
  if (!removed.ok()) {
    std::fprintf(stderr, "cannot delete veth %s: %s\n", a_.name.c_str(),
                 removed.ToString().c_str());
  }
}

absl::Status VethPair::remove() {
  if (!std::exchange(owned_, false)) return absl::OkStatus();
  absl::StatusOr<std::string> deleted =
      runCommand(ipCommandIn(a_ns_name_, {"link", "del", a_.name}));
  if (deleted.ok()) return absl::OkStatus();
  // Gone already (with its namespace, or its peer deleted): nothing left to remove.
  absl::StatusOr<std::string> shown =
      runCommand(ipCommandIn(a_ns_name_, {"link", "show", "dev", a_.name}));
  return shown.ok() ? deleted.status() : absl::OkStatus();
}

absl::Status disableInterfaceOffloads(const NetNamespace* ns, std::string_view interface) {
  RETURN_IF_ERROR(findProgram("ethtool", "ethtool").status());
  std::vector<std::string> argv = {
      "ethtool", "-K", std::string(interface), "tx", "off", "tso", "off", "gso", "off"};
  if (ns != nullptr) return ns->execChecked(argv).status();
  return runCommand(argv).status();
}

// OvsInstance -----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<OvsInstance>> OvsInstance::start(const OvsOptions& options) {
  RETURN_IF_ERROR(requireRoot("starting Open vSwitch"));
  for (const char* program :
       {"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"}) {
    RETURN_IF_ERROR(findProgram(program, "openvswitch-switch").status());
  }
  if (options.ns != nullptr) RETURN_IF_ERROR(findProgram("ip", "iproute2").status());
  if (::access(kOvsSchema, R_OK) != 0) {
    return absl::FailedPreconditionError(
        fmt::format("{} is missing: run deploy/install-deps.sh (Debian package openvswitch-common)",
                    kOvsSchema));
  }
  static std::once_flag janitor;
  std::call_once(janitor, removeStaleOvsInstances);

  const std::string base = ovsBaseDir();
  if (::mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) {
    return errnoStatus(errno, fmt::format("creating {}", base));
  }
  // The owner's pid leads the name, so that a later run can tell a stale instance.
  std::string pattern = fmt::format("{}/{}-XXXXXX", base, ::getpid());
  if (::mkdtemp(pattern.data()) == nullptr) {
    return errnoStatus(errno, fmt::format("creating a directory like {}", pattern));
  }
  std::unique_ptr<OvsInstance> instance(new OvsInstance(pattern, options.ns));
  absl::Status launched = instance->launch(options);
  if (!launched.ok()) {
    std::string log = instance->logTail();
    std::string db_log = fileTail(instance->dir_ + "/ovsdb-server.log");
    return annotate(launched, fmt::format("starting Open vSwitch in {} (ovsdb-server log:\n{}\n"
                                          "ovs-vswitchd log:\n{})",
                                          instance->dir_, db_log, log));
  }
  return instance;
}

OvsInstance::~OvsInstance() {
  absl::Status stopped = stop();
  if (!stopped.ok()) {
    std::fprintf(stderr, "stopping Open vSwitch in %s: %s\n", dir_.c_str(),
                 stopped.ToString().c_str());
  }
}

std::vector<std::string> OvsInstance::environment() const {
  return {"OVS_RUNDIR=" + dir_, "OVS_DBDIR=" + dir_, "OVS_LOGDIR=" + dir_};
}

absl::StatusOr<std::string> OvsInstance::run(std::vector<std::string> argv,
                                             bool in_namespace) const {
  if (in_namespace && ns_ != nullptr) {
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns_->name()});
  }
  return runCommand(argv, environment());
}

absl::Status OvsInstance::launch(const OvsOptions& options) {
  const std::string db = dir_ + "/conf.db";
  RETURN_IF_ERROR(run({"ovsdb-tool", "create", db, kOvsSchema}, false).status());
  // --detach: the command returns once the daemon is ready (socket listening, pidfile written).
  RETURN_IF_ERROR(
      run({"ovsdb-server", db, "--remote=punix:" + dbSocket(),
           "--pidfile=" + dir_ + "/ovsdb-server.pid", "--unixctl=" + dir_ + "/ovsdb-server.ctl",
           "--log-file=" + dir_ + "/ovsdb-server.log", "--detach"},
          true)
          .status());
  ASSIGN_OR_RETURN(std::string ovsdb_pid, readFile(dir_ + "/ovsdb-server.pid"));
  ovsdb_pid_ = parsePid(ovsdb_pid).value_or(-1);
  RETURN_IF_ERROR(vsctl({"--no-wait", "init"}).status());
  if (options.userspace_tso) {
    RETURN_IF_ERROR(
        vsctl({"--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"})
            .status());
  }
  RETURN_IF_ERROR(
      run({"ovs-vswitchd", "unix:" + dbSocket(), "--disable-system",
           "--pidfile=" + dir_ + "/ovs-vswitchd.pid", "--unixctl=" + dir_ + "/ovs-vswitchd.ctl",
           "--log-file=" + dir_ + "/ovs-vswitchd.log", "--detach"},
          true)
          .status());
  ASSIGN_OR_RETURN(std::string vswitchd_pid, readFile(dir_ + "/ovs-vswitchd.pid"));
  vswitchd_pid_ = parsePid(vswitchd_pid).value_or(-1);
  return absl::OkStatus();
}

absl::Status OvsInstance::stop() {
  if (std::exchange(stopped_, true)) return absl::OkStatus();
  absl::Status result;
  // ovs-vswitchd first. Asked through its control socket to exit with --cleanup, it deletes
  // its bridges' interfaces (the userspace datapath's internal ports are persistent taps,
  // which SIGTERM would leave behind); SIGTERM only when that request fails.
  for (auto [daemon, known_pid] :
       {std::pair{"ovs-vswitchd", vswitchd_pid_}, std::pair{"ovsdb-server", ovsdb_pid_}}) {
    pid_t pid = known_pid;
    absl::StatusOr<std::string> text = readFile(fmt::format("{}/{}.pid", dir_, daemon));
    if (text.ok()) pid = parsePid(*text).value_or(pid);
    if (pid <= 1) continue;
    std::optional<int> first_signal = SIGTERM;
    if (std::string_view(daemon) == "ovs-vswitchd" && isDaemonOf(pid, dir_)) {
      absl::StatusOr<std::string> asked =
          runCommand({"ovs-appctl", "-t", dir_ + "/ovs-vswitchd.ctl", "exit", "--cleanup"},
                     environment(), kDaemonExitGrace);
      if (asked.ok()) first_signal = std::nullopt;
    }
    absl::Status stopped = stopDaemon(pid, dir_, first_signal, daemon);
    if (!stopped.ok() && result.ok()) result = stopped;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
  return result;
}

absl::StatusOr<std::string> OvsInstance::vsctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"ovs-vsctl", "--db=unix:" + dbSocket(), "--timeout=30"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, false);
}

absl::StatusOr<std::string> OvsInstance::appctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"ovs-appctl", "-t", dir_ + "/ovs-vswitchd.ctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, false);
}

absl::Status OvsInstance::addBridge(std::string_view bridge) const {
  return vsctl({"add-br", std::string(bridge), "--", "set", "bridge", std::string(bridge),
                "datapath_type=netdev"})
      .status();
}

absl::Status OvsInstance::addPort(std::string_view bridge, std::string_view port,
                                  std::optional<uint16_t> vlan_tag) const {
  std::vector<std::string> args = {"add-port", std::string(bridge), std::string(port)};
  if (vlan_tag.has_value()) args.push_back(fmt::format("tag={}", *vlan_tag));
  RETURN_IF_ERROR(vsctl(args).status());
  // ovs-vsctl succeeds even when ovs-vswitchd could not open the interface; it records why
  // in the Interface row (ofport -1, error "could not open network device ...").
  ASSIGN_OR_RETURN(std::string error,
                   vsctl({"--if-exists", "get", "Interface", std::string(port), "error"}));
  while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
  if (!error.empty() && error != "[]") {
    return absl::FailedPreconditionError(fmt::format(
        "Open vSwitch in {} added port {} to {} but cannot use it: {}", dir_, port, bridge, error));
  }
  return absl::OkStatus();
}

absl::Status OvsInstance::deletePort(std::string_view bridge, std::string_view port) const {
  return vsctl({"del-port", std::string(bridge), std::string(port)}).status();
}

std::string OvsInstance::logTail() const {
  return fileTail(dir_ + "/ovs-vswitchd.log");
}

// Frames ----------------------------------------------------------------------------------------

absl::StatusOr<std::vector<uint8_t>> readMatchingFrame(
    int fd, const std::function<bool(std::span<const uint8_t>)>& match, absl::Duration timeout) {
  Clock& clock = systemClock();
  const absl::Duration deadline = clock.monotonicNow() + timeout;
  std::vector<uint8_t> buffer(65536 + 64);
  size_t skipped = 0;
  while (true) {
    pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
    int ready = ::poll(&entry, 1, pollTimeoutMs(deadline - clock.monotonicNow()));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(errno, fmt::format("polling fd {}", fd));
    }
    if (ready == 0) {
      return absl::DeadlineExceededError(
          fmt::format("no matching frame arrived on fd {} within {} ({} other frames skipped)", fd,
                      absl::FormatDuration(timeout), skipped));
    }
    ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return errnoStatus(errno, fmt::format("reading fd {}", fd));
    }
    std::span<const uint8_t> frame(buffer.data(), static_cast<size_t>(got));
    if (match(frame)) return std::vector<uint8_t>(frame.begin(), frame.end());
    ++skipped;
  }
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> drainFrames(int fd) {
  std::vector<std::vector<uint8_t>> frames;
  std::vector<uint8_t> buffer(65536 + 64);
  while (true) {
    pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
    int ready = ::poll(&entry, 1, 0);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(errno, fmt::format("polling fd {}", fd));
    }
    if (ready == 0) return frames;
    ssize_t got = ::read(fd, buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return frames;
      return errnoStatus(errno, fmt::format("reading fd {}", fd));
    }
    frames.emplace_back(buffer.begin(), buffer.begin() + got);
  }
}

bool udpEchoed(int socket, const std::string& ip, int sequence, absl::Duration timeout) {
  sockaddr_in guest{};
  guest.sin_family = AF_INET;
  guest.sin_port = htons(7);
  if (::inet_pton(AF_INET, ip.c_str(), &guest.sin_addr) != 1) return false;
  const std::string message = fmt::format("probe {}", sequence);
  if (::sendto(socket, message.data(), message.size(), 0, reinterpret_cast<const sockaddr*>(&guest),
               sizeof(guest)) < 0) {
    return false;
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    pollfd readable{socket, POLLIN, 0};
    const int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now())) + 1;
    if (::poll(&readable, 1, wait_ms) != 1) continue;
    char reply[256];
    const ssize_t n = ::recv(socket, reply, sizeof(reply), 0);
    if (n > 0 && std::string(reply, static_cast<size_t>(n)) == message) return true;
  }
  return false;
}

}  // namespace flotilla::testing
