// IscsiPool: a volume pool whose volumes are raw files in a directory of a storage host
// (a LocalDirPool), each exported by tgtd as an iSCSI target of its own: IQN = prefix + ":" +
// volume, LUN 1 backed by the volume's file, bound to ALL initiators (or an allow list). The
// pool drives tgtd with `tgtadm` through a CommandRunner (never a shell) and owns exactly
// the targets whose IQN starts with its prefix; reconcile() brings tgtd back in line with the
// files after tgtd or the agent restarted. IscsiPoolClient is the same pool on a compute host:
// it only builds the iscsi:// URLs (no tgtadm there). See docs/storage.md, "Volume pools".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/command.h"
#include "common/log.h"
#include "storage/local_dir_pool.h"
#include "storage/pool.h"

namespace flotilla::storage {

// ---- what `tgtadm --op show --mode target` prints (tgt 1.0.85), parsed ----

struct TgtLun {
  uint64_t lun = 0;
  std::string type;          // "controller" (LUN 0), "disk", ...
  uint64_t size_mb = 0;      // "Size: N MB" (see tgtShownMegabytes)
  std::string backing_path;  // "None" for LUN 0
  bool online = false;
  bool thin_provisioning = false;
};

struct TgtSession {
  std::string initiator;               // "iqn.2008-11.org.linux-kvm"
  std::vector<std::string> addresses;  // "IP Address:" of each connection
};

struct TgtTargetState {
  int tid = 0;
  std::string iqn;
  std::string state;                 // "ready", "offline"
  std::vector<TgtSession> sessions;  // I_T nexus information
  std::vector<TgtLun> luns;
  std::vector<std::string> acl;  // "ALL", addresses, networks, initiator names
  const TgtLun* lun(uint64_t number) const;
};

// InvalidArgument (quoting the line) when the text is not in that format.
absl::StatusOr<std::vector<TgtTargetState>> parseTgtTargets(std::string_view show_output);

// Whether the portals listed by `tgtadm --lld iscsi --op show --mode portal` ("Portal:
// ADDRESS:PORT,TPGT" lines) serve `portal` ("ADDRESS:PORT"): the same one, or the wildcard
// address of its family on its port.
bool tgtServesPortal(std::string_view show_output, std::string_view portal);

// The "Size: N MB" that tgtd 1.0.85 shows for a LUN of `bytes` (about bytes / 10^6).
uint64_t tgtShownMegabytes(uint64_t bytes);

// ---- the pool address, shared by both sides ----

// Checks an iSCSI portal "ADDRESS:PORT" ("10.0.0.5:3260", "[fd00::5]:3260"): an IP address
// (libiscsi would resolve a host name with a blocking lookup) and a port 1-65535.
absl::Status validatePortal(std::string_view portal);
// Checks an IQN prefix: "iqn.YYYY-MM.reversed.domain[:anything]", lowercase letters, digits,
// '.', '-' and ':', short enough that prefix + ":" + a 63-character volume fits in 223 bytes.
absl::Status validateIqnPrefix(std::string_view iqn_prefix);
// prefix + ":" + volume.
std::string volumeIqn(std::string_view iqn_prefix, std::string_view volume);
// "iscsi://PORTAL/IQN/1"; the volume name is checked.
absl::StatusOr<std::string> volumeIscsiUrl(std::string_view portal, std::string_view iqn_prefix,
                                           std::string_view volume);

// ---- the storage host's side ----

struct IscsiPoolOptions {
  std::string name;       // the pool's name
  std::string directory;  // where the volume files live (see LocalDirPoolOptions)
  bool create_directory = false;
  std::string portal;      // "ADDRESS:PORT" that tgtd listens on and initiators connect to
  std::string iqn_prefix;  // "iqn.2026-01.org.example:pool1": targets are PREFIX:VOLUME
  int tgt_control = 0;     // tgtd's control instance (tgtd/tgtadm -C N); 0 is tgtd's default
  // Who may log in: "ALL", an IP address, a network ("10.0.0.0/24") or an initiator name
  // ("iqn...."). The default lets every initiator that reaches the portal in (protect the
  // storage network instead, or list the compute hosts).
  std::vector<std::string> allowed_initiators = {"ALL"};
  // LUNs with thin_provisioning=1: guests may discard (UNMAP), which punches holes in the
  // sparse files and gives the space back.
  bool thin_provisioning = true;
  std::string tgtadm = "tgtadm";
  absl::Duration command_timeout = absl::Seconds(30);
  // resize() re-creates the LUN, which tgtd refuses while it has commands in flight: how long
  // to keep trying, and how long to wait between attempts.
  absl::Duration lun_busy_timeout = absl::Seconds(10);
  absl::Duration lun_busy_retry = absl::Milliseconds(20);
  Clock* clock = nullptr;  // null: the system clock
};

// What reconcile() changed (volume names) and what it could not do.
struct IscsiReconcileReport {
  std::vector<std::string> created;   // files that had no target: targets created
  std::vector<std::string> repaired;  // targets whose LUN or ACL was wrong: fixed
  std::vector<std::string> removed;   // targets of the prefix without a file: deleted
  std::vector<std::string> kept;      // such targets still in use by an initiator: left alone
  std::vector<std::string> failed;    // messages of the steps that failed
};

class IscsiPool final : public VolumePool {
 public:
  // Checks the options and opens the directory. Does not talk to tgtd: call reconcile() once
  // tgtd runs (at agent start) to create the targets.
  static absl::StatusOr<std::unique_ptr<IscsiPool>> open(CommandRunner& runner,
                                                         IscsiPoolOptions options);

