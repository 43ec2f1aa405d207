// The VMMs' command lines and LaunchedVmm (see vmm_launch.h).
#include "bench/vmm_launch.h"

#include "absl/strings/numbers.h"
#include "common/clock.h"
#include "common/command.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::bench {

std::vector<std::string> flotillaBootCommand(const Programs& programs, const GuestSpec& guest,
                                             const std::string& api_socket) {
  std::vector<std::string> argv = {
      programs.flotilla_vmm, "--kernel",    programs.guest_elf, "--memory", guest.memory,
      "--cmdline",           guest.cmdline, "--serial",         "stdout"};
  argv.insert(argv.end(), guest.flotilla_devices.begin(), guest.flotilla_devices.end());
  if (!api_socket.empty()) {
    argv.push_back("--api-socket");
    argv.push_back(api_socket);
  }
  return argv;
}

std::vector<std::string> flotillaRestoreCommand(const Programs& programs,
                                                const std::string& snapshot_dir,
                                                const std::string& api_socket) {
  return {programs.flotilla_vmm,
          "--restore",
          snapshot_dir,
          "--api-socket",
          api_socket,
          "--serial",
          "stdout"};
}

std::vector<std::string> qemuCommand(const Programs& programs, const GuestSpec& guest,
                                     const std::string& qmp_socket, const std::string& incoming) {
  const bool devices = !guest.qemu_devices.empty();
  std::vector<std::string> argv = {
      programs.qemu, "-M",
      devices ? "microvm,acpi=off,memory-backend=mem" : "microvm,memory-backend=mem", "-object",
      fmt::format("{},id=mem,size={}",
                  guest.qemu_anonymous_memory ? "memory-backend-ram" : "memory-backend-memfd",
                  guest.memory),
      "-nodefaults", "-no-user-config", "-nographic",
      // Under PVM, QEMU aborts setting IA32_ARCH_CAPABILITIES with plain `-cpu host`.
      "-cpu", "host,-arch-capabilities", "-accel", "kvm", "-m", guest.memory, "-serial", "stdio",
      "-kernel", programs.guest_elf, "-append", guest.cmdline};
  if (devices) {
    // Modern (version 2) virtio-mmio, as Flotilla's VMM and the guest speak it.
    argv.insert(argv.end(), {"-global", "virtio-mmio.force-legacy=false"});
    argv.insert(argv.end(), guest.qemu_devices.begin(), guest.qemu_devices.end());
  }
  if (!qmp_socket.empty()) {
    argv.push_back("-qmp");
    argv.push_back(fmt::format("unix:{},server=on,wait=off", qmp_socket));
  }
  if (!incoming.empty()) {
    argv.push_back("-incoming");
    argv.push_back(incoming);
  }
  return argv;
}

std::optional<uint64_t> counterPass(const std::string& line) {
  static constexpr std::string_view kPass = "flotilla-guest: counter pass=";
  size_t at = line.find(kPass);
  if (at == std::string::npos) return std::nullopt;
  uint64_t pass = 0;
  if (!absl::SimpleAtoi(line.substr(at + kPass.size()), &pass)) return std::nullopt;
  return pass;
}

bool isGuestError(const std::string& line) {
  return line.find("flotilla-guest: error") != std::string::npos;
}

absl::StatusOr<std::unique_ptr<LaunchedVmm>> LaunchedVmm::spawn(std::string name,
                                                                std::vector<std::string> argv) {
  ASSIGN_OR_RETURN(Pipe console, makePipe());
  ASSIGN_OR_RETURN(Pipe log, makePipe());
  SpawnOptions options;
  options.argv = argv;
  options.fds = {{1, console.write.get()}, {2, log.write.get()}};
  const absl::Duration spawned_at = systemClock().monotonicNow();
  auto process = ChildProcess::spawn(options);
  if (!process.ok()) return annotate(process.status(), fmt::format("starting {}", name));
  // Only the child holds the write ends now: the pipes end when it exits.
  console.write.reset();
  log.write.reset();
  std::string console_name = fmt::format("{}'s serial console", name);
  std::string log_name = fmt::format("{}'s standard error", name);
  return std::unique_ptr<LaunchedVmm>(
      new LaunchedVmm(std::move(name), std::move(argv), std::move(*process),
                      PipeLines(std::move(console.read), std::move(console_name)),
                      PipeLines(std::move(log.read), std::move(log_name)), spawned_at));
}

absl::Status LaunchedVmm::explain(const absl::Status& status) {
  if (status.ok()) return status;
  // Collect what is already there, without waiting.
  (void)console_.pump(absl::ZeroDuration());
  (void)log_.pump(absl::ZeroDuration());
  std::string ended = "is still running";
  if (auto exit = process_.wait(absl::ZeroDuration()); exit.ok()) ended = exit->describe();
  return absl::Status(
      status.code(),
      fmt::format("{}: {}\n  process: {} (pid {}) {}\n  serial console:\n{}  standard error:\n{}",
                  name_, status.message(), formatCommandLine(argv_), process_.pid(), ended,
                  console_.tail(), log_.tail()));
}

}  // namespace flotilla::bench
