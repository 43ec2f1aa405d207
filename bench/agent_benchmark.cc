// agent_bench: flotilla-agent on a simulated host (a network namespace with its own Open
// vSwitch, the agent, and a one-member etcd, made by the agent's integration-test fixture),
// measured against named peers in the same run (docs/benchmarks.md, "flotilla-agent"):
//   1. create to running: CreateVm(start=true) through the agent's API until the RPC returns
//      RUNNING and until the guest's first serial line, with and without a NIC; the peers are
//      flotilla-vmm started directly with the very command line the agent builds, and QEMU's
//      microvm, each booting the same guest; then stop and delete;
//   2. the agent's RSS and CPU with 50 idle VMs over 30 s at its default report interval, next
//      to ovs-vswitchd, ovsdb-server and etcd of the same host as references.
// Exits 0 when every measurement worked, whether targets were met or not; 1 when one failed
// or the machine lacks what it needs (root, /dev/kvm, OVS, etcd, QEMU); 2 on bad usage.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/machine.h"
#include "bench/qmp.h"
#include "bench/report.h"
#include "bench/vmm_launch.h"
#include "common/clock.h"
#include "common/command.h"
#include "common/files.h"
#include "common/process.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "common/thread.h"
#include "common/unique_fd.h"
#include "flotilla/v1/agent.grpc.pb.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "fmt/format.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "network/tap.h"
#include "node-agent/vmm_command.h"
#include "tests/integration/node-agent/agent_host.h"
#include "tests/support/etcd_cluster.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla::bench {
namespace {

using ::flotilla::agent::testing::AgentHost;
using ::flotilla::agent::testing::ClusterNetwork;
using ::flotilla::testing::EtcdCluster;

// Targets (issue "flotilla-agent", docs/benchmarks.md).
constexpr double kCreateTargetMs = 100;
constexpr double kRssTargetMib = 50;
constexpr double kCpuTargetPercent = 1;

constexpr uint64_t kGuestMemoryBytes = uint64_t{64} << 20;
constexpr char kGuestMemory[] = "64M";  // the same, as QEMU's -m
constexpr char kGuestCmdline[] = "workload=idle";
constexpr char kBootLine[] = "flotilla-guest: boot";  // the guest's first serial line
constexpr char kNetwork[] = "blue";
constexpr uint32_t kVlan = 100;
constexpr char kPeerMac[] = "52:54:00:ab:00:01";
constexpr absl::Duration kBootTimeout = absl::Seconds(30);
constexpr absl::Duration kReportInterval = absl::Seconds(3);  // the agent's default
constexpr double kMiB = 1024.0 * 1024.0;

struct Options {
  int iterations = 20;
  int vms = 50;
  int seconds = 30;
  std::string only;  // "create", "idle" or empty: both
  bool verbose = false;
};

absl::Duration monotonicNow() {
  return systemClock().monotonicNow();
}

double millisBetween(absl::Duration from, absl::Duration to) {
  return absl::ToDoubleMilliseconds(to - from);
}

// ---- Processes, from /proc ----

struct ProcessSample {
  uint64_t cpu_ticks = 0;    // utime + stime of all its threads
  uint64_t child_ticks = 0;  // cutime + cstime: children it has reaped (commands it ran)
  uint64_t rss_bytes = 0;    // VmRSS
  uint64_t hwm_bytes = 0;    // VmHWM: the peak VmRSS
  pid_t parent = 0;
  std::string comm;
};

// "KEY:   123 kB" of /proc/PID/status, in bytes. (abseil's string_view is not std's here.)
absl::StatusOr<uint64_t> statusKilobytes(const std::string& status, const std::string& key,
                                         const std::string& path) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::StartsWith(line, key + ":")) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(line.substr(key.size() + 1), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    uint64_t kib = 0;
    if (words.empty() || !absl::SimpleAtoi(words[0], &kib)) break;
    return kib * 1024;
  }
  return absl::DataLossError(fmt::format("{} has no readable {} line", path, key));
}

absl::StatusOr<ProcessSample> sampleProcess(pid_t pid) {
  const std::string stat_path = fmt::format("/proc/{}/stat", pid);
  ASSIGN_OR_RETURN(std::string stat, readFileToString(stat_path, 4096));
  // "PID (COMM) STATE PPID ...": the command may hold spaces and parentheses.
  const size_t open = stat.find('(');
  const size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return absl::DataLossError(fmt::format("{} is not a stat line: {}", stat_path, stat));
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 of proc(5) (state); utime..cstime are fields 14..17.
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;
  int parent = 0;
  if (fields.size() < 15 || !absl::SimpleAtoi(fields[1], &parent) ||
      !absl::SimpleAtoi(fields[11], &utime) || !absl::SimpleAtoi(fields[12], &stime) ||
      !absl::SimpleAtoi(fields[13], &cutime) || !absl::SimpleAtoi(fields[14], &cstime)) {
    return absl::DataLossError(fmt::format("{}: unexpected fields: {}", stat_path, stat));
  }
  ProcessSample sample;
  sample.comm = stat.substr(open + 1, close - open - 1);
  sample.parent = parent;
  sample.cpu_ticks = utime + stime;
  sample.child_ticks = cutime + cstime;
  const std::string status_path = fmt::format("/proc/{}/status", pid);
  ASSIGN_OR_RETURN(std::string status, readFileToString(status_path, 1 << 16));
  ASSIGN_OR_RETURN(sample.rss_bytes, statusKilobytes(status, "VmRSS", status_path));
  ASSIGN_OR_RETURN(sample.hwm_bytes, statusKilobytes(status, "VmHWM", status_path));
  return sample;
}

