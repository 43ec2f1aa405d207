// `clusterctl create vm`: flags and VM files to a CreateVm request (see vm_request.h).
#include "cli/vm_request.h"

#include <yaml-cpp/yaml.h>

#include <cctype>

#include "cli/exit_codes.h"
#include "common/config.h"
#include "common/files.h"
#include "common/status.h"
#include "common/text.h"
#include "common/units.h"
#include "fmt/format.h"

namespace flotilla::cli {
namespace {

bool validMac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2) {
      if (mac[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

// Reads the mapping of strings under `key` of `yaml` (the same mapping `node` reads) into
// `out`; problems are reported through `node` so that they carry the file, line and key.
void readStringMap(ConfigNode& node, const YAML::Node& yaml, const std::string& key,
                   google::protobuf::Map<std::string, std::string>& out) {
  if (!node.has(key)) return;
  try {
    const YAML::Node map = yaml[key];
    if (map.IsNull()) return;
    if (!map.IsMap()) {
      node.fail(key, "expected a mapping of labels (key: value lines)");
      return;
    }
    for (const auto& entry : map) {
      if (!entry.first.IsScalar() || !entry.second.IsScalar()) {
        node.fail(key, "every label must be a string key with a string value");
        return;
      }
      const std::string label = entry.first.Scalar();
      if (label.empty()) {
        node.fail(key, "a label key is empty");
        return;
      }
      out[label] = entry.second.Scalar();
    }
  } catch (const std::exception& error) {
    node.fail(key, fmt::format("cannot read it: {}", error.what()));
  }
}

// A YAML node under `root` at the path `keys` (missing: a null node). yaml-cpp throws; this
// catches.
YAML::Node lookup(const YAML::Node& root, std::initializer_list<std::string> keys) {
  try {
    YAML::Node node = root;
    for (const std::string& key : keys) {
      if (!node.IsMap()) return YAML::Node();
      // reset(), not operator=: assigning a YAML::Node writes through to the node it refers
      // to, which would overwrite `root`.
      node.reset(node[key]);
    }
    return node;
  } catch (const std::exception&) {
    return YAML::Node();
  }
}

}  // namespace

absl::StatusOr<v1::DiskSpec> parseDiskFlag(std::string_view text) {
  std::vector<std::string_view> parts = splitText(text, ',');
  const std::string_view volume = parts[0];
  const size_t slash = volume.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == volume.size() ||
      volume.find('/', slash + 1) != std::string_view::npos) {
    return usageError(fmt::format(
        "--disk {}: expected POOL/VOLUME[,ro] (a volume of a storage pool, e.g. shared/web1)",
        text));
  }
  v1::DiskSpec disk;
  disk.set_pool(std::string(volume.substr(0, slash)));
  disk.set_volume(std::string(volume.substr(slash + 1)));
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i] == "ro" || parts[i] == "readonly") {
      disk.set_read_only(true);
    } else {
      return usageError(
          fmt::format("--disk {}: unknown setting '{}'; the only one is ro", text, parts[i]));
    }
  }
  return disk;
}

absl::StatusOr<v1::NicSpec> parseNicFlag(std::string_view text) {
  std::vector<std::string_view> parts = splitText(text, ',');
  if (parts[0].empty() || contains(parts[0], "=")) {
    return usageError(fmt::format(
        "--nic {}: expected NETWORK[,mac=MAC][,offload] (the network's name first)", text));
  }
  v1::NicSpec nic;
  nic.set_network(std::string(parts[0]));
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string_view part = parts[i];
    if (part.starts_with("mac=")) {
      const std::string_view mac = part.substr(4);
      if (!validMac(mac)) {
        return usageError(fmt::format(
            "--nic {}: '{}' is not a MAC address; expected six hex pairs like 52:54:00:12:34:56",
            text, mac));
      }
      nic.set_mac(std::string(mac));
    } else if (part == "offload" || part == "offload=on") {
      nic.set_offload(true);
    } else if (part == "offload=off") {
      nic.set_offload(false);
    } else {
      return usageError(fmt::format(
          "--nic {}: unknown setting '{}'; expected mac=MAC or offload[=on|off]", text, part));
    }
  }
  return nic;
}

