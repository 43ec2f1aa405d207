// DrbdPool and LoopFileBacking (see drbd_pool.h).
#include "storage/drbd_pool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <utility>

#include "common/files.h"
#include "common/status.h"
#include "common/text.h"
#include "fmt/format.h"

namespace flotilla::storage {
namespace {

constexpr std::string_view kResourceSuffix = ".res";
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kSuperblockBytes = 4096;
constexpr uint64_t kActivityLogBytes = 32768;  // al-extents 257 in 32 KiB (drbdmeta's default)

uint64_t roundUp(uint64_t value, uint64_t unit) {
  return (value + unit - 1) / unit * unit;
}

// DRBD's internal metadata on a backing device of `backing_bytes`, one peer slot (create-md
// ... 1): at the end of the device, the superblock (4 KiB), before it the activity log
// (32 KiB), before that the bitmap, one bit per 4 KiB of the whole device, in whole 4 KiB.
// Checked against drbdmeta 9.22's dump-md (bm_offset) in tests/integration/storage.
uint64_t metadataBytes(uint64_t backing_bytes) {
  const uint64_t bits = (backing_bytes + kBlock - 1) / kBlock;
  return kSuperblockBytes + kActivityLogBytes + roundUp((bits + 7) / 8, kBlock);
}

// The integer after `prefix` in `line` up to `end` ("device minor 100;").
bool parseNumberAfter(std::string_view line, std::string_view prefix, uint32_t& out) {
  if (!line.starts_with(prefix)) return false;
  line.remove_prefix(prefix.size());
  auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), out);
  return error == std::errc() && end != line.data();
}

}  // namespace

uint64_t drbdUsableBytes(uint64_t backing_bytes) {
  const uint64_t metadata = metadataBytes(backing_bytes);
  if (backing_bytes <= metadata) return 0;
  return (backing_bytes - metadata) / kBlock * kBlock;
}

uint64_t drbdBackingBytes(uint64_t usable_bytes) {
  uint64_t backing = roundUp(usable_bytes, kBlock) + roundUp(metadataBytes(usable_bytes), kBlock);
  while (drbdUsableBytes(backing) < usable_bytes) backing += kBlock;
  return backing;
}

// ---- LoopFileBacking ----

absl::StatusOr<std::unique_ptr<LoopFileBacking>> LoopFileBacking::open(CommandRunner& runner,
                                                                       Options options) {
  LocalDirPoolOptions files;
  files.name = options.pool;
  files.directory = options.directory;
  files.create_directory = true;
  ASSIGN_OR_RETURN(std::unique_ptr<LocalDirPool> dir, LocalDirPool::open(files));
  return std::unique_ptr<LoopFileBacking>(
      new LoopFileBacking(runner, std::move(options), std::move(dir)));
}

absl::StatusOr<std::string> LoopFileBacking::losetup(std::vector<std::string> args) {
  args.insert(args.begin(), options_.losetup);
  CommandOptions command;
  command.timeout = options_.timeout;
  return runChecked(runner_, args, command);
}

absl::StatusOr<std::vector<std::string>> LoopFileBacking::loopDevices(std::string_view volume) {
  // "/dev/loop3: [2049]:1234 (/var/lib/flotilla/drbd/web1.img)", one line per device.
  ASSIGN_OR_RETURN(std::string out, losetup({"-j", filePath(volume)}));
  std::vector<std::string> devices;
  for (std::string_view line : splitText(out, '\n')) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !line.starts_with("/dev/")) continue;
    devices.emplace_back(line.substr(0, colon));
  }
  return devices;
}

absl::StatusOr<std::string> LoopFileBacking::create(std::string_view volume, uint64_t size_bytes) {
  RETURN_IF_ERROR(files_->create(volume, size_bytes).status());
  absl::StatusOr<std::string> device = attach(volume);
  if (!device.ok()) (void)files_->remove(volume);
  return device;
}

absl::StatusOr<std::string> LoopFileBacking::attach(std::string_view volume) {
  RETURN_IF_ERROR(files_->get(volume).status());
  ASSIGN_OR_RETURN(std::vector<std::string> devices, loopDevices(volume));
  if (!devices.empty()) return devices.front();
  ASSIGN_OR_RETURN(std::string out, losetup({"-f", "--show", filePath(volume)}));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!out.starts_with("/dev/")) {
    return absl::InternalError(
        fmt::format("pool {}: `losetup -f --show {}` printed '{}' instead of a loop device",
                    options_.pool, filePath(volume), out));
  }
  return out;
}