// The etcd member this process started (EtcdCluster spawns the binary itself, so it is our
// child), found among our children by its command name.
absl::StatusOr<pid_t> etcdChildPid() {
  const pid_t self = ::getpid();
  std::error_code error;
  std::filesystem::directory_iterator entry("/proc", error);
  for (; !error && entry != std::filesystem::directory_iterator(); entry.increment(error)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->path().filename().string(), &pid)) continue;
    auto sample = sampleProcess(pid);
    if (sample.ok() && sample->parent == self && sample->comm == "etcd") return pid;
  }
  if (error) return errnoStatus(error.value(), "cannot list /proc");
  return absl::NotFoundError("the etcd member started by this benchmark is not among its children");
}

// ---- The guest's first serial line, as a file ----

// Polls a serial console file every 500 µs from a thread of its own, from construction on,
// until it holds the guest's first complete line: the same detection for the agent's VMs
// (whose file the agent creates) and for both peers.
class FirstLineWatcher {
 public:
  explicit FirstLineWatcher(std::string path)
      : path_(std::move(path)),
        thread_(namedThread("serial-watch", [this](std::stop_token stop) { poll(stop); })) {}
  FirstLineWatcher(const FirstLineWatcher&) = delete;
  FirstLineWatcher& operator=(const FirstLineWatcher&) = delete;

  // When the line was seen (monotonic time).
  absl::StatusOr<absl::Duration> wait(absl::Duration timeout) {
    if (!seen_.WaitForNotificationWithTimeout(timeout)) {
      return absl::DeadlineExceededError(fmt::format("no '{}' line in {} within {}: {}", kBootLine,
                                                     path_, absl::FormatDuration(timeout),
                                                     testing::fileTail(path_, 800)));
    }
    return seen_at_;
  }

 private:
  void poll(const std::stop_token& stop) {
    while (!stop.stop_requested()) {
      auto text = readFileToString(path_, 1 << 16);
      if (text.ok()) {
        const size_t at = text->find(kBootLine);
        if (at != std::string::npos && text->find('\n', at) != std::string::npos) {
          seen_at_ = monotonicNow();  // published by Notify()
          seen_.Notify();
          return;
        }
      }
      absl::SleepFor(absl::Microseconds(500));
    }
  }

  const std::string path_;
  absl::Duration seen_at_;
  absl::Notification seen_;
  std::jthread thread_;  // last: stopped and joined before the members it uses go
};

// ---- Requests ----

flotilla::v1::CreateVmRequest vmRequest(const std::string& name, const std::string& guest,
                                        bool nic) {
  flotilla::v1::CreateVmRequest request;
  request.set_name(name);
  request.set_uid("uid-" + name);
  request.set_start(true);
  flotilla::v1::VmSpec& spec = *request.mutable_spec();
  spec.set_vcpus(1);
  spec.set_memory_bytes(kGuestMemoryBytes);
  spec.mutable_boot()->set_kernel(guest);
  spec.mutable_boot()->set_cmdline(kGuestCmdline);
  if (nic) {
    flotilla::v1::NicSpec& added = *spec.add_nics();
    added.set_network(kNetwork);
    added.set_offload(false);
    flotilla::v1::NetworkBinding& binding = *request.add_networks();
    binding.set_name(kNetwork);
    binding.set_vlan(kVlan);
  }
  return request;
}

absl::Status rpcStatus(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      fmt::format("{}: {}", what, status.error_message()));
}

absl::StatusOr<flotilla::v1::AgentVm> createVm(AgentHost& host,
                                               const flotilla::v1::CreateVmRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(60)));
  flotilla::v1::AgentVm vm;
  RETURN_IF_ERROR(rpcStatus(host.api().CreateVm(&context, request, &vm),
                            fmt::format("CreateVm '{}'", request.name())));
  if (vm.state() != flotilla::v1::VM_STATE_RUNNING) {
    return absl::InternalError(fmt::format("CreateVm '{}' returned state {} ({}), not RUNNING",
                                           request.name(), flotilla::v1::VmState_Name(vm.state()),
                                           vm.message()));
  }
  return vm;
}

