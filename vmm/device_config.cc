// Device options (see device_config.h).
#include "vmm/device_config.h"

#include <charconv>

#include "absl/strings/str_split.h"
#include "fmt/format.h"
#include "network/mac_address.h"
#include "storage/iscsi_fencing.h"

namespace flotilla::vmm {
namespace {

struct Pair {
  std::string key;
  std::string value;
  bool bare;  // "readonly" without "="
};

std::vector<Pair> splitOption(std::string_view text) {
  std::vector<Pair> pairs;
  for (absl::string_view piece : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    const size_t eq = piece.find('=');
    if (eq == absl::string_view::npos) {
      pairs.push_back({std::string(piece), "", true});
    } else {
      pairs.push_back({std::string(piece.substr(0, eq)), std::string(piece.substr(eq + 1)), false});
    }
  }
  return pairs;
}

absl::StatusOr<bool> parseSwitch(std::string_view option, const Pair& pair) {
  if (pair.bare || pair.value == "on" || pair.value == "true" || pair.value == "yes") return true;
  if (pair.value == "off" || pair.value == "false" || pair.value == "no") return false;
  return absl::InvalidArgumentError(
      fmt::format("--{} {}={}: expected on or off", option, pair.key, pair.value));
}

}  // namespace

std::string DiskConfig::toOption() const {
  std::string text = path.empty() ? fmt::format("iscsi={}", iscsi) : fmt::format("path={}", path);
  if (read_only) text += ",readonly";
  if (!serial.empty()) text += fmt::format(",serial={}", serial);
  if (generation) text += fmt::format(",generation={}", *generation);
  return text;
}

std::string NicConfig::toOption() const {
  std::string text = tap.empty() ? fmt::format("fd={}", fd) : fmt::format("tap={}", tap);
  if (!mac.empty()) text += fmt::format(",mac={}", mac);
  if (!offload) text += ",offload=off";
  return text;
}

absl::StatusOr<DiskConfig> parseDiskOption(std::string_view text) {
  DiskConfig disk;
  auto bad = [&](std::string why) {
    return absl::InvalidArgumentError(fmt::format(
        "--disk {}: {}; expected path=FILE or iscsi=iscsi://HOST[:PORT]/IQN/LUN, then optionally "
        ",readonly, ,serial=S and (iSCSI) ,generation=N",
        text, why));
  };
  for (const Pair& pair : splitOption(text)) {
    if (pair.key == "path" && !pair.bare) {
      disk.path = pair.value;
    } else if (pair.key == "iscsi" && !pair.bare) {
      disk.iscsi = pair.value;
    } else if (pair.key == "readonly" || pair.key == "ro") {
      auto on = parseSwitch("disk", pair);
      if (!on.ok()) return on.status();
      disk.read_only = *on;
    } else if (pair.key == "serial" && !pair.bare) {
      if (pair.value.size() > 20) return bad("a serial has at most 20 characters");
      disk.serial = pair.value;
    } else if (pair.key == "generation" && !pair.bare) {
      uint64_t generation = 0;
      auto [end, error] =
          std::from_chars(pair.value.data(), pair.value.data() + pair.value.size(), generation);
      if (error != std::errc() || end != pair.value.data() + pair.value.size() ||
          pair.value.empty()) {
        return bad(fmt::format("generation={} is not a number", pair.value));
      }
      if (generation > storage::kMaxFencingGeneration) {
        return bad(fmt::format("generation={} is too large (at most {})", pair.value,
                               storage::kMaxFencingGeneration));
      }
      disk.generation = generation;
    } else {
      return bad(fmt::format("unknown setting '{}'", pair.key));
    }
  }
  if (disk.path.empty() == disk.iscsi.empty()) return bad("give exactly one of path= and iscsi=");
  if (!disk.iscsi.empty() && disk.iscsi.rfind("iscsi://", 0) != 0) {
    return bad("an iSCSI URL starts with iscsi://");
  }
  if (disk.generation && disk.iscsi.empty()) {
    return bad("generation= applies to iscsi= disks only (it is a SCSI persistent reservation)");
  }
  return disk;
}

absl::StatusOr<NicConfig> parseNetOption(std::string_view text) {
  NicConfig nic;
  auto bad = [&](std::string why) {
    return absl::InvalidArgumentError(fmt::format(
        "--net {}: {}; expected tap=NAME or fd=N, then optionally ,mac=52:54:00:12:34:56 and "
        ",offload=off",
        text, why));
  };
  bool has_fd = false;
  for (const Pair& pair : splitOption(text)) {
    if (pair.key == "tap" && !pair.bare) {
      nic.tap = pair.value;
    } else if (pair.key == "fd" && !pair.bare) {
      int fd = -1;
      auto [end, error] =
          std::from_chars(pair.value.data(), pair.value.data() + pair.value.size(), fd);
      if (error != std::errc() || end != pair.value.data() + pair.value.size() || fd < 0) {
        return bad(fmt::format("fd={} is not a file descriptor number", pair.value));
      }
      nic.fd = fd;
      has_fd = true;
    } else if (pair.key == "mac" && !pair.bare) {
      auto mac = network::MacAddress::parse(pair.value);
      if (!mac.ok()) return bad(std::string(mac.status().message()));
      if (!mac->isUnicast() || mac->isZero())
        return bad(fmt::format("{} is not a unicast MAC", pair.value));
      nic.mac = mac->toString();
    } else if (pair.key == "offload") {
      auto on = parseSwitch("net", pair);
      if (!on.ok()) return on.status();
      nic.offload = *on;
    } else {
      return bad(fmt::format("unknown setting '{}'", pair.key));
    }
  }
  if (nic.tap.empty() == !has_fd) return bad("give exactly one of tap= and fd=");
  return nic;
}

}  // namespace flotilla::vmm
