// IscsiPool and IscsiPoolClient (see iscsi_pool.h): volume files exported as tgt targets,
// managed with tgtadm; the parser of `tgtadm --op show --mode target`.
#include "storage/iscsi_pool.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>
#include <utility>

#include "common/status.h"
#include "common/text.h"
#include "fmt/format.h"

namespace flotilla::storage {
namespace {

constexpr size_t kMaxIqnBytes = 223;  // RFC 3720
constexpr size_t kMaxVolumeName = 63;
constexpr int kCreateAttempts = 5;  // new target: other tgtadm users may take the tid we chose
constexpr int kTgtadmNotConnected = 107;  // tgtadm's exit status when no tgtd answers (ENOTCONN)

std::string_view trimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// tgtadm's portal lines on one line: "Portal: [::]:3260,1; Portal: 0.0.0.0:3260,1".
std::string describePortals(std::string_view show_output) {
  std::string out(trimRight(show_output));
  for (size_t at = out.find('\n'); at != std::string::npos; at = out.find('\n', at)) {
    out.replace(at, 1, "; ");
  }
  return out;
}

template <typename T>
bool parseNumber(std::string_view text, T* out) {
  if (text.empty()) return false;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return error == std::errc() && end == text.data() + text.size();
}

// "key: value" → {key, value}; "key:" → {key, ""}; otherwise key is empty.
std::pair<std::string_view, std::string_view> keyValue(std::string_view body) {
  size_t colon = body.find(':');
  if (colon == std::string_view::npos) return {};
  std::string_view value = body.substr(colon + 1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return {body.substr(0, colon), value};
}

bool isIpAddress(std::string_view text) {
  std::string s(text);
  in6_addr addr{};
  return ::inet_pton(AF_INET, s.c_str(), &addr) == 1 ||
         ::inet_pton(AF_INET6, s.c_str(), &addr) == 1;
}

bool isInitiatorName(std::string_view entry) {
  return entry.starts_with("iqn.") || entry.starts_with("eui.") || entry.starts_with("naa.");
}

absl::Status validateAclEntry(std::string_view pool, std::string_view entry) {
  if (entry == "ALL" || isInitiatorName(entry) || isIpAddress(entry)) return absl::OkStatus();
  size_t slash = entry.find('/');
  int bits = 0;
  if (slash != std::string_view::npos && isIpAddress(entry.substr(0, slash)) &&
      parseNumber(entry.substr(slash + 1), &bits) && bits >= 0 && bits <= 128) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(fmt::format(
      "pool {}: allowed initiator '{}' is not ALL, an IP address, a network (10.0.0.0/24) or an "
      "initiator name (iqn....)",
      pool, entry));
}

// tgtadm's arguments that bind or unbind one ACL entry.
std::vector<std::string> aclArgs(std::string_view op, int tid, const std::string& entry) {
  return {"--lld",
          "iscsi",
          "--op",
          std::string(op),
          "--mode",
          "target",
          "--tid",
          std::to_string(tid),
          isInitiatorName(entry) ? "--initiator-name" : "-I",
          entry};
}

std::string describeSessions(const std::vector<TgtSession>& sessions) {
  std::vector<std::string> parts;
  for (const TgtSession& session : sessions) {
    parts.push_back(session.addresses.empty() ? session.initiator
                                              : fmt::format("{} ({})", session.initiator,
                                                            fmt::join(session.addresses, ", ")));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

const TgtTargetState* findTarget(const std::vector<TgtTargetState>& targets, std::string_view iqn) {
  for (const TgtTargetState& target : targets) {
    if (target.iqn == iqn) return &target;
  }
  return nullptr;
}

}  // namespace

// ---- parsing ----

const TgtLun* TgtTargetState::lun(uint64_t number) const {
  for (const TgtLun& l : luns) {
    if (l.lun == number) return &l;
  }
  return nullptr;
}

absl::StatusOr<std::vector<TgtTargetState>> parseTgtTargets(std::string_view show_output) {
  enum class Section { kNone, kSystem, kNexus, kLun, kAcl, kOther };
  std::vector<TgtTargetState> targets;
  Section section = Section::kNone;
  int line_number = 0;
  auto bad = [&](std::string_view line, std::string_view why) {
    return absl::InvalidArgumentError(fmt::format(
        "unexpected output of tgtadm --op show, line {} ('{}'): {}", line_number, line, why));
  };
  for (std::string_view raw : splitText(show_output, '\n')) {
    ++line_number;
    std::string_view line = trimRight(raw);
    if (line.empty()) continue;
    size_t indent = line.find_first_not_of(' ');
    std::string_view body = line.substr(indent);
    if (indent == 0) {
      // "Target 1: iqn.2026-01.org.example:pool1:web1"
      if (!body.starts_with("Target ")) return bad(line, "expected 'Target N: IQN'");
      body.remove_prefix(7);
      size_t colon = body.find(": ");
      TgtTargetState target;
      if (colon == std::string_view::npos || !parseNumber(body.substr(0, colon), &target.tid)) {
        return bad(line, "expected 'Target N: IQN'");
      }
      target.iqn = std::string(body.substr(colon + 2));
      targets.push_back(std::move(target));
      section = Section::kNone;
      continue;
    }
    if (targets.empty()) return bad(line, "indented line before the first target");
    TgtTargetState& target = targets.back();
    if (indent <= 4) {
      if (body == "I_T nexus information:") {
        section = Section::kNexus;
      } else if (body == "LUN information:") {
        section = Section::kLun;
      } else if (body == "ACL information:") {
        section = Section::kAcl;
      } else if (body == "System information:") {
        section = Section::kSystem;
      } else {
        section = Section::kOther;  // Account information, and whatever comes later
      }
      continue;
    }
    auto [key, value] = keyValue(body);
    switch (section) {
      case Section::kSystem:
        if (key == "State") target.state = std::string(value);
        break;
      case Section::kNexus:
        if (key == "I_T nexus") {
          target.sessions.emplace_back();
        } else if (key == "Initiator" && !target.sessions.empty()) {
          // "iqn.2008-11.org.linux-kvm alias: none"
          target.sessions.back().initiator = std::string(value.substr(0, value.find(" alias:")));
        } else if (key == "IP Address" && !target.sessions.empty()) {
          target.sessions.back().addresses.emplace_back(value);
        }
        break;
      case Section::kLun:
        if (key == "LUN") {
          TgtLun lun;
          if (!parseNumber(value, &lun.lun)) return bad(line, "expected 'LUN: N'");
          target.luns.push_back(lun);
        } else if (target.luns.empty()) {
          return bad(line, "LUN detail before 'LUN: N'");
        } else if (key == "Type") {
          target.luns.back().type = std::string(value);
        } else if (key == "Size") {
          // "67 MB, Block size: 512"
          std::string_view mb = value.substr(0, value.find(' '));
          if (!parseNumber(mb, &target.luns.back().size_mb)) {
            return bad(line, "expected 'Size: N MB, Block size: B'");
          }
        } else if (key == "Online") {
          target.luns.back().online = value == "Yes";
        } else if (key == "Thin-provisioning") {
          target.luns.back().thin_provisioning = value == "Yes";
        } else if (key == "Backing store path") {
          target.luns.back().backing_path = std::string(value);
        }
        break;
      case Section::kAcl:
        target.acl.emplace_back(body);
        break;
      case Section::kNone:
      case Section::kOther:
        break;
    }
  }
  return targets;
}

uint64_t tgtShownMegabytes(uint64_t bytes) {
  // tgt's usr/target.c print_disksize(), unsigned wrap-around included: for sectors below
  // 608750 the inner difference wraps and the outer subtraction adds it back.
  const uint64_t sectors = bytes / 512;
  return (sectors - (sectors / 625 - 974)) / 1950;
}

// ---- addresses ----

absl::Status validatePortal(std::string_view portal) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        fmt::format("invalid iSCSI portal '{}': {}; expected ADDRESS:PORT such as 10.0.0.5:3260 or "
                    "[fd00::5]:3260",
                    portal, why));
  };
  size_t colon = portal.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = portal.substr(0, colon);
  uint32_t port = 0;
  if (!parseNumber(portal.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return bad("the port must be 1 to 65535");
  }
  std::string address(host);
  in6_addr v6{};
  in_addr v4{};
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    address = std::string(host.substr(1, host.size() - 2));
    if (::inet_pton(AF_INET6, address.c_str(), &v6) != 1) return bad("not an IPv6 address");
    return absl::OkStatus();
  }
  if (::inet_pton(AF_INET, address.c_str(), &v4) != 1) {
    return bad(
        "the host must be an IP address (a name would be resolved with a blocking lookup "
        "on the VMM's I/O thread)");
  }
  return absl::OkStatus();
}

absl::Status validateIqnPrefix(std::string_view iqn_prefix) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format(
        "invalid IQN prefix '{}': {}; expected iqn.YYYY-MM.reversed.domain[:name], e.g. "
        "iqn.2026-01.org.example:pool1",
        iqn_prefix, why));
  };
  if (!iqn_prefix.starts_with("iqn.")) return bad("it does not start with 'iqn.'");
  std::string_view rest = iqn_prefix.substr(4);
  int year = 0;
  int month = 0;
  if (rest.size() < 8 || !parseNumber(rest.substr(0, 4), &year) || rest[4] != '-' ||
      !parseNumber(rest.substr(5, 2), &month) || month < 1 || month > 12 || rest[7] != '.') {
    return bad("it lacks the date 'YYYY-MM.' after 'iqn.'");
  }
  rest.remove_prefix(8);
  if (rest.empty() || rest.front() == '.' || rest.front() == ':') {
    return bad("it lacks the reversed domain name after the date");
  }
  for (char c : iqn_prefix) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':')) {
      return bad(fmt::format("'{}' is not allowed (lowercase letters, digits, '.', '-', ':')", c));
    }
  }
  if (iqn_prefix.back() == ':' || iqn_prefix.back() == '.') {
    return bad("it ends with ':' or '.' (the pool adds ':VOLUME')");
  }
  if (iqn_prefix.size() + 1 + kMaxVolumeName > kMaxIqnBytes) {
    return bad(
        fmt::format("it is too long: with ':' and a volume name of up to {} characters "
                    "an IQN must fit in {} bytes",
                    kMaxVolumeName, kMaxIqnBytes));
  }
  return absl::OkStatus();
}