absl::Status LoopFileBacking::remove(std::string_view volume) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  if (absl::IsNotFound(files_->get(volume).status())) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<std::string> devices, loopDevices(volume));
  for (const std::string& device : devices) {
    RETURN_IF_ERROR(annotate(
        losetup({"-d", device}).status(),
        fmt::format("pool {}: detaching {} from volume {}", options_.pool, device, volume)));
  }
  return files_->remove(volume);
}

absl::StatusOr<VolumeInfo> LoopFileBacking::info(std::string_view volume) {
  return files_->get(volume);
}

absl::StatusOr<std::vector<std::string>> LoopFileBacking::volumes() {
  ASSIGN_OR_RETURN(std::vector<VolumeInfo> infos, files_->list());
  std::vector<std::string> names;
  for (const VolumeInfo& info : infos) names.push_back(info.name);
  return names;
}

// ---- DrbdPool ----

DrbdPool::DrbdPool(CommandRunner& runner, DrbdPoolOptions options,
                   std::unique_ptr<DrbdBacking> backing)
    : runner_(runner),
      options_(std::move(options)),
      log_(Logger("storage").with("pool", options_.name)),
      backing_(std::move(backing)) {}

absl::StatusOr<std::unique_ptr<DrbdPool>> DrbdPool::open(CommandRunner& runner,
                                                         DrbdPoolOptions options,
                                                         std::unique_ptr<DrbdBacking> backing) {
  RETURN_IF_ERROR(validatePoolName(options.name));
  if (backing == nullptr) {
    return absl::InvalidArgumentError(fmt::format("pool {}: no backing store", options.name));
  }
  // The placement of a volume is the controller's; the hosts and addresses are checked the
  // way every resource will use them.
  DrbdResourceSpec probe;
  probe.name = options.name;
  probe.port = 7789;
  probe.nodes[0] =
      DrbdNode{options.local.host, options.local.address, options.local.node_id, 0, "/dev/probe"};
  probe.nodes[1] =
      DrbdNode{options.peer.host, options.peer.address, options.peer.node_id, 0, "/dev/probe"};
  if (absl::Status valid = validateDrbdResource(probe); !valid.ok()) {
    return absl::InvalidArgumentError(fmt::format("pool {}: the two DRBD nodes are not valid: {}",
                                                  options.name, valid.message()));
  }
  if (options.resource_dir.empty() || options.resource_dir.front() != '/') {
    return absl::InvalidArgumentError(
        fmt::format("pool {}: the resource directory '{}' must be an absolute path", options.name,
                    options.resource_dir));
  }
  std::error_code error;
  std::filesystem::create_directories(options.resource_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        fmt::format("pool {}: cannot create the resource directory {}: {}", options.name,
                    options.resource_dir, error.message()));
  }
  return std::unique_ptr<DrbdPool>(new DrbdPool(runner, std::move(options), std::move(backing)));
}

absl::StatusOr<std::string> DrbdPool::resourceName(std::string_view volume) const {
  RETURN_IF_ERROR(validateVolumeName(volume));
  std::string resource = fmt::format("{}-{}", options_.name, volume);
  if (resource.size() > 63) {
    return absl::InvalidArgumentError(fmt::format(
        "pool {}: volume name '{}' is too long for a DRBD pool: the resource name {} must fit in "
        "63 characters; choose a name of at most {} characters",
        options_.name, volume, resource, 63 - options_.name.size() - 1));
  }
  return resource;
}

std::string DrbdPool::resourceFile(std::string_view resource) const {
  return fmt::format("{}/{}{}", options_.resource_dir, resource, kResourceSuffix);
}

