// flotilla-vmm's options (see options.h).
#include "vmm/options.h"

#include <optional>

#include "CLI/CLI.hpp"
#include "common/config.h"
#include "common/status.h"
#include "common/units.h"
#include "fmt/format.h"
#include "fmt/ranges.h"
#include "vmm/exit_codes.h"
#include "vmm/vcpu/cpuid.h"

namespace flotilla::vmm {
namespace {

// The values as given on the command line (unset: not given).
struct Flags {
  std::optional<std::string> config, name, kernel, initrd, cmdline, memory, cpu_model, serial,
      api_socket, restore, incoming, migration_token, migration_status, log_level, log_file;
  std::optional<uint32_t> vcpus;
  bool hugepages = false;
  std::vector<std::string> disks, nets;
  bool rng = false;
  bool balloon = false;
};

absl::Status usage(std::string message) {
  return withExitCode(absl::InvalidArgumentError(std::move(message)), kExitUsage);
}

absl::Status loadConfigFile(const std::string& path, Flags& values, VmmOptions& options) {
  auto document = ConfigDocument::loadFile(path);
  if (!document.ok()) return withExitCode(document.status(), kExitUsage);
  ConfigNode root = document->root();
  std::string memory, serial, log_level;
  root.optional("name", options.vm.name);
  root.optional("kernel", options.vm.kernel);
  root.optional("initrd", options.vm.initrd);
  root.optional("cmdline", options.vm.cmdline);
  root.optional("vcpus", options.vm.vcpus);
  root.optional("memory", options.vm.memory_bytes, ConfigNode::kByteSize);
  root.optional("cpu_model", options.vm.cpu_model);
  root.optional("hugepages", options.vm.hugepages);
  root.optional("serial", serial);
  root.optional("api_socket", options.api_socket);
  root.optional("restore", options.restore);
  root.optional("incoming", options.incoming);
  root.optional("migration_token", options.migration_token);
  root.optional("migration_status", options.migration_status);
  root.optional("log_level", log_level);
  root.optional("log_file", options.log.file);
  root.optional("rng", options.vm.rng);
  root.optional("balloon", options.vm.balloon);
  // Devices: each entry's keys are the option's settings; the text goes through the same
  // parser as --disk and --net.
  std::vector<std::pair<ConfigNode, std::string>> disk_texts, net_texts;
  for (ConfigNode disk : root.children("disks")) {
    std::string file, iscsi, disk_serial;
    bool read_only = false;
    uint64_t generation = 0;
    disk.optional("path", file);
    disk.optional("iscsi", iscsi);
    disk.optional("readonly", read_only);
    disk.optional("serial", disk_serial);
    const bool has_generation = disk.has("generation");
    disk.optional("generation", generation);
    std::string text = !file.empty() ? "path=" + file : "";
    if (!iscsi.empty()) text += (text.empty() ? "iscsi=" : ",iscsi=") + iscsi;
    if (read_only) text += ",readonly";
    if (!disk_serial.empty()) text += ",serial=" + disk_serial;
    if (has_generation) text += fmt::format(",generation={}", generation);
    disk_texts.emplace_back(disk, text);
  }
  for (ConfigNode net : root.children("nets")) {
    std::string tap, mac;
    int64_t fd = -1;
    bool offload = true;
    net.optional("tap", tap);
    net.optional("fd", fd);
    net.optional("mac", mac);
    net.optional("offload", offload);
    std::string text = !tap.empty() ? "tap=" + tap : "";
    if (fd >= 0) text += fmt::format("{}fd={}", text.empty() ? "" : ",", fd);
    if (!mac.empty()) text += ",mac=" + mac;
    if (!offload) text += ",offload=off";
    net_texts.emplace_back(net, text);
  }
  for (auto& [node, text] : disk_texts) {
    auto disk = parseDiskOption(text);
    if (disk.ok()) {
      options.vm.disks.push_back(*disk);
    } else {
      node.fail("path", std::string(disk.status().message()));
    }
  }
  for (auto& [node, text] : net_texts) {
    auto nic = parseNetOption(text);
    if (nic.ok()) {
      options.vm.nics.push_back(*nic);
    } else {
      node.fail("tap", std::string(nic.status().message()));
    }
  }
  absl::Status finished = document->finish();
  if (!finished.ok()) return withExitCode(finished, kExitUsage);
  // Text values that need parsing go through the same path as the flags (unless overridden).
  if (!serial.empty() && !values.serial) values.serial = serial;
  if (!log_level.empty() && !values.log_level) values.log_level = log_level;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VmmOptions> parseVmmOptions(int argc, const char* const* argv) {
  VmmOptions options;
  Flags flags;
  CLI::App app{
      "flotilla-vmm: runs one virtual machine on KVM.\n"
      "Boots a kernel (bzImage, vmlinux ELF or PVH ELF) or resumes a snapshot; the serial "
      "console goes to standard output unless --serial says otherwise.",
      "flotilla-vmm"};
  app.add_option("--config", flags.config, "YAML file with any of these options");
  app.add_option("--name", flags.name, "the VM's name, in logs");
  app.add_option("--kernel", flags.kernel, "kernel image (bzImage, vmlinux or PVH ELF)");
  app.add_option("--initrd", flags.initrd, "initial ramdisk");
  app.add_option("--cmdline", flags.cmdline, "kernel command line");
  app.add_option("--memory", flags.memory, "guest memory, e.g. 512M or 2G (default 512M)");
  app.add_option("--vcpus", flags.vcpus, "number of vCPUs (default 1)");
  app.add_option("--cpu-model", flags.cpu_model,
                 fmt::format("CPU model: {} (default host)", fmt::join(cpuModelNames(), ", ")));
  app.add_flag("--hugepages", flags.hugepages, "back guest memory with 2 MiB huge pages");
  app.add_option("--serial", flags.serial,
                 "serial console: stdout (default), file:PATH, socket:PATH or none");
  app.add_option("--disk", flags.disks,
                 "a virtio disk: path=FILE or iscsi=iscsi://HOST[:PORT]/IQN/LUN, then "
                 "[,readonly][,serial=S][,generation=N] (N: the VM's generation, which fences "
                 "older copies of the VM off an iSCSI LUN); repeat for more disks");
  app.add_option("--net", flags.nets,
                 "a virtio NIC: tap=NAME or fd=N, then [,mac=MAC][,offload=off]; repeat for "
                 "more NICs");
  app.add_flag("--rng", flags.rng, "a virtio entropy device (from the host's getrandom)");
  app.add_flag("--balloon", flags.balloon, "a virtio memory balloon");
  app.add_option("--api-socket", flags.api_socket, "serve the VmmService API on this unix socket");
  app.add_option("--restore", flags.restore, "resume the snapshot in this directory");
  app.add_option("--incoming", flags.incoming,
                 "tcp:HOST:PORT: wait there for a live migration of the VM described by the "
                 "other options (memory, vCPUs, CPU model, devices) instead of booting; the API "
                 "answers MigrateStatus meanwhile");
  app.add_option("--migration-token", flags.migration_token,
                 "with --incoming: the one-time token the migration source must present");
  app.add_option("--migration-status", flags.migration_status,
                 "after an outgoing migration succeeded, write its final MigrationStatus (binary "
                 "protobuf) to this file before exiting");
  app.add_option("--log-level", flags.log_level, "debug, info (default), warn or error");
  app.add_option("--log-file", flags.log_file, "write logs to this file instead of stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    options.help = true;
    options.help_text = app.help();
    return options;
  } catch (const CLI::ParseError& e) {
    return usage(fmt::format("{}; see flotilla-vmm --help", e.what()));
  }

  if (flags.config) RETURN_IF_ERROR(loadConfigFile(*flags.config, flags, options));
  if (flags.name) options.vm.name = *flags.name;
  if (flags.kernel) options.vm.kernel = *flags.kernel;
  if (flags.initrd) options.vm.initrd = *flags.initrd;
  if (flags.cmdline) options.vm.cmdline = *flags.cmdline;
  if (flags.vcpus) options.vm.vcpus = *flags.vcpus;
  if (flags.cpu_model) options.vm.cpu_model = *flags.cpu_model;
  if (flags.hugepages) options.vm.hugepages = true;
  if (flags.api_socket) options.api_socket = *flags.api_socket;
  // Device flags replace the file's devices of the same kind.
  if (!flags.disks.empty()) options.vm.disks.clear();
  for (const std::string& text : flags.disks) {
    auto disk = parseDiskOption(text);
    if (!disk.ok()) return usage(std::string(disk.status().message()));
    options.vm.disks.push_back(*disk);
  }
  if (!flags.nets.empty()) options.vm.nics.clear();
  for (const std::string& text : flags.nets) {
    auto nic = parseNetOption(text);
    if (!nic.ok()) return usage(std::string(nic.status().message()));
    options.vm.nics.push_back(*nic);
  }
  if (flags.rng) options.vm.rng = true;
  if (flags.balloon) options.vm.balloon = true;
  if (flags.restore) options.restore = *flags.restore;
  if (flags.incoming) options.incoming = *flags.incoming;
  if (flags.migration_token) options.migration_token = *flags.migration_token;
  if (flags.migration_status) options.migration_status = *flags.migration_status;
  if (flags.log_file) options.log.file = *flags.log_file;
  if (flags.memory) {
    auto bytes = parseByteSize(*flags.memory);
    if (!bytes.ok()) return usage(fmt::format("--memory: {}", bytes.status().message()));
    options.vm.memory_bytes = *bytes;
  }
  if (flags.serial) {
    auto console = parseConsoleConfig(*flags.serial);
    if (!console.ok()) return usage(fmt::format("--serial: {}", console.status().message()));
    options.vm.console = *console;
  }
  if (flags.log_level) {
    auto level = parseLogLevel(*flags.log_level);
    if (!level.ok()) return usage(fmt::format("--log-level: {}", level.status().message()));
    options.log.level = *level;
  }
  if (!options.incoming.empty()) {
    if (!options.incoming.starts_with("tcp:")) {
      return usage(fmt::format("--incoming {}: expected tcp:HOST:PORT", options.incoming));
    }
    options.incoming = options.incoming.substr(4);
    if (options.migration_token.empty()) {
      return usage("--incoming needs --migration-token: the one-time token the source presents");
    }
    if (!options.restore.empty() || !options.vm.kernel.empty() || !options.vm.initrd.empty() ||
        !options.vm.cmdline.empty()) {
      return usage(
          "--incoming receives a running VM: --restore, --kernel, --initrd and --cmdline do not "
          "apply (give its memory, vCPUs, CPU model and devices)");
    }
    RETURN_IF_ERROR(validateVmConfig(options.vm));
    return options;
  }
  if (!options.migration_token.empty()) {
    return usage("--migration-token goes with --incoming");
  }
  if (options.restore.empty() && options.vm.kernel.empty()) {
    return usage(
        "nothing to run: give --kernel FILE to boot, --restore DIR to resume, or --incoming "
        "tcp:HOST:PORT to receive a migration");
  }
  if (!options.restore.empty() && (flags.kernel || flags.initrd || flags.cmdline || flags.vcpus ||
                                   flags.memory || flags.cpu_model)) {
    return usage(
        "--restore resumes a snapshot as it was: --kernel, --initrd, --cmdline, --vcpus, "
        "--memory and --cpu-model do not apply");
  }
  if (options.restore.empty()) RETURN_IF_ERROR(validateVmConfig(options.vm));
  return options;
}

}  // namespace flotilla::vmm