std::string volumeIqn(std::string_view iqn_prefix, std::string_view volume) {
  return fmt::format("{}:{}", iqn_prefix, volume);
}

bool tgtServesPortal(std::string_view show_output, std::string_view portal) {
  const size_t colon = portal.rfind(':');
  if (colon == std::string_view::npos) return false;
  const std::string wildcard =
      fmt::format("{}{}", portal.starts_with("[") ? "[::]" : "0.0.0.0", portal.substr(colon));
  constexpr std::string_view kLabel = "Portal: ";
  while (!show_output.empty()) {
    const size_t end = std::min(show_output.find('\n'), show_output.size());
    std::string_view line = trimRight(show_output.substr(0, end));
    show_output.remove_prefix(std::min(end + 1, show_output.size()));
    line.remove_prefix(std::min(line.find_first_not_of(' '), line.size()));
    if (!line.starts_with(kLabel)) continue;
    line.remove_prefix(kLabel.size());
    const std::string_view served = line.substr(0, line.rfind(','));
    if (served == portal || served == wildcard) return true;
  }
  return false;
}

absl::StatusOr<std::string> volumeIscsiUrl(std::string_view portal, std::string_view iqn_prefix,
                                           std::string_view volume) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  return fmt::format("iscsi://{}/{}/1", portal, volumeIqn(iqn_prefix, volume));
}

