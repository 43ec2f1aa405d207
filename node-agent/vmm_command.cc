// The flotilla-vmm command line for an agent's VM (see vmm_command.h).
#include "node-agent/vmm_command.h"

#include "common/units.h"
#include "fmt/format.h"

namespace flotilla::agent {

std::vector<std::string> vmmArgv(const VmmCommand& command) {
  const flotilla::v1::VmSpec& spec = command.spec;
  std::vector<std::string> argv = {
      command.binary,
      "--name",
      command.name,
      "--vcpus",
      std::to_string(spec.vcpus() == 0 ? 1 : spec.vcpus()),
      "--memory",
      formatByteSize(spec.memory_bytes()),
      "--api-socket",
      command.api_socket,
      "--serial",
      "file:" + command.serial_path,
      "--log-file",
      command.log_path,
  };
  if (!command.migration_status_path.empty()) {
    argv.insert(argv.end(), {"--migration-status", command.migration_status_path});
  }
  if (!spec.cpu_model().empty()) argv.insert(argv.end(), {"--cpu-model", spec.cpu_model()});
  // A migration target receives a running VM: what it boots from does not apply (and the
  // VMM refuses it).
  if (command.incoming.empty()) {
    if (!spec.boot().kernel().empty()) argv.insert(argv.end(), {"--kernel", spec.boot().kernel()});
    if (!spec.boot().initrd().empty()) argv.insert(argv.end(), {"--initrd", spec.boot().initrd()});
    if (!spec.boot().cmdline().empty()) {
      argv.insert(argv.end(), {"--cmdline", spec.boot().cmdline()});
    }
  }
  for (int i = 0; i < spec.disks_size() && i < static_cast<int>(command.disk_options.size()); ++i) {
    std::string option = command.disk_options[static_cast<size_t>(i)];
    if (spec.disks(i).read_only()) option += ",readonly";
    argv.insert(argv.end(), {"--disk", option});
  }
  for (const VmmNicArg& nic : command.nics) {
    std::string option = fmt::format("fd={}", nic.child_fd);
    if (!nic.mac.empty()) option += ",mac=" + nic.mac;
    if (!nic.offload) option += ",offload=off";
    argv.insert(argv.end(), {"--net", option});
  }
  if (!command.incoming.empty()) {
    argv.insert(argv.end(), {"--incoming", command.incoming});
    argv.insert(argv.end(), {"--migration-token", command.migration_token});
  }
  return argv;
}

}  // namespace flotilla::agent