  std::string_view name() const override { return options_.name; }
  // The file, then its target; a failure removes both.
  absl::StatusOr<VolumeInfo> create(std::string_view volume, uint64_t size_bytes) override;
  // Grows the file and re-creates LUN 1 on it (tgtd reads a LUN's size only when it opens the
  // backing file), with the target offline meanwhile so that initiators reconnect instead of
  // seeing errors; see docs/storage.md for why not `--op update ... path=`.
  absl::Status resize(std::string_view volume, uint64_t new_size) override;
  // FailedPrecondition while an initiator is logged in to the volume's target (naming it):
  // detach the volume from its VM first. Then the target, then the file.
  absl::Status remove(std::string_view volume) override;
  absl::StatusOr<VolumeInfo> clone(std::string_view source, std::string_view target) override;
  absl::StatusOr<std::vector<VolumeInfo>> list() override;
  absl::StatusOr<VolumeInfo> get(std::string_view volume) override;
  // "iscsi=iscsi://PORTAL/PREFIX:VOLUME/1" for an existing volume file.
  absl::StatusOr<std::string> diskOption(std::string_view volume) override;

  // At agent start and whenever tgtd may have lost its state: creates the targets missing for
  // volume files, repairs targets whose LUN 1 or ACL differs, deletes targets of the prefix
  // whose file is gone (unless an initiator is logged in). Never touches other targets.
  // Fails only when tgtd cannot be asked; per-volume failures are in the report, and so is a
  // tgtd that does not listen on the pool's portal (it runs on without a portal it could not
  // bind, on 0.0.0.0:3260 instead).
  absl::StatusOr<IscsiReconcileReport> reconcile();

  std::string iqn(std::string_view volume) const;
  absl::StatusOr<std::string> url(std::string_view volume) const;
  LocalDirPool& files() { return *files_; }

 private:
  IscsiPool(CommandRunner& runner, IscsiPoolOptions options, std::unique_ptr<LocalDirPool> files);

  absl::StatusOr<std::string> tgtadm(std::vector<std::string> args);
  absl::StatusOr<std::vector<TgtTargetState>> showTargets() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes an existing target of the volume right: LUN 1 on the volume's file with the pool's
  // thin provisioning, and the ACL. True when it changed something.
  absl::StatusOr<bool> repairTarget(const TgtTargetState& target, std::string_view volume)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new target for a volume whose file was just made; a stale target of the same IQN (its
  // file was removed behind the pool's back) is deleted first unless it is in use.
  absl::Status createFreshTarget(std::string_view volume) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new target with LUN 1 and the ACL, at the lowest tid free in `targets` (tgtd's state
  // just read); undone when a step fails.
  absl::Status createTarget(std::string_view volume, std::vector<TgtTargetState> targets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status addLun(int tid, std::string_view volume) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status deleteLunWhenIdle(int tid, std::string_view volume)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-creates LUN 1 (so that tgtd reads the file's size again), growing the file in between
  // when `grow_to` is set, with the target offline meanwhile.
  absl::Status recreateLun(int tid, std::string_view volume, std::optional<uint64_t> grow_to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status deleteTarget(int tid, bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // "offline" (tgtd drops initiators' connections and refuses logins) or "ready".
  absl::Status setTargetState(int tid, std::string_view state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Binds the allowed initiators missing from `current` and unbinds the others; true when it
  // changed something.
  absl::StatusOr<bool> syncAcl(int tid, const std::vector<std::string>& current)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The volume of a target of this pool ("" when the IQN is not PREFIX:...).
  std::string volumeOfIqn(std::string_view iqn) const;

  CommandRunner& runner_;
  const IscsiPoolOptions options_;
  Clock& clock_;
  const Logger log_;
  std::unique_ptr<LocalDirPool> files_;
  // Serialises every change of tgtd's state made by this process (tid choice included).
  absl::Mutex mu_;
};

// ---- the compute host's side ----

struct IscsiPoolClientOptions {
  std::string name;
  std::string portal;
  std::string iqn_prefix;
};

// The pool as a compute host sees it: diskOption() builds the URL from the configuration (no
// tgtadm, no check that the volume exists: the VMM's login reports a missing target). Every
// other method is FailedPrecondition: volumes are managed by the storage host's agent.
class IscsiPoolClient final : public VolumePool {
 public:
  static absl::StatusOr<std::unique_ptr<IscsiPoolClient>> open(IscsiPoolClientOptions options);

  std::string_view name() const override { return options_.name; }
  absl::StatusOr<VolumeInfo> create(std::string_view volume, uint64_t size_bytes) override;
  absl::Status resize(std::string_view volume, uint64_t new_size) override;
  absl::Status remove(std::string_view volume) override;
  absl::StatusOr<VolumeInfo> clone(std::string_view source, std::string_view target) override;
  absl::StatusOr<std::vector<VolumeInfo>> list() override;
  absl::StatusOr<VolumeInfo> get(std::string_view volume) override;
  absl::StatusOr<std::string> diskOption(std::string_view volume) override;

 private:
  explicit IscsiPoolClient(IscsiPoolClientOptions options) : options_(std::move(options)) {}
  absl::Status managedElsewhere(std::string_view operation) const;

  const IscsiPoolClientOptions options_;
};

}  // namespace flotilla::storage