// ---- IscsiPool ----

IscsiPool::IscsiPool(CommandRunner& runner, IscsiPoolOptions options,
                     std::unique_ptr<LocalDirPool> files)
    : runner_(runner),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : systemClock()),
      log_(Logger("storage").with("pool", options_.name)),
      files_(std::move(files)) {}

absl::StatusOr<std::unique_ptr<IscsiPool>> IscsiPool::open(CommandRunner& runner,
                                                           IscsiPoolOptions options) {
  RETURN_IF_ERROR(validatePoolName(options.name));
  RETURN_IF_ERROR(annotate(validatePortal(options.portal), fmt::format("pool {}", options.name)));
  RETURN_IF_ERROR(
      annotate(validateIqnPrefix(options.iqn_prefix), fmt::format("pool {}", options.name)));
  if (options.tgt_control < 0 || options.tgt_control > 32767) {
    return absl::InvalidArgumentError(
        fmt::format("pool {}: tgtd control instance {} is out of range (0 to 32767, tgtd -C N)",
                    options.name, options.tgt_control));
  }
  if (options.allowed_initiators.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "pool {}: no allowed initiators: no VM could use the pool's volumes; list the compute "
        "hosts' addresses or initiator names, or ALL",
        options.name));
  }
  for (const std::string& entry : options.allowed_initiators) {
    RETURN_IF_ERROR(validateAclEntry(options.name, entry));
  }
  LocalDirPoolOptions dir_options;
  dir_options.name = options.name;
  dir_options.directory = options.directory;
  dir_options.create_directory = options.create_directory;
  ASSIGN_OR_RETURN(std::unique_ptr<LocalDirPool> files, LocalDirPool::open(dir_options));
  return std::unique_ptr<IscsiPool>(new IscsiPool(runner, std::move(options), std::move(files)));
}