DrbdResourceSpec DrbdPool::spec(std::string_view resource, DrbdVolumePlacement placement,
                                std::string_view disk) const {
  DrbdResourceSpec spec;
  spec.name = std::string(resource);
  spec.port = static_cast<uint16_t>(placement.port);
  const int minor = static_cast<int>(placement.minor);
  // Each host's file names its own backing device for both nodes: the peer's device is known
  // only there, and drbdadm reads only its own node's `disk` (see docs/storage.md).
  DrbdNode local{options_.local.host, options_.local.address, options_.local.node_id, minor,
                 std::string(disk)};
  DrbdNode peer{options_.peer.host, options_.peer.address, options_.peer.node_id, minor,
                std::string(disk)};
  // Lower node-id first: both hosts write the same sections in the same order.
  if (local.node_id < peer.node_id) {
    spec.nodes = {local, peer};
  } else {
    spec.nodes = {peer, local};
  }
  return spec;
}

Drbd DrbdPool::drbd(std::string_view resource) const {
  DrbdOptions options;
  options.drbdadm = options_.drbdadm;
  options.config_file = resourceFile(resource);
  options.node_name = options_.local.host;
  options.dry_run = options_.dry_run;
  options.timeout = options_.timeout;
  return Drbd(runner_, options);
}

absl::StatusOr<DrbdPool::Existing> DrbdPool::readExisting(std::string_view volume) const {
  ASSIGN_OR_RETURN(std::string resource, resourceName(volume));
  const std::string path = resourceFile(resource);
  absl::StatusOr<std::string> text = readFileToString(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(fmt::format("pool {} has no volume {} (no resource file {})",
                                             options_.name, volume, path));
    }
    return text.status();
  }
  // The file is renderDrbdResource's: read this host's section back.
  Existing existing;
  existing.resource = resource;
  bool in_local = false, have_minor = false, have_port = false;
  const std::string local_header = fmt::format("on {} {{", options_.local.host);
  for (std::string_view line : splitText(*text, '\n')) {
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.starts_with("on ")) {
      in_local = line == local_header;
      continue;
    }
    if (!in_local) continue;
    if (parseNumberAfter(line, "device minor ", existing.placement.minor)) have_minor = true;
    if (line.starts_with("disk ") && line.ends_with(";")) {
      existing.disk = std::string(line.substr(5, line.size() - 6));
    }
    if (line.starts_with("address ") && line.ends_with(";")) {
      const size_t colon = line.rfind(':');
      std::string_view port = line.substr(colon + 1, line.size() - colon - 2);
      have_port =
          colon != std::string_view::npos && parseNumberAfter(port, "", existing.placement.port);
    }
  }
  if (!have_minor || !have_port || existing.disk.empty()) {
    return absl::DataLossError(fmt::format(
        "pool {}: resource file {} has no section for host {} with its minor, disk and address; "
        "it was not written by this pool: move it away",
        options_.name, path, options_.local.host));
  }
  return existing;
}

absl::StatusOr<std::vector<std::string>> DrbdPool::resourceVolumes() const {
  std::vector<std::string> volumes;
  std::error_code error;
  const std::string prefix = options_.name + "-";
  for (const auto& entry : std::filesystem::directory_iterator(options_.resource_dir, error)) {
    const std::string file = entry.path().filename().string();
    if (!file.starts_with(prefix) || !file.ends_with(kResourceSuffix)) continue;
    std::string volume =
        file.substr(prefix.size(), file.size() - prefix.size() - kResourceSuffix.size());
    if (validateVolumeName(volume).ok()) volumes.push_back(std::move(volume));
  }
  if (error) {
    return absl::InternalError(fmt::format("pool {}: reading the resource directory {}: {}",
                                           options_.name, options_.resource_dir, error.message()));
  }
  std::sort(volumes.begin(), volumes.end());
  return volumes;
}

absl::StatusOr<VolumeInfo> DrbdPool::describe(std::string_view volume, const Existing&) {
  ASSIGN_OR_RETURN(VolumeInfo backing, backing_->info(volume));
  VolumeInfo info;
  info.name = std::string(volume);
  info.size_bytes = drbdUsableBytes(backing.size_bytes);
  info.allocated_bytes = backing.allocated_bytes;
  return info;
}

absl::StatusOr<VolumeInfo> DrbdPool::create(std::string_view volume, uint64_t size_bytes) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  RETURN_IF_ERROR(validateVolumeSize(volume, size_bytes));
  return absl::FailedPreconditionError(fmt::format(
      "pool {}: volume {} needs a DRBD placement (device minor and port): DRBD volumes are "
      "created through the controller (`clusterctl create volume`), which allocates one and "
      "creates the volume on both hosts of the pool",
      options_.name, volume));
}

