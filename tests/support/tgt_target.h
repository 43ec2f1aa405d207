// TgtTarget: a real iSCSI target (tgtd) for integration tests: one target with one disk LUN
// (LUN 1) backed by a file, on 127.0.0.1 and a free port, open to every initiator. It can be
// stopped and started again on the same port with the same LUN, to simulate a storage host
// that restarts. The daemon is a child process owned by this object; its control socket is
// a private instance (/var/run/tgtd/socket.N with an N no other tgtd uses).
//
//   ASSERT_OK_AND_ASSIGN(auto tgt, TgtTarget::start(disk_path));
//   openIscsi(tgt->url(), {});   // iscsi://127.0.0.1:PORT/iqn.2026-01.org.flotilla:test/1
//   tgt->restart();              // the target goes away and comes back
//
// Needs root (tgtd creates /var/run/tgtd) and the Debian package tgt; without them start()
// fails with a message that says what is missing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process.h"
#include "tests/support/test_env.h"

namespace flotilla::testing {

struct TgtTargetOptions {
  std::string iqn = "iqn.2026-01.org.flotilla:test";
  // Thin provisioning on the LUN: tgtd then reports UNMAP and WRITE SAME with UNMAP support
  // (and punches holes in the backing file).
  bool thin_provisioning = false;
};

class TgtDaemon;

class TgtTarget {
 public:
  // Starts tgtd and creates the target with LUN 1 on `backing_file` (which must exist; its size
  // is the LUN's).
  static absl::StatusOr<std::unique_ptr<TgtTarget>> start(const std::string& backing_file,
                                                          TgtTargetOptions options = {});
  // Stops the daemon (SIGKILL if it does not stop) and removes its control socket.
  ~TgtTarget();
  TgtTarget(const TgtTarget&) = delete;
  TgtTarget& operator=(const TgtTarget&) = delete;

  // "ADDRESS:PORT".
  std::string portal() const;
  // "iscsi://127.0.0.1:PORT/IQN/LUN".
  std::string url(int lun = 1) const;
  const std::string& iqn() const { return options_.iqn; }

  // Deletes the target (dropping every session), tells tgtd to exit and waits for it;
  // SIGKILL by PID if it does not. Idempotent.
  absl::Status stop();
  // SIGKILL, as a crash of the storage host would: sessions break without a logout.
  absl::Status kill();
  // Starts tgtd again after stop() or kill(), on the same port, with the same target and LUN.
  absl::Status startAgain();
  // stop() then startAgain().
  absl::Status restart();
  bool running();

  // The end of tgtd's output, for failure messages.
  std::string logTail() const;

 private:
  TgtTarget(std::unique_ptr<TgtDaemon> daemon, std::string backing_file, TgtTargetOptions options);
  absl::Status configure();

  std::unique_ptr<TgtDaemon> daemon_;
  const std::string backing_file_;
  const TgtTargetOptions options_;
};

// TgtDaemon: a bare tgtd (no targets) on 127.0.0.1 and a free port, with a private control
// instance, for tests of code that manages targets itself (storage/iscsi_pool.h):
//
//   ASSERT_OK_AND_ASSIGN(auto tgtd, TgtDaemon::start());
//   options.tgt_control = tgtd->control();   // tgtadm -C N
//   options.portal = tgtd->portal();         // 127.0.0.1:PORT
//   tgtd->restart();                         // a storage host whose tgtd restarted: no targets
//
// stop() deletes whatever targets it has (--force) and then the daemon. Same requirements as
// TgtTarget (root, the Debian package tgt).
class TgtDaemon {
 public:
  // Listens on `address` (an address of this host; a bridge that test namespaces reach). A
  // portal that tgtd could not bind (its port was taken since it was picked) starts it over
  // on a new port.
  static absl::StatusOr<std::unique_ptr<TgtDaemon>> start(
      std::string address = "127.0.0.1", const PortPicker& pick_port = pickFreePort);
  ~TgtDaemon();
  TgtDaemon(const TgtDaemon&) = delete;
  TgtDaemon& operator=(const TgtDaemon&) = delete;

  int control() const { return control_; }
  // "ADDRESS:PORT".
  std::string portal() const;
  // The tgtadm program (an absolute path).
  const std::string& tgtadmPath() const { return tgtadm_; }
  // Runs `tgtadm -C N ARGS...`; its standard output, or an error quoting it.
  absl::StatusOr<std::string> tgtadm(const std::vector<std::string>& args);

  // Deletes every target (--force), tells tgtd to exit and waits for it; SIGKILL by PID if it
  // does not exit. Idempotent.
  absl::Status stop();
  // SIGKILL, as a crash of the storage host would.
  absl::Status kill();
  // Starts tgtd again after stop() or kill(), on the same port and control instance, with no
  // targets.
  absl::Status startAgain();
  // stop() then startAgain().
  absl::Status restart();
  bool running();
  std::string logTail() const;

 private:
  TgtDaemon(std::string tgtd, std::string tgtadm);
  absl::Status launch();
  // Whether tgtd listens on portal(); kills it when not (its port was taken since it was
  // picked).
  absl::Status checkPortal();
  void removeControlSocket();

  const std::string tgtd_;
  const std::string tgtadm_;
  TempDir dir_;
  int control_ = 0;
  uint16_t port_ = 0;
  std::string address_ = "127.0.0.1";
  ChildProcess process_;
};

}  // namespace flotilla::testing