std::string IscsiPool::iqn(std::string_view volume) const {
  return volumeIqn(options_.iqn_prefix, volume);
}

absl::StatusOr<std::string> IscsiPool::url(std::string_view volume) const {
  return volumeIscsiUrl(options_.portal, options_.iqn_prefix, volume);
}

std::string IscsiPool::volumeOfIqn(std::string_view iqn) const {
  if (iqn.size() <= options_.iqn_prefix.size() + 1 || !iqn.starts_with(options_.iqn_prefix) ||
      iqn[options_.iqn_prefix.size()] != ':') {
    return {};
  }
  return std::string(iqn.substr(options_.iqn_prefix.size() + 1));
}

absl::StatusOr<std::string> IscsiPool::tgtadm(std::vector<std::string> args) {
  std::vector<std::string> argv = {options_.tgtadm, "-C", std::to_string(options_.tgt_control)};
  argv.insert(argv.end(), std::make_move_iterator(args.begin()),
              std::make_move_iterator(args.end()));
  CommandOptions command_options;
  command_options.timeout = options_.command_timeout;
  absl::StatusOr<CommandResult> result = runner_.run(argv, command_options);
  if (!result.ok()) return annotate(result.status(), fmt::format("pool {}", options_.name));
  if (result->status.success()) return std::move(result->out);
  std::string err(trimRight(result->err));
  if (result->status.code == kTgtadmNotConnected || contains(err, "tgt daemon")) {
    return absl::UnavailableError(
        fmt::format("pool {}: tgtd does not answer on control instance {} (`{}`: {}); start it "
                    "(tgtd -C {} --iscsi portal={}) and retry",
                    options_.name, options_.tgt_control, formatCommandLine(argv), err,
                    options_.tgt_control, options_.portal));
  }
  return absl::InternalError(fmt::format("pool {}: `{}` {}: {}", options_.name,
                                         formatCommandLine(argv), result->status.describe(),
                                         err.empty() ? "(no message)" : err));
}

absl::StatusOr<std::vector<TgtTargetState>> IscsiPool::showTargets() {
  ASSIGN_OR_RETURN(std::string out, tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "target"}));
  absl::StatusOr<std::vector<TgtTargetState>> targets = parseTgtTargets(out);
  if (!targets.ok()) return annotate(targets.status(), fmt::format("pool {}", options_.name));
  return targets;
}

absl::Status IscsiPool::addLun(int tid, std::string_view volume) {
  const std::string tid_text = std::to_string(tid);
  RETURN_IF_ERROR(tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid",
                          tid_text, "--lun", "1", "-b", files_->volumePath(volume)})
                      .status());
  if (options_.thin_provisioning) {
    RETURN_IF_ERROR(tgtadm({"--lld", "iscsi", "--op", "update", "--mode", "logicalunit", "--tid",
                            tid_text, "--lun", "1", "--params", "thin_provisioning=1"})
                        .status());
  }
  return absl::OkStatus();
}