absl::StatusOr<VolumeInfo> DrbdPool::create(std::string_view volume, uint64_t size_bytes,
                                            DrbdVolumePlacement placement) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  RETURN_IF_ERROR(validateVolumeSize(volume, size_bytes));
  ASSIGN_OR_RETURN(std::string resource, resourceName(volume));
  if (placement.port == 0 || placement.port > 65535) {
    return absl::InvalidArgumentError(fmt::format(
        "pool {}: volume {}: DRBD port {} is not valid (1 to 65535); the controller allocates "
        "the placement (VolumeRequest.drbd)",
        options_.name, volume, placement.port));
  }
  absl::MutexLock lock(&mu_);
  const std::string path = resourceFile(resource);
  if (::access(path.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        fmt::format("pool {}: volume {} already exists (resource file {}); remove it first",
                    options_.name, volume, path));
  }
  // The new resource against this host's others: the same minor or port would fail at `up`.
  std::vector<DrbdResourceSpec> specs;
  ASSIGN_OR_RETURN(std::vector<std::string> others, resourceVolumes());
  for (const std::string& other : others) {
    absl::StatusOr<Existing> existing = readExisting(other);
    if (!existing.ok()) continue;  // not ours; it cannot clash with what we write
    specs.push_back(spec(existing->resource, existing->placement, existing->disk));
  }
  specs.push_back(spec(resource, placement, "/dev/flotilla-new-volume"));
  RETURN_IF_ERROR(annotate(validateDrbdResources(specs),
                           fmt::format("pool {}: volume {}", options_.name, volume)));

  ASSIGN_OR_RETURN(std::string device, backing_->create(volume, drbdBackingBytes(size_bytes)));
  auto undo = [&](absl::Status status, bool file_written) {
    if (file_written) {
      (void)drbd(resource).down(resource);
      (void)::unlink(path.c_str());
    }
    absl::Status removed = backing_->remove(volume);
    if (!removed.ok()) log_.warn("cannot remove the backing of volume {}: {}", volume, removed);
    return annotate(status, fmt::format("pool {}: creating volume {}", options_.name, volume));
  };
  absl::StatusOr<std::string> written =
      writeDrbdResourceFile(spec(resource, placement, device), options_.resource_dir);
  if (!written.ok()) return undo(written.status(), false);
  Drbd drbdadm = drbd(resource);
  absl::Status step = drbdadm.createMetadata(resource).status();
  if (step.ok()) step = drbdadm.up(resource).status();
  // The first UpToDate copy: the lower node-id's fresh disk, forced once, at creation. The
  // peer syncs from it when it connects; no later promotion is ever forced.
  const bool first_copy = options_.local.node_id < options_.peer.node_id;
  if (step.ok() && first_copy) step = drbdadm.primary(resource, /*force=*/true).status();
  if (step.ok() && first_copy) step = drbdadm.secondary(resource).status();
  if (!step.ok()) return undo(step, true);
  log_.info("created volume {} (resource {}, minor {}, port {}, backing {}{})", volume, resource,
            placement.minor, placement.port, device,
            first_copy ? ", the first UpToDate copy" : ", syncs from the peer");
  return describe(volume, Existing{resource, placement, device});
}

absl::Status DrbdPool::resize(std::string_view volume, uint64_t new_size) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  return absl::UnimplementedError(fmt::format(
      "pool {}: resizing volume {} to {} bytes is not supported for DRBD volumes (it needs both "
      "backings grown and `drbdadm resize` while both nodes are connected); create a larger "
      "volume and copy the data",
      options_.name, volume, new_size));
}

absl::StatusOr<VolumeInfo> DrbdPool::clone(std::string_view source, std::string_view target) {
  return absl::UnimplementedError(fmt::format(
      "pool {}: cloning volume {} to {} is not supported for DRBD volumes (a copy is a new "
      "resource on both hosts); create volume {} and copy the data from within a VM",
      options_.name, source, target, target));
}