// StopVm with a 1 ms grace, then DeleteVm. (DeleteVm of a running VM waits the agent's
// stop_grace for the guest to act on Ctrl-Alt-Del, which the test guest ignores.)
absl::Status stopAndDelete(AgentHost& host, const std::string& name) {
  {
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Seconds(30)));
    flotilla::v1::StopVmRequest request;
    request.set_name(name);
    request.set_grace_ms(1);
    flotilla::v1::AgentVm vm;
    RETURN_IF_ERROR(
        rpcStatus(host.api().StopVm(&context, request, &vm), fmt::format("StopVm '{}'", name)));
  }
  grpc::ClientContext context;
  context.set_deadline(deadlineAfter(absl::Seconds(30)));
  flotilla::v1::AgentVmRequest request;
  request.set_name(name);
  flotilla::v1::DeleteVmResponse response;
  return rpcStatus(host.api().DeleteVm(&context, request, &response),
                   fmt::format("DeleteVm '{}'", name));
}

// ---- Section 1: create to running ----

enum class Launcher { kAgent, kVmm, kQemu };

struct LatencyRow {
  std::string label;
  Samples agent;
  Samples vmm;
  Samples qemu;

  Samples& of(Launcher launcher) {
    return launcher == Launcher::kAgent ? agent : launcher == Launcher::kVmm ? vmm : qemu;
  }
};

struct CreateVariant {
  bool nic = false;
  LatencyRow running{"create to running (see notes)", {}, {}, {}};
  LatencyRow boot{"create to the guest's first serial line", {}, {}, {}};
  LatencyRow stop{"stop (1 ms grace) and delete", {}, {}, {}};
};

struct RunTimes {
  double running_ms = 0;
  double boot_ms = 0;
  double stop_ms = 0;
};

struct CreateBench {
  const Options& options;
  Programs programs;
  AgentHost& host;
  const testing::TempDir& dir;
  int run = 0;  // numbers VM names, peer directories and taps
};

absl::StatusOr<RunTimes> agentRun(CreateBench& bench, bool nic) {
  const std::string name = fmt::format("bench-{}", bench.run);
  const flotilla::v1::CreateVmRequest request = vmRequest(name, bench.programs.guest_elf, nic);
  RunTimes times;
  FirstLineWatcher watcher(fmt::format("{}/vms/{}/serial.log", bench.host.dir().file("run"), name));
  const absl::Duration start = monotonicNow();
  RETURN_IF_ERROR(createVm(bench.host, request).status());
  times.running_ms = millisBetween(start, monotonicNow());
  ASSIGN_OR_RETURN(absl::Duration boot, watcher.wait(kBootTimeout));
  times.boot_ms = millisBetween(start, boot);
  const absl::Duration stop = monotonicNow();
  RETURN_IF_ERROR(stopAndDelete(bench.host, name));
  times.stop_ms = millisBetween(stop, monotonicNow());
  return times;
}

// A peer VMM process: its standard output and error to a log file, a tap as descriptor 3.
absl::StatusOr<ChildProcess> spawnPeer(const std::vector<std::string>& argv,
                                       const std::string& log_path, const network::Tap* tap) {
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return errnoStatus(errno, "open " + log_path);
  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.fds = {{1, log.get()}, {2, log.get()}};
  if (tap != nullptr) spawn.fds.emplace_back(3, tap->fd());
  return ChildProcess::spawn(spawn);
}

absl::Status peerFailed(const absl::Status& status, ChildProcess& child,
                        const std::vector<std::string>& argv, const std::string& log_path) {
  std::string ended = "is still running";
  if (auto exit = child.wait(absl::ZeroDuration()); exit.ok()) ended = exit->describe();
  return absl::Status(status.code(), fmt::format("{}\n  process: {} {}\n  its log ({}):\n{}",
                                                 status.message(), formatCommandLine(argv), ended,
                                                 log_path, testing::fileTail(log_path, 1500)));
}