absl::Status IscsiPool::deleteLunWhenIdle(int tid, std::string_view volume) {
  // tgtd refuses to delete a LUN with commands queued or in flight ("this logical unit is
  // still active"), which is exactly the moment it would be unsafe: wait for a quiet instant.
  const absl::Duration deadline = clock_.monotonicNow() + options_.lun_busy_timeout;
  while (true) {
    absl::Status deleted = tgtadm({"--lld", "iscsi", "--op", "delete", "--mode", "logicalunit",
                                   "--tid", std::to_string(tid), "--lun", "1"})
                               .status();
    if (deleted.ok() || !contains(std::string(deleted.message()), "still active")) return deleted;
    if (clock_.monotonicNow() >= deadline) {
      return absl::UnavailableError(fmt::format(
          "pool {}: LUN 1 of target {} (volume {}) had commands in flight for {}; nothing was "
          "changed; retry when its I/O is quieter",
          options_.name, iqn(volume), volume, absl::FormatDuration(options_.lun_busy_timeout)));
    }
    clock_.sleepFor(options_.lun_busy_retry);
  }
}

absl::Status IscsiPool::deleteTarget(int tid, bool force) {
  std::vector<std::string> args = {"--lld",  "iscsi",  "--op",  "delete",
                                   "--mode", "target", "--tid", std::to_string(tid)};
  if (force) args.push_back("--force");
  return tgtadm(std::move(args)).status();
}

absl::Status IscsiPool::setTargetState(int tid, std::string_view state) {
  return tgtadm({"--lld", "iscsi", "--op", "update", "--mode", "target", "--tid",
                 std::to_string(tid), "-n", "state", "-v", std::string(state)})
      .status();
}

absl::StatusOr<bool> IscsiPool::syncAcl(int tid, const std::vector<std::string>& current) {
  bool changed = false;
  const std::set<std::string> wanted(options_.allowed_initiators.begin(),
                                     options_.allowed_initiators.end());
  const std::set<std::string> have(current.begin(), current.end());
  for (const std::string& entry : wanted) {
    if (have.count(entry) != 0) continue;
    RETURN_IF_ERROR(tgtadm(aclArgs("bind", tid, entry)).status());
    changed = true;
  }
  for (const std::string& entry : have) {
    if (wanted.count(entry) != 0) continue;
    RETURN_IF_ERROR(tgtadm(aclArgs("unbind", tid, entry)).status());
    changed = true;
  }
  return changed;
}

absl::Status IscsiPool::createTarget(std::string_view volume, std::vector<TgtTargetState> targets) {
  const std::string target_iqn = iqn(volume);
  int tid = 0;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      ASSIGN_OR_RETURN(targets, showTargets());
    }
    if (findTarget(targets, target_iqn) != nullptr) {
      return absl::AlreadyExistsError(
          fmt::format("pool {}: target {} appeared meanwhile", options_.name, target_iqn));
    }
    // The lowest tid no target uses (tids are tgtd-wide: other pools' and other software's
    // targets count too).
    std::set<int> used;
    for (const TgtTargetState& target : targets) used.insert(target.tid);
    tid = 1;
    while (used.count(tid) != 0) ++tid;
    absl::Status created = tgtadm({"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid",
                                   std::to_string(tid), "-T", target_iqn})
                               .status();
    if (created.ok()) break;
    // Someone outside this process took the tid between show and new: look and choose again.
    if (!contains(std::string(created.message()), "already exists") ||
        attempt + 1 >= kCreateAttempts) {
      return created;
    }
  }
  absl::Status configured = addLun(tid, volume);
  if (configured.ok()) configured = syncAcl(tid, {}).status();
  if (!configured.ok()) {
    (void)deleteTarget(tid, /*force=*/true);  // nobody can be logged in to it yet
    return configured;
  }
  log_.info("target {} (tid {}) exports volume {}", target_iqn, tid, volume);
  return absl::OkStatus();
}