absl::StatusOr<std::pair<std::string, std::string>> parseLabel(std::string_view text,
                                                               std::string_view flag) {
  const size_t equals = text.find('=');
  if (equals == std::string_view::npos || equals == 0) {
    return usageError(fmt::format("{} {}: expected KEY=VALUE (e.g. zone=a)", flag, text));
  }
  return std::make_pair(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
}

absl::StatusOr<v1::MigrationPolicy> parseMigrationPolicy(std::string_view text) {
  if (text == "live" || text == "MIGRATION_POLICY_LIVE") return v1::MIGRATION_POLICY_LIVE;
  if (text == "live-or-cold" || text == "MIGRATION_POLICY_LIVE_OR_COLD") {
    return v1::MIGRATION_POLICY_LIVE_OR_COLD;
  }
  if (text == "cold" || text == "MIGRATION_POLICY_COLD") return v1::MIGRATION_POLICY_COLD;
  return usageError(
      fmt::format("migration policy '{}': expected live, live-or-cold or cold", text));
}

absl::StatusOr<v1::CreateVmClusterRequest> loadVmFile(const std::string& path) {
  auto text = readFileToString(path, size_t{1} << 20, "VM file");
  if (!text.ok()) return withExitCode(text.status(), kExitUsage);
  auto document = ConfigDocument::parse(*text, path);
  if (!document.ok()) return withExitCode(document.status(), kExitUsage);
  // ConfigDocument has no reader for mappings of labels: those come from the raw tree, which
  // parses (ConfigDocument::parse accepted the same text).
  YAML::Node yaml;
  try {
    yaml = YAML::Load(*text);
  } catch (const std::exception& error) {
    return usageError(fmt::format("{}: {}", path, error.what()));
  }

  v1::CreateVmClusterRequest request;
  request.set_start(true);
  v1::VmSpec& spec = *request.mutable_spec();
  ConfigNode root = document->root();
  std::string name, cpu_model, policy;
  uint32_t vcpus = 0;
  uint64_t memory = 0;
  bool ha = false, start = true;
  root.optional("name", name);
  root.optional("vcpus", vcpus);
  root.optional("memory_bytes", memory, ConfigNode::kByteSize);
  root.optional("cpu_model", cpu_model);
  root.optional("ha", ha);
  root.optional("migration_policy", policy);
  root.optional("start", start);
  request.set_name(name);
  spec.set_vcpus(vcpus);
  spec.set_memory_bytes(memory);
  spec.set_cpu_model(cpu_model);
  spec.set_ha(ha);
  request.set_start(start);
  if (!policy.empty()) {
    auto parsed = parseMigrationPolicy(policy);
    if (parsed.ok()) {
      spec.set_migration_policy(*parsed);
    } else {
      root.fail("migration_policy", "expected live, live-or-cold or cold");
    }
  }

  ConfigNode boot = root.child("boot");
  std::string kernel, initrd, cmdline;
  boot.optional("kernel", kernel);
  boot.optional("initrd", initrd);
  boot.optional("cmdline", cmdline);
  spec.mutable_boot()->set_kernel(kernel);
  spec.mutable_boot()->set_initrd(initrd);
  spec.mutable_boot()->set_cmdline(cmdline);

  for (ConfigNode disk_node : root.children("disks")) {
    v1::DiskSpec* disk = spec.add_disks();
    std::string pool, volume;
    bool read_only = false;
    disk_node.required("pool", pool);
    disk_node.required("volume", volume);
    disk_node.optional("read_only", read_only);
    disk->set_pool(pool);
    disk->set_volume(volume);
    disk->set_read_only(read_only);
  }
  for (ConfigNode nic_node : root.children("nics")) {
    v1::NicSpec* nic = spec.add_nics();
    std::string network, mac;
    bool offload = false;
    nic_node.required("network", network);
    nic_node.optional("mac", mac);
    nic_node.optional("offload", offload);
    if (!mac.empty() && !validMac(mac)) {
      nic_node.fail("mac", "not a MAC address; expected six hex pairs like 52:54:00:12:34:56");
    }
    nic->set_network(network);
    nic->set_mac(mac);
    nic->set_offload(offload);
  }

  ConfigNode placement_node = root.child("placement");
  v1::VmPlacement& placement = *request.mutable_placement();
  std::string affinity, anti_affinity, host;
  placement_node.optional("affinity_group", affinity);
  placement_node.optional("anti_affinity_group", anti_affinity);
  placement_node.optional("host", host);
  placement.set_affinity_group(affinity);
  placement.set_anti_affinity_group(anti_affinity);
  placement.set_host(host);
  readStringMap(placement_node, lookup(yaml, {"placement"}), "host_labels",
                *placement.mutable_host_labels());
  readStringMap(root, yaml, "labels", *request.mutable_labels());

  if (absl::Status finished = document->finish(); !finished.ok()) {
    return withExitCode(finished, kExitUsage);
  }
  return request;
}

absl::StatusOr<v1::CreateVmClusterRequest> buildCreateVmRequest(const VmFlags& flags) {
  v1::CreateVmClusterRequest request;
  request.set_start(true);
  if (flags.file) {
    ASSIGN_OR_RETURN(request, loadVmFile(*flags.file));
  }
  v1::VmSpec& spec = *request.mutable_spec();
  v1::VmPlacement& placement = *request.mutable_placement();
  if (flags.name) {
    if (!request.name().empty() && request.name() != *flags.name) {
      return usageError(fmt::format(
          "create vm {}: the file {} names the VM '{}'; give one name (or none on the command "
          "line)",
          *flags.name, *flags.file, request.name()));
    }
    request.set_name(*flags.name);
  }
  if (flags.vcpus) spec.set_vcpus(*flags.vcpus);
  if (flags.memory) {
    auto bytes = parseByteSize(*flags.memory);
    if (!bytes.ok()) return usageError(fmt::format("--memory: {}", bytes.status().message()));
    spec.set_memory_bytes(*bytes);
  }
  if (flags.cpu_model) spec.set_cpu_model(*flags.cpu_model);
  if (flags.kernel) spec.mutable_boot()->set_kernel(*flags.kernel);
  if (flags.initrd) spec.mutable_boot()->set_initrd(*flags.initrd);
  if (flags.cmdline) spec.mutable_boot()->set_cmdline(*flags.cmdline);
  if (!flags.disks.empty()) spec.clear_disks();
  for (const std::string& text : flags.disks) {
    ASSIGN_OR_RETURN(*spec.add_disks(), parseDiskFlag(text));
  }
  if (!flags.nics.empty()) spec.clear_nics();
  for (const std::string& text : flags.nics) {
    ASSIGN_OR_RETURN(*spec.add_nics(), parseNicFlag(text));
  }
  if (flags.ha) spec.set_ha(true);
  if (flags.policy) {
    auto policy = parseMigrationPolicy(*flags.policy);
    if (!policy.ok()) return usageError(fmt::format("--policy: {}", policy.status().message()));
    spec.set_migration_policy(*policy);
  }
  for (const std::string& text : flags.labels) {
    ASSIGN_OR_RETURN(auto label, parseLabel(text, "--label"));
    (*request.mutable_labels())[label.first] = label.second;
  }
  for (const std::string& text : flags.host_labels) {
    ASSIGN_OR_RETURN(auto label, parseLabel(text, "--host-label"));
    (*placement.mutable_host_labels())[label.first] = label.second;
  }
  if (flags.affinity) placement.set_affinity_group(*flags.affinity);
  if (flags.anti_affinity) placement.set_anti_affinity_group(*flags.anti_affinity);
  if (flags.pin) placement.set_host(*flags.pin);
  if (flags.no_start) request.set_start(false);

  if (spec.vcpus() == 0) {
    if (flags.vcpus) return usageError("--vcpus 0: a VM needs at least one vCPU");
    spec.set_vcpus(kDefaultVcpus);
  }
  if (spec.memory_bytes() == 0) {
    if (flags.memory)
      return usageError(fmt::format("--memory {}: a VM needs memory", *flags.memory));
    spec.set_memory_bytes(kDefaultMemoryBytes);
  }
  if (request.name().empty()) {
    return usageError(
        "create vm: no name: give it as the argument (clusterctl create vm NAME ...) or as "
        "name: in the file");
  }
  if (spec.boot().kernel().empty()) {
    return usageError(fmt::format(
        "create vm {}: no kernel: give --kernel PATH (a path on the hosts) or boot.kernel in "
        "the file",
        request.name()));
  }
  return request;
}

}  // namespace flotilla::cli