absl::Status DrbdPool::remove(std::string_view volume) {
  ASSIGN_OR_RETURN(std::string resource, resourceName(volume));
  absl::MutexLock lock(&mu_);
  const std::string path = resourceFile(resource);
  if (::access(path.c_str(), F_OK) == 0) {
    RETURN_IF_ERROR(annotate(
        drbd(resource).down(resource).status(),
        fmt::format("pool {}: removing volume {}: taking resource {} down (is a VM still using "
                    "it? delete the VM first)",
                    options_.name, volume, resource)));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errnoStatus(errno, fmt::format("pool {}: removing {}", options_.name, path));
    }
  }
  RETURN_IF_ERROR(backing_->remove(volume));
  log_.info("removed volume {}", volume);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<VolumeInfo>> DrbdPool::list() {
  ASSIGN_OR_RETURN(std::vector<std::string> volumes, resourceVolumes());
  std::vector<VolumeInfo> infos;
  for (const std::string& volume : volumes) {
    absl::StatusOr<Existing> existing = readExisting(volume);
    if (!existing.ok()) continue;
    absl::StatusOr<VolumeInfo> info = describe(volume, *existing);
    if (absl::IsNotFound(info.status())) continue;  // removed meanwhile
    if (!info.ok()) return info.status();
    infos.push_back(*std::move(info));
  }
  return infos;
}

absl::StatusOr<VolumeInfo> DrbdPool::get(std::string_view volume) {
  ASSIGN_OR_RETURN(Existing existing, readExisting(volume));
  return describe(volume, existing);
}

absl::StatusOr<std::string> DrbdPool::diskOption(std::string_view volume) {
  ASSIGN_OR_RETURN(Existing existing, readExisting(volume));
  return fmt::format("path=/dev/drbd{}", existing.placement.minor);
}

absl::Status DrbdPool::promote(std::string_view volume) {
  ASSIGN_OR_RETURN(Existing existing, readExisting(volume));
  return annotate(drbd(existing.resource).primary(existing.resource).status(),
                  fmt::format("pool {}: making volume {} primary on {}", options_.name, volume,
                              options_.local.host));
}

absl::Status DrbdPool::demote(std::string_view volume) {
  ASSIGN_OR_RETURN(Existing existing, readExisting(volume));
  return annotate(drbd(existing.resource).secondary(existing.resource).status(),
                  fmt::format("pool {}: making volume {} secondary on {}", options_.name, volume,
                              options_.local.host));
}

absl::Status DrbdPool::allowTwoPrimaries(std::string_view volume, bool allow) {
  ASSIGN_OR_RETURN(Existing existing, readExisting(volume));
  return annotate(drbd(existing.resource).allowTwoPrimaries(existing.resource, allow).status(),
                  fmt::format("pool {}: {} two primaries for volume {} on {}", options_.name,
                              allow ? "allowing" : "disallowing", volume, options_.local.host));
}

absl::StatusOr<DrbdReconcileReport> DrbdPool::reconcile() {
  absl::MutexLock lock(&mu_);
  DrbdReconcileReport report;
  ASSIGN_OR_RETURN(std::vector<std::string> volumes, resourceVolumes());
  for (const std::string& volume : volumes) {
    absl::StatusOr<Existing> existing = readExisting(volume);
    if (!existing.ok()) {
      report.failed.emplace_back(existing.status().message());
      continue;
    }
    absl::StatusOr<std::string> device = backing_->attach(volume);
    if (!device.ok()) {
      report.failed.push_back(
          fmt::format("volume {}: its backing: {}", volume, device.status().message()));
      continue;
    }
    if (*device != existing->disk) {
      absl::StatusOr<std::string> written = writeDrbdResourceFile(
          spec(existing->resource, existing->placement, *device), options_.resource_dir);
      if (!written.ok()) {
        report.failed.push_back(fmt::format("volume {}: rewriting its resource file: {}", volume,
                                            written.status().message()));
        continue;
      }
      report.rewritten.push_back(volume);
    }
    absl::Status adjusted = drbd(existing->resource).adjust(existing->resource).status();
    if (!adjusted.ok()) {
      report.failed.push_back(fmt::format("volume {}: {}", volume, adjusted.message()));
      continue;
    }
    report.adjusted.push_back(volume);
  }
  return report;
}

}  // namespace flotilla::storage