absl::StatusOr<bool> IscsiPool::repairTarget(const TgtTargetState& target,
                                             std::string_view volume) {
  bool changed = false;
  const TgtLun* lun = target.lun(1);
  if (lun != nullptr && lun->backing_path != files_->volumePath(volume)) {
    log_.warn("target {} LUN 1 is backed by {}, not {}: re-creating it", target.iqn,
              lun->backing_path, files_->volumePath(volume));
    RETURN_IF_ERROR(deleteLunWhenIdle(target.tid, volume));
    lun = nullptr;
  }
  if (lun == nullptr) {
    RETURN_IF_ERROR(addLun(target.tid, volume));
    changed = true;
  } else if (lun->thin_provisioning != options_.thin_provisioning) {
    RETURN_IF_ERROR(
        tgtadm({"--lld", "iscsi", "--op", "update", "--mode", "logicalunit", "--tid",
                std::to_string(target.tid), "--lun", "1", "--params",
                options_.thin_provisioning ? "thin_provisioning=1" : "thin_provisioning=0"})
            .status());
    changed = true;
  }
  ASSIGN_OR_RETURN(bool acl_changed, syncAcl(target.tid, target.acl));
  if (target.state != "ready") {  // left offline by a resize that failed half-way
    RETURN_IF_ERROR(setTargetState(target.tid, "ready"));
    changed = true;
  }
  return changed || acl_changed;
}

absl::Status IscsiPool::createFreshTarget(std::string_view volume) {
  ASSIGN_OR_RETURN(std::vector<TgtTargetState> targets, showTargets());
  if (const TgtTargetState* stale = findTarget(targets, iqn(volume)); stale != nullptr) {
    // Its backing file was removed behind the pool's back; tgtd may still hold the old one.
    if (!stale->sessions.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "pool {}: target {} still exists from an earlier volume {} and {} logged in to it; "
          "detach it from its VM (or restart that VM's disk elsewhere) first",
          options_.name, stale->iqn, volume, describeSessions(stale->sessions)));
    }
    log_.warn("deleting stale target {} (tid {}) before re-creating volume {}", stale->iqn,
              stale->tid, volume);
    RETURN_IF_ERROR(deleteTarget(stale->tid, /*force=*/false));
    ASSIGN_OR_RETURN(targets, showTargets());
  }
  return createTarget(volume, std::move(targets));
}

absl::StatusOr<VolumeInfo> IscsiPool::create(std::string_view volume, uint64_t size_bytes) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(VolumeInfo info, files_->create(volume, size_bytes));
  absl::Status exported = createFreshTarget(volume);
  if (!exported.ok()) {
    (void)files_->remove(volume);
    return annotate(exported, fmt::format("creating volume {} (undone)", volume));
  }
  return info;
}

absl::Status IscsiPool::resize(std::string_view volume, uint64_t new_size) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  RETURN_IF_ERROR(validateVolumeSize(volume, new_size));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(VolumeInfo info, files_->get(volume));
  // Shrinking is an error (no LUN change).
  if (new_size < info.size_bytes) return files_->resize(volume, new_size);
  ASSIGN_OR_RETURN(std::vector<TgtTargetState> targets, showTargets());
  const TgtTargetState* target = findTarget(targets, iqn(volume));
  if (target == nullptr) {  // no target (tgtd restarted, or an earlier step failed): make one
    RETURN_IF_ERROR(files_->resize(volume, new_size));
    return createTarget(volume, std::move(targets));
  }
  const TgtLun* lun = target->lun(1);
  if (lun == nullptr) {
    RETURN_IF_ERROR(files_->resize(volume, new_size));
    return repairTarget(*target, volume).status();  // adds LUN 1
  }
  if (new_size == info.size_bytes) {
    // The same size completes an earlier resize that grew the file but whose LUN still has the
    // size of before, or left the target offline.
    if (lun->size_mb != tgtShownMegabytes(new_size)) {
      return recreateLun(target->tid, volume, std::nullopt);
    }
    return repairTarget(*target, volume).status();
  }
  return recreateLun(target->tid, volume, new_size);
}