// Waits for the VMM's API as the agent does: connect(2) on its socket, then Health, every 2 ms.
absl::Status waitVmmServing(const std::string& socket, ChildProcess& child) {
  const absl::Time deadline = absl::Now() + kBootTimeout;
  while (absl::Now() < deadline) {
    if (unixSocketAccepts(socket)) {
      auto stub = flotilla::v1::VmmService::NewStub(
          grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
      grpc::ClientContext context;
      context.set_deadline(deadlineAfter(absl::Seconds(5)));
      flotilla::v1::HealthResponse health;
      if (stub->Health(&context, flotilla::v1::HealthRequest(), &health).ok()) {
        return absl::OkStatus();
      }
    }
    if (child.wait(absl::ZeroDuration()).ok()) {
      return absl::FailedPreconditionError("flotilla-vmm exited before serving its API");
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  return absl::DeadlineExceededError("flotilla-vmm did not serve its API in time");
}

// A fresh directory for one peer run.
absl::StatusOr<std::string> peerDir(CreateBench& bench, std::string_view kind) {
  const std::string path = bench.dir.file(fmt::format("{}-{}", kind, bench.run));
  if (::mkdir(path.c_str(), 0700) != 0) return errnoStatus(errno, "mkdir " + path);
  return path;
}

// A tap in the host's namespace for a peer with a NIC (not on OVS: the peers get a ready tap,
// where the agent makes a persistent tap and its OVS port as part of the create).
absl::StatusOr<std::optional<network::Tap>> peerTap(CreateBench& bench, bool nic) {
  if (!nic) return std::optional<network::Tap>();
  ASSIGN_OR_RETURN(network::Tap tap, bench.host.ns().openTap(fmt::format("abp{}", bench.run)));
  return std::optional<network::Tap>(std::move(tap));
}

absl::StatusOr<RunTimes> vmmRun(CreateBench& bench, bool nic) {
  ASSIGN_OR_RETURN(std::string dir, peerDir(bench, "vmm"));
  ASSIGN_OR_RETURN(std::optional<network::Tap> tap, peerTap(bench, nic));
  const std::string name = fmt::format("bench-{}", bench.run);
  // The command line the agent would build for the same request.
  agent::VmmCommand command;
  command.binary = bench.programs.flotilla_vmm;
  command.name = name;
  command.spec = vmRequest(name, bench.programs.guest_elf, nic).spec();
  command.api_socket = dir + "/api.sock";
  command.serial_path = dir + "/serial.log";
  command.log_path = dir + "/vmm.log";
  if (nic) command.nics.push_back({.child_fd = 3, .mac = kPeerMac, .offload = false});
  const std::vector<std::string> argv = agent::vmmArgv(command);

  RunTimes times;
  FirstLineWatcher watcher(command.serial_path);
  const absl::Duration start = monotonicNow();
  ASSIGN_OR_RETURN(ChildProcess child, spawnPeer(argv, command.log_path, tap ? &*tap : nullptr));
  tap.reset();  // only the VMM holds it now
  if (absl::Status serving = waitVmmServing(command.api_socket, child); !serving.ok()) {
    return peerFailed(serving, child, argv, command.log_path);
  }
  times.running_ms = millisBetween(start, monotonicNow());
  auto boot = watcher.wait(kBootTimeout);
  if (!boot.ok()) return peerFailed(boot.status(), child, argv, command.log_path);
  times.boot_ms = millisBetween(start, *boot);

  // What the agent's StopVm asks of the VMM, then the exit; and its files removed.
  const absl::Duration stop = monotonicNow();
  {
    auto stub = flotilla::v1::VmmService::NewStub(
        grpc::CreateChannel("unix:" + command.api_socket, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Seconds(2)));
    flotilla::v1::ShutdownRequest request;
    request.set_graceful_timeout_ms(1);
    flotilla::v1::ShutdownResponse response;
    (void)stub->Shutdown(&context, request, &response);
  }
  auto exited = child.wait(absl::Seconds(10));
  if (!exited.ok()) return peerFailed(exited.status(), child, argv, command.log_path);
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  times.stop_ms = millisBetween(stop, monotonicNow());
  return times;
}

absl::StatusOr<RunTimes> qemuRun(CreateBench& bench, bool nic) {
  ASSIGN_OR_RETURN(std::string dir, peerDir(bench, "qemu"));
  ASSIGN_OR_RETURN(std::optional<network::Tap> tap, peerTap(bench, nic));
  GuestSpec guest;
  guest.memory = kGuestMemory;
  guest.cmdline = kGuestCmdline;
  if (nic) {
    guest.qemu_devices = {"-netdev", "tap,id=n0,fd=3", "-device",
                          fmt::format("virtio-net-device,netdev=n0,mac={}", kPeerMac)};
  }
  const std::string qmp_socket = dir + "/qmp.sock";
  const std::string serial = dir + "/serial.log";
  const std::string log = dir + "/qemu.log";
  std::vector<std::string> argv = qemuCommand(bench.programs, guest, qmp_socket, "");
  // Its serial console to a file, as the agent's VMMs write theirs.
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == "-serial") argv[i + 1] = "file:" + serial;
  }

  RunTimes times;
  FirstLineWatcher watcher(serial);
  const absl::Duration start = monotonicNow();
  ASSIGN_OR_RETURN(ChildProcess child, spawnPeer(argv, log, tap ? &*tap : nullptr));
  tap.reset();
  auto qmp = QmpClient::connect(qmp_socket, kBootTimeout, child.pidfd());
  if (!qmp.ok()) return peerFailed(qmp.status(), child, argv, log);
  times.running_ms = millisBetween(start, monotonicNow());
  auto boot = watcher.wait(kBootTimeout);
  if (!boot.ok()) return peerFailed(boot.status(), child, argv, log);
  times.boot_ms = millisBetween(start, *boot);

  const absl::Duration stop = monotonicNow();
  (void)qmp->execute("quit");  // QEMU may close the socket before it answers
  auto exited = child.wait(absl::Seconds(10));
  if (!exited.ok()) return peerFailed(exited.status(), child, argv, log);
  std::error_code error;
  std::filesystem::remove_all(dir, error);
  times.stop_ms = millisBetween(stop, monotonicNow());
  return times;
}

std::string launcherName(Launcher launcher) {
  switch (launcher) {
    case Launcher::kAgent:
      return "flotilla-agent";
    case Launcher::kVmm:
      return "flotilla-vmm (direct)";
    case Launcher::kQemu:
      return "QEMU";
  }
  return "?";
}

absl::StatusOr<RunTimes> runOnce(CreateBench& bench, Launcher launcher, bool nic) {
  ++bench.run;
  absl::StatusOr<RunTimes> times = launcher == Launcher::kAgent ? agentRun(bench, nic)
                                   : launcher == Launcher::kVmm ? vmmRun(bench, nic)
                                                                : qemuRun(bench, nic);
  if (!times.ok()) {
    return annotate(times.status(), fmt::format("{}, {} NIC", launcherName(launcher),
                                                nic ? "with a" : "without a"));
  }
  if (bench.options.verbose) {
    fmt::print(stderr,
               "  {:<22} {:<10} running {:7.2f} ms, first line {:7.2f} ms, stop {:7.2f} ms\n",
               launcherName(launcher), nic ? "NIC" : "no NIC", times->running_ms, times->boot_ms,
               times->stop_ms);
  }
  return times;
}

// `iterations` rounds of the six runs (three launchers, with and without a NIC), the order
// reversed every other round so that no launcher always follows the same one; one round
// before them warms up the binaries and the agent and is not counted.
absl::StatusOr<std::vector<CreateVariant>> runCreateBenchmark(CreateBench& bench) {
  std::vector<CreateVariant> variants(2);
  variants[0].nic = false;
  variants[1].nic = true;
  std::vector<std::pair<Launcher, int>> order;
  for (int variant : {0, 1}) {
    for (Launcher launcher : {Launcher::kAgent, Launcher::kVmm, Launcher::kQemu}) {
      order.emplace_back(launcher, variant);
    }
  }
  for (int round = -1; round < bench.options.iterations; ++round) {
    std::vector<std::pair<Launcher, int>> this_round = order;
    if (round % 2 == 1) std::reverse(this_round.begin(), this_round.end());
    for (const auto& [launcher, index] : this_round) {
      CreateVariant& variant = variants[static_cast<size_t>(index)];
      ASSIGN_OR_RETURN(RunTimes times, runOnce(bench, launcher, variant.nic));
      if (round < 0) continue;
      variant.running.of(launcher).add(times.running_ms);
      variant.boot.of(launcher).add(times.boot_ms);
      variant.stop.of(launcher).add(times.stop_ms);
    }
  }
  return variants;
}

std::string ratio(const Samples& numerator, const Samples& denominator) {
  if (numerator.empty() || denominator.empty() || denominator.median() == 0) return "-";
  return fmt::format("{:.2f}x", numerator.median() / denominator.median());
}

std::string createTable(const std::vector<CreateVariant>& variants) {
  constexpr size_t kLabel = 42;
  constexpr size_t kFigure = 10;
  auto line = [&](std::string_view label, const std::vector<std::string>& figures) {
    std::string text = fmt::format("{:<{}}", label, kLabel);
    for (const std::string& figure : figures) text += fmt::format(" {:>{}}", figure, kFigure);
    return text + "\n";
  };
  std::string text = line("measurement", {"agent med", "p90", "VMM med", "p90", "QEMU med", "p90",
                                          "agent/VMM", "agent/QEMU"});
  text += std::string(kLabel + 8 * (kFigure + 1), '-') + "\n";
  for (const CreateVariant& variant : variants) {
    text += fmt::format("{} (1 vCPU, 64 MiB, {}{})\n", variant.nic ? "with a NIC" : "without a NIC",
                        kGuestCmdline, variant.nic ? ", virtio-net on VLAN 100" : "");
    for (const LatencyRow* row : {&variant.running, &variant.boot, &variant.stop}) {
      auto figure = [](const Samples& samples, bool p90) {
        return samples.empty() ? std::string("-")
                               : formatFigure(p90 ? samples.p90() : samples.median(), "ms");
      };
      text += line("  " + row->label,
                   {figure(row->agent, false), figure(row->agent, true), figure(row->vmm, false),
                    figure(row->vmm, true), figure(row->qemu, false), figure(row->qemu, true),
                    ratio(row->agent, row->vmm), ratio(row->agent, row->qemu)});
    }
  }
  return text;
}

std::vector<std::string> createNotes() {
  return {
      "create to running: agent: the CreateVm RPC (start=true) until it returns RUNNING, i.e. "
      "until the VMM answered Health; VMM: spawn until Health answers (polled as the agent "
      "does, every 2 ms); QEMU: spawn until its QMP greeting and qmp_capabilities",
      "first serial line: '" + std::string(kBootLine) +
          "' complete in the serial file (all three write one; polled every 0.5 ms), from the "
          "RPC call or the spawn",
      "agent: validates, writes its VM record, creates the cgroup, the persistent tap and its "
      "OVS port (with a NIC), spawns flotilla-vmm in the cgroup; VMM: the same flotilla-vmm "
      "command line (node-agent/vmm_command.h), a ready tap passed as descriptor 3 (not on "
      "OVS), no cgroup",
      "QEMU: microvm as vmm_bench runs it, the same guest file and command line, -m 64M, QMP "
      "socket, serial to a file; with a NIC -netdev tap,fd=3 + virtio-net-device",
      "stop and delete: agent StopVm(grace_ms=1) + DeleteVm (removes tap, port, cgroup, files); "
      "VMM: Shutdown(graceful 1 ms) until the process exited, directory removed; QEMU: QMP "
      "quit until the process exited",
  };
}

// ---- Section 2: idle VMs ----

struct ProcessRow {
  std::string name;
  pid_t pid = 0;
  Samples rss_mib{};
  double rss_max_mib = 0;
  double cpu_percent = 0;    // of one core: its own threads
  double child_percent = 0;  // of one core: the children it reaped in the window
  uint64_t hwm_bytes = 0;    // VmHWM at the end: its peak RSS since it started
  std::optional<ProcessSample> first{};
  std::optional<ProcessSample> last{};
};

struct IdleResults {
  int vms = 0;
  int with_nic = 0;
  double seconds = 0;  // the window actually measured
  double agent_rss_before_mib = 0;
  Samples create_ms;
  double delete_all_s = 0;
  int running_at_end = 0;
  std::vector<ProcessRow> processes;  // the agent first
};

absl::StatusOr<IdleResults> runIdleBenchmark(const Options& options, const Programs& programs,
                                             AgentHost& host) {
  IdleResults results;
  results.vms = options.vms;
  ASSIGN_OR_RETURN(pid_t etcd, etcdChildPid());
  results.processes = {{.name = "flotilla-agent", .pid = host.agentPid()},
                       {.name = "ovs-vswitchd", .pid = host.ovs().vswitchdPid()},
                       {.name = "ovsdb-server", .pid = host.ovs().ovsdbServerPid()},
                       {.name = "etcd", .pid = etcd}};
  ASSIGN_OR_RETURN(ProcessSample before, sampleProcess(host.agentPid()));
  if (before.comm != "flotilla-agent") {
    return absl::InternalError(
        fmt::format("process {} is '{}', not flotilla-agent: the fixture's pid is not the agent's",
                    host.agentPid(), before.comm));
  }
  results.agent_rss_before_mib = static_cast<double>(before.rss_bytes) / kMiB;

  std::vector<std::string> names;
  for (int i = 0; i < options.vms; ++i) {
    const bool nic = i % 2 == 1;
    results.with_nic += nic ? 1 : 0;
    const std::string name = fmt::format("idle-{:02}", i);
    const absl::Duration start = monotonicNow();
    RETURN_IF_ERROR(createVm(host, vmRequest(name, programs.guest_elf, nic)).status());
    results.create_ms.add(millisBetween(start, monotonicNow()));
    names.push_back(name);
  }
  fmt::print(stderr, "agent_bench: {} VMs running; settling for {}, then sampling for {} s...\n",
             options.vms, absl::FormatDuration(kReportInterval), options.seconds);
  // One report interval first: the reports of a full host, not the creates, are measured.
  absl::SleepFor(kReportInterval + absl::Seconds(1));

  const absl::Duration start = monotonicNow();
  for (int second = 0; second <= options.seconds; ++second) {
    absl::SleepFor(start + absl::Seconds(second) - monotonicNow());
    for (ProcessRow& row : results.processes) {
      ASSIGN_OR_RETURN(ProcessSample sample, sampleProcess(row.pid));
      if (!row.first) row.first = sample;
      row.last = sample;
      const double rss_mib = static_cast<double>(sample.rss_bytes) / kMiB;
      row.rss_mib.add(rss_mib);
      row.rss_max_mib = std::max(row.rss_max_mib, rss_mib);
      row.hwm_bytes = sample.hwm_bytes;
    }
  }
  results.seconds = absl::ToDoubleSeconds(monotonicNow() - start);
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  for (ProcessRow& row : results.processes) {
    row.cpu_percent = 100.0 * static_cast<double>(row.last->cpu_ticks - row.first->cpu_ticks) /
                      ticks / results.seconds;
    row.child_percent = 100.0 *
                        static_cast<double>(row.last->child_ticks - row.first->child_ticks) /
                        ticks / results.seconds;
  }

  {
    grpc::ClientContext context;
    context.set_deadline(deadlineAfter(absl::Seconds(30)));
    flotilla::v1::ListAgentVmsResponse listed;
    RETURN_IF_ERROR(rpcStatus(
        host.api().ListVms(&context, flotilla::v1::ListAgentVmsRequest(), &listed), "ListVms"));
    for (const auto& vm : listed.vms()) {
      results.running_at_end += vm.state() == flotilla::v1::VM_STATE_RUNNING ? 1 : 0;
    }
  }
  fmt::print(stderr, "agent_bench: deleting the {} VMs...\n", options.vms);
  const absl::Duration deleting = monotonicNow();
  for (const std::string& name : names) RETURN_IF_ERROR(stopAndDelete(host, name));
  results.delete_all_s = absl::ToDoubleSeconds(monotonicNow() - deleting);
  if (results.running_at_end != options.vms) {
    return absl::InternalError(
        fmt::format("only {} of the {} VMs were running at the end of the window (the agent's "
                    "log below says why)",
                    results.running_at_end, options.vms));
  }
  return results;
}

std::string idleTable(const IdleResults& results) {
  constexpr size_t kLabel = 16;
  constexpr size_t kFigure = 10;
  auto line = [&](std::string_view label, const std::vector<std::string>& figures) {
    std::string text = fmt::format("{:<{}}", label, kLabel);
    for (const std::string& figure : figures) text += fmt::format(" {:>{}}", figure, kFigure);
    return text + "\n";
  };
  std::string text =
      line("process", {"RSS med", "RSS max", "VmHWM", "CPU", "agent/this", "agent/this"});
  text += line("", {"", "", "", "% of core", "RSS", "CPU"});
  text += std::string(kLabel + 6 * (kFigure + 1), '-') + "\n";
  const ProcessRow& agent = results.processes.front();
  for (const ProcessRow& row : results.processes) {
    const bool is_agent = &row == &agent;
    std::string rss_ratio = "-";
    std::string cpu_ratio = "-";
    if (!is_agent && row.rss_mib.median() > 0) {
      rss_ratio = fmt::format("{:.2f}x", agent.rss_mib.median() / row.rss_mib.median());
    }
    if (!is_agent && row.cpu_percent > 0) {
      cpu_ratio = fmt::format("{:.2f}x", agent.cpu_percent / row.cpu_percent);
    }
    text += line(row.name,
                 {formatFigure(row.rss_mib.median(), "MiB"), formatFigure(row.rss_max_mib, "MiB"),
                  formatFigure(static_cast<double>(row.hwm_bytes) / kMiB, "MiB"),
                  formatFigure(row.cpu_percent, "%"), rss_ratio, cpu_ratio});
  }
  return text;
}

// ---- The run ----

std::string verdict(bool met) {
  return met ? "[met]   " : "[missed]";
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return fmt::format("{} {} {}", one, five, fifteen);
}

std::string cpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// Root, /dev/kvm, the tools the simulated host and the peers need, and the built programs.
absl::Status checkMachine(const Programs& programs) {
  return requireMachine(
      "agent_bench makes a simulated host: a network namespace, a bridge, OVS and cgroups",
      simulatedHostTools(),
      {programs.flotilla_vmm, programs.guest_elf, std::string(FLOTILLA_AGENT)});
}

int fail(const absl::Status& status) {
  fmt::print(stderr, "agent_bench: error: {}\n", status.message());
  return 1;
}

int run(int argc, char** argv) {
  Options options;
  Programs programs;
  programs.flotilla_vmm = FLOTILLA_VMM;
  programs.guest_elf = FLOTILLA_GUEST_ELF;
  CLI::App app{
      "Benchmarks flotilla-agent on a simulated host against flotilla-vmm started "
      "directly, QEMU, OVS and etcd (docs/benchmarks.md)"};
  app.add_option("--iterations", options.iterations,
                 "create-to-running runs per launcher and NIC variant (default 20)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--vms", options.vms, "idle VMs for the RSS and CPU measurement (default 50)")
      ->check(CLI::Range(1, 500));
  app.add_option("--seconds", options.seconds, "how long RSS and CPU are sampled (default 30)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--only", options.only, "run one part: create or idle")
      ->check(CLI::IsMember({"create", "idle"}));
  app.add_flag("--verbose", options.verbose, "a line per create run on standard error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  auto qemu = testing::findProgram("qemu-system-x86_64", "qemu-system-x86");
  if (!qemu.ok()) return fail(annotate(qemu.status(), "QEMU is the reference VMM"));
  programs.qemu = *qemu;
  if (absl::Status ready = checkMachine(programs); !ready.ok()) return fail(ready);

  utsname system{};
  ::uname(&system);
  fmt::print(
      "flotilla-agent on a simulated host vs flotilla-vmm started directly and QEMU; OVS and etcd "
      "as references\n"
      "date:     {}\n"
      "machine:  {} CPUs ({}), kernel {} {}\n"
      "load:     {} (load average at the start; other work on the machine adds noise)\n"
      "peers:    {}; {}; {}\n"
      "host:     a network namespace with its own OVS (userspace datapath), flotilla-agent with "
      "report_interval {}, a one-member etcd on a bridge\n\n",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone()),
      ::sysconf(_SC_NPROCESSORS_ONLN), cpuModel(), system.release, system.machine, loadAverage(),
      programVersion({programs.qemu, "--version"}), programVersion({"ovs-vswitchd", "--version"}),
      programVersion({"etcd", "--version"}), absl::FormatDuration(kReportInterval));
  (void)std::fflush(stdout);

  // Destroyed in reverse: the host (its VMMs, agent, OVS, namespace, cgroups), etcd, bridge.
  auto network = ClusterNetwork::create();
  if (!network.ok()) return fail(annotate(network.status(), "the cluster network"));
  auto etcd = EtcdCluster::start(1, (*network)->gateway());
  if (!etcd.ok()) return fail(annotate(etcd.status(), "etcd"));
  auto host = AgentHost::create(**network, {.index = 0,
                                            .etcd_endpoint = (*etcd)->clientEndpoint(0),
                                            .report_interval = kReportInterval});
  if (!host.ok()) return fail(annotate(host.status(), "the simulated host"));
  if (absl::Status started = (*host)->startAgent(); !started.ok()) {
    return fail(annotate(started, "flotilla-agent"));
  }
  testing::TempDir dir;
  auto failWithLog = [&](const absl::Status& status) {
    fmt::print(stderr, "the end of the agent's log:\n{}\n",
               testing::fileTail((*host)->dir().file("agent.log"), 3000));
    return fail(status);
  };

  std::string report;
  std::string targets = "targets:\n";
  if (options.only.empty() || options.only == "create") {
    fmt::print(stderr, "agent_bench: create to running, {} rounds of 6 runs (after 1 warm-up)...\n",
               options.iterations);
    CreateBench bench{options, programs, **host, dir};
    auto variants = runCreateBenchmark(bench);
    if (!variants.ok()) return failWithLog(annotate(variants.status(), "create benchmark"));
    report += fmt::format(
        "create to running: {} runs per launcher and variant; median and p90; ratios of the "
        "medians (below 1: the agent is faster)\n\n{}",
        options.iterations, createTable(*variants));
    for (const std::string& note : createNotes()) report += "    " + note + "\n";
    report += "\n";
    for (const CreateVariant& variant : *variants) {
      const double running = variant.running.agent.median();
      const double boot = variant.boot.agent.median();
      targets += fmt::format(
          "  {} create to running <= {:.0f} ms through the agent, {}: {} to RUNNING, {} to the "
          "first serial line (direct VMM {}, QEMU {})\n",
          verdict(running <= kCreateTargetMs), kCreateTargetMs,
          variant.nic ? "with a NIC" : "without a NIC", formatFigure(running, "ms"),
          formatFigure(boot, "ms"), formatFigure(variant.boot.vmm.median(), "ms"),
          formatFigure(variant.boot.qemu.median(), "ms"));
    }
  }
  if (options.only.empty() || options.only == "idle") {
    fmt::print(stderr, "agent_bench: {} idle VMs...\n", options.vms);
    auto idle = runIdleBenchmark(options, programs, **host);
    if (!idle.ok()) return failWithLog(annotate(idle.status(), "idle VMs benchmark"));
    const ProcessRow& agent = idle->processes.front();
    report += fmt::format(
        "{} idle VMs (1 vCPU, 64 MiB, {}, no disk; {} with a NIC on VLAN 100), all running; "
        "sampled every 1 s for {:.1f} s after one report interval\n\n{}",
        idle->vms, kGuestCmdline, idle->with_nic, idle->seconds, idleTable(*idle));
    report += fmt::format(
        "    RSS: VmRSS of /proc/PID/status; VmHWM: the peak since the process started; CPU: "
        "utime + stime over the window / its wall time\n"
        "    flotilla-agent: {} before the VMs were created; the commands it ran and reaped in "
        "the window (ovs-vsctl, ...): {} of a core more\n"
        "    the peers are references of the same host, not alternatives: ovs-vswitchd and "
        "ovsdb-server carry the {} VM ports, etcd holds the host's record the agent refreshes\n"
        "    CreateVm with 0 to {} VMs running: median {}, p90 {}; StopVm + DeleteVm of all {}: "
        "{:.1f} s\n\n",
        formatFigure(idle->agent_rss_before_mib, "MiB"), formatFigure(agent.child_percent, "%"),
        idle->with_nic, idle->vms - 1, formatFigure(idle->create_ms.median(), "ms"),
        formatFigure(idle->create_ms.p90(), "ms"), idle->vms, idle->delete_all_s);
    targets += fmt::format(
        "  {} agent RSS <= {:.0f} MiB with {} idle VMs: {} max over the window (median {}; "
        "ovs-vswitchd {}, etcd {})\n",
        verdict(agent.rss_max_mib <= kRssTargetMib), kRssTargetMib, idle->vms,
        formatFigure(agent.rss_max_mib, "MiB"), formatFigure(agent.rss_mib.median(), "MiB"),
        formatFigure(idle->processes[1].rss_mib.median(), "MiB"),
        formatFigure(idle->processes[3].rss_mib.median(), "MiB"));
    targets += fmt::format(
        "  {} agent CPU <= {:.0f}% of a core with {} idle VMs: {} (ovs-vswitchd {}, etcd {})\n",
        verdict(agent.cpu_percent <= kCpuTargetPercent), kCpuTargetPercent, idle->vms,
        formatFigure(agent.cpu_percent, "%"), formatFigure(idle->processes[1].cpu_percent, "%"),
        formatFigure(idle->processes[3].cpu_percent, "%"));
  }
  fmt::print("{}{}load:     {} (load average at the end)\n", report, targets, loadAverage());
  return 0;
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  return flotilla::bench::run(argc, argv);
}