absl::Status IscsiPool::recreateLun(int tid, std::string_view volume,
                                    std::optional<uint64_t> grow_to) {
  // tgtd reads a LUN's size only when it opens the backing file, so the LUN is re-created. The
  // target is taken offline meanwhile: tgtd then drops the connections of initiators that send
  // commands and refuses their logins, and the VMM's backend keeps reconnecting and sends the
  // commands again once the target is ready (without that, commands that arrive between the
  // LUN's deletion and its re-creation fail). tgtd deletes the LUN only at an instant without
  // commands in flight. See docs/storage.md for why not `--op update --params path=`.
  RETURN_IF_ERROR(setTargetState(tid, "offline"));
  absl::Status changed = deleteLunWhenIdle(tid, volume);
  absl::Status grown = absl::OkStatus();
  if (changed.ok()) {
    if (grow_to.has_value()) grown = files_->resize(volume, *grow_to);
    changed = annotate(addLun(tid, volume),
                       fmt::format("re-creating LUN 1 of target {} for volume {} (reconcile() or "
                                   "another resize will retry)",
                                   iqn(volume), volume));
  }
  absl::Status ready = annotate(setTargetState(tid, "ready"),
                                fmt::format("target {} stays offline (reconcile() or another "
                                            "resize will retry)",
                                            iqn(volume)));
  RETURN_IF_ERROR(changed);
  RETURN_IF_ERROR(ready);
  RETURN_IF_ERROR(grown);
  ASSIGN_OR_RETURN(VolumeInfo info, files_->get(volume));
  log_.info("LUN 1 of {} re-created with {} bytes", iqn(volume), info.size_bytes);
  return absl::OkStatus();
}

absl::Status IscsiPool::remove(std::string_view volume) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::vector<TgtTargetState> targets, showTargets());
  if (const TgtTargetState* target = findTarget(targets, iqn(volume)); target != nullptr) {
    if (!target->sessions.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "pool {}: volume {} is in use: {} logged in to target {}; detach the volume from its "
          "VM first",
          options_.name, volume, describeSessions(target->sessions), target->iqn));
    }
    RETURN_IF_ERROR(deleteTarget(target->tid, /*force=*/false));
    log_.info("deleted target {} (tid {})", target->iqn, target->tid);
  }
  return files_->remove(volume);
}

absl::StatusOr<VolumeInfo> IscsiPool::clone(std::string_view source, std::string_view target) {
  // The copy runs without the lock (it may take minutes); only tgtd changes are serialised.
  ASSIGN_OR_RETURN(VolumeInfo info, files_->clone(source, target));
  absl::MutexLock lock(&mu_);
  absl::Status exported = createFreshTarget(target);
  if (!exported.ok()) {
    (void)files_->remove(target);
    return annotate(exported, fmt::format("cloning volume {} to {} (undone)", source, target));
  }
  return info;
}

absl::StatusOr<std::vector<VolumeInfo>> IscsiPool::list() {
  return files_->list();
}

absl::StatusOr<VolumeInfo> IscsiPool::get(std::string_view volume) {
  return files_->get(volume);
}

absl::StatusOr<std::string> IscsiPool::diskOption(std::string_view volume) {
  RETURN_IF_ERROR(files_->get(volume).status());
  ASSIGN_OR_RETURN(std::string volume_url, url(volume));
  return fmt::format("iscsi={}", volume_url);
}

absl::StatusOr<IscsiReconcileReport> IscsiPool::reconcile() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::vector<TgtTargetState> targets, showTargets());
  ASSIGN_OR_RETURN(std::vector<VolumeInfo> volumes, files_->list());
  std::set<std::string> files;
  for (const VolumeInfo& volume : volumes) files.insert(volume.name);

  IscsiReconcileReport report;
  ASSIGN_OR_RETURN(std::string portals,
                   tgtadm({"--lld", "iscsi", "--op", "show", "--mode", "portal"}));
  if (!tgtServesPortal(portals, options_.portal)) {
    report.failed.push_back(fmt::format(
        "tgtd (control instance {}) does not listen on the pool's portal {}, so no VM can reach "
        "its volumes (tgtd lists: {}); another process may hold the port: free it and restart "
        "tgtd with --iscsi portal={}",
        options_.tgt_control, options_.portal,
        portals.empty() ? "no portal" : describePortals(portals), options_.portal));
  }
  std::set<std::string> exported;
  for (const TgtTargetState& target : targets) {
    const std::string volume = volumeOfIqn(target.iqn);
    if (volume.empty()) continue;  // not this pool's: never touched
    if (!validateVolumeName(volume).ok() || files.count(volume) == 0) {
      if (!target.sessions.empty()) {
        log_.warn("target {} has no volume file but {} logged in: left alone", target.iqn,
                  describeSessions(target.sessions));
        report.kept.push_back(volume);
        continue;
      }
      absl::Status deleted = deleteTarget(target.tid, /*force=*/false);
      if (deleted.ok()) {
        log_.info("deleted target {} (tid {}): its volume file is gone", target.iqn, target.tid);
        report.removed.push_back(volume);
      } else {
        report.failed.push_back(deleted.ToString());
      }
      continue;
    }
    exported.insert(volume);
    absl::StatusOr<bool> repaired = repairTarget(target, volume);
    if (!repaired.ok()) {
      report.failed.push_back(repaired.status().ToString());
    } else if (*repaired) {
      report.repaired.push_back(volume);
    }
  }
  for (const std::string& volume : files) {
    if (exported.count(volume) != 0) continue;
    // Read tgtd's state again: the targets created by this loop hold tids too.
    absl::StatusOr<std::vector<TgtTargetState>> now = showTargets();
    absl::Status created = now.ok() ? createTarget(volume, *std::move(now)) : now.status();
    if (created.ok()) {
      report.created.push_back(volume);
    } else {
      report.failed.push_back(created.ToString());
    }
  }
  for (const std::string& failure : report.failed) log_.error("reconcile: {}", failure);
  log_.info("reconciled with tgtd: {} created, {} repaired, {} removed, {} kept, {} failed",
            report.created.size(), report.repaired.size(), report.removed.size(),
            report.kept.size(), report.failed.size());
  return report;
}

// ---- IscsiPoolClient ----

absl::StatusOr<std::unique_ptr<IscsiPoolClient>> IscsiPoolClient::open(
    IscsiPoolClientOptions options) {
  RETURN_IF_ERROR(validatePoolName(options.name));
  RETURN_IF_ERROR(annotate(validatePortal(options.portal), fmt::format("pool {}", options.name)));
  RETURN_IF_ERROR(
      annotate(validateIqnPrefix(options.iqn_prefix), fmt::format("pool {}", options.name)));
  return std::unique_ptr<IscsiPoolClient>(new IscsiPoolClient(std::move(options)));
}

absl::Status IscsiPoolClient::managedElsewhere(std::string_view operation) const {
  return absl::FailedPreconditionError(fmt::format(
      "pool {} is served by the storage host at {}: {} its volumes through that host's agent",
      options_.name, options_.portal, operation));
}

absl::StatusOr<VolumeInfo> IscsiPoolClient::create(std::string_view, uint64_t) {
  return managedElsewhere("create");
}
absl::Status IscsiPoolClient::resize(std::string_view, uint64_t) {
  return managedElsewhere("resize");
}
absl::Status IscsiPoolClient::remove(std::string_view) {
  return managedElsewhere("remove");
}
absl::StatusOr<VolumeInfo> IscsiPoolClient::clone(std::string_view, std::string_view) {
  return managedElsewhere("clone");
}
absl::StatusOr<std::vector<VolumeInfo>> IscsiPoolClient::list() {
  return managedElsewhere("list");
}
absl::StatusOr<VolumeInfo> IscsiPoolClient::get(std::string_view) {
  return managedElsewhere("look up");
}

absl::StatusOr<std::string> IscsiPoolClient::diskOption(std::string_view volume) {
  ASSIGN_OR_RETURN(std::string url, volumeIscsiUrl(options_.portal, options_.iqn_prefix, volume));
  return fmt::format("iscsi={}", url);
}

}  // namespace flotilla::storage
