// Tests of IscsiPool and IscsiPoolClient (storage/iscsi_pool.h) without tgtd: a
// FakeCommandRunner plays tgtadm against a small model of tgtd's targets (FakeTgtd, which
// prints `--op show` the way tgt 1.0.85 does), so the tests assert the exact command lines,
// tid allocation (also from several threads and against tids taken from outside), undo on
// failure, the LUN re-creation of resize, reconcile after a tgtd restart, and the parsing of
// `tgtadm --op show` output captured from a real tgtd 1.0.85.
#include "storage/iscsi_pool.h"

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/testing/fake_clock.h"
#include "common/testing/fake_command_runner.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr char kPrefix[] = "iqn.2026-01.org.example:pool1";

// Captured from tgtd 1.0.85 (Debian 12) with `tgtadm -C N --lld iscsi --op show --mode target`:
// a target with a logged-in initiator (qemu-io) and one of another owner with an IP ACL.
constexpr char kCapturedShow[] = R"(Target 1: iqn.2026-01.org.flotilla.pool:vol-a
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
        I_T nexus: 3
            Initiator: iqn.2008-11.org.linux-kvm alias: none
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags: 
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 268 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /tmp/stg/a.img
            Backing store flags: 
    Account information:
    ACL information:
        ALL
Target 5: iqn.2026-01.org.other:x
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00050000
            SCSI SN: beaf50
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags: 
        LUN: 1
            Type: disk
            SCSI ID: IET     00050001
            SCSI SN: beaf51
            Size: 34 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: rdwr
            Backing store path: /tmp/stg/b.img
            Backing store flags: 
    Account information:
    ACL information:
        10.0.0.1
        10.0.0.2
        iqn.2026-01.org.flotilla:host1
)";

// Captured the same way: a target made with the pool's commands (thin provisioning), a
// logged-in initiator, and the target offline as during a resize.
constexpr char kCapturedPoolTarget[] = R"(Target 1: iqn.2026-01.org.example:pool1:web1
    System information:
        Driver: iscsi
        State: offline
    I_T nexus information:
        I_T nexus: 1
            Initiator: iqn.2008-11.org.linux-kvm alias: none
            Connection: 0
                IP Address: 127.0.0.1
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            SCSI SN: beaf10
            Size: 0 MB, Block size: 1
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: No
            Backing store type: null
            Backing store path: None
            Backing store flags: 
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            SCSI SN: beaf11
            Size: 67 MB, Block size: 512
            Online: Yes
            Removable media: No
            Prevent removal: No
            Readonly: No
            SWP: No
            Thin-provisioning: Yes
            Backing store type: rdwr
            Backing store path: /tmp/stg/web1.img
            Backing store flags: 
    Account information:
    ACL information:
        ALL
)";

// A model of tgtd's targets that answers tgtadm command lines like tgtd 1.0.85 does (same
// errors, same `show` layout).
class FakeTgtd {
 public:
  struct Lun {
    std::string path;
    uint64_t size = 0;
    bool thin = false;
  };
  struct Target {
    std::string iqn;
    std::string state = "ready";
    std::map<uint64_t, Lun> luns;
    std::vector<std::string> acl;
    std::vector<TgtSession> sessions;
  };

  explicit FakeTgtd(int control) : control_(control) {}

  void install(FakeCommandRunner& runner) {
    runner.setHandler([this](const std::vector<std::string>& argv, const CommandOptions&) {
      return handle(argv);
    });
  }

  void addTarget(int tid, std::string iqn, std::string path, uint64_t size,
                 std::vector<std::string> acl = {"ALL"}) {
    absl::MutexLock lock(&mu_);
    Target target;
    target.iqn = std::move(iqn);
    if (!path.empty()) target.luns[1] = Lun{std::move(path), size, false};
    target.acl = std::move(acl);
    targets_[tid] = std::move(target);
  }
  void addSession(int tid, std::string initiator, std::string address) {
    absl::MutexLock lock(&mu_);
    targets_[tid].sessions.push_back(TgtSession{std::move(initiator), {std::move(address)}});
  }
  // The next `n` deletes of a LUN fail as tgtd does while it has commands in flight.
  void setLunBusy(int n) {
    absl::MutexLock lock(&mu_);
    lun_busy_ = n;
  }
  void clearFailures() {
    absl::MutexLock lock(&mu_);
    failures_.clear();
  }
  // Commands whose line contains `needle` fail with `message` (exit status 22).
  void failCommandsWith(std::string needle, std::string message) {
    absl::MutexLock lock(&mu_);
    failures_[std::move(needle)] = std::move(message);
  }
  // A target appears at `tid` right before the next `--op new --mode target` (someone else's).
  void raceNextNewTarget(int tid) {
    absl::MutexLock lock(&mu_);
    race_tid_ = tid;
  }
  // What `--op show --mode portal` prints.
  void setPortals(std::string portals) {
    absl::MutexLock lock(&mu_);
    portals_ = std::move(portals);
  }
  void restart() {  // tgtd restarted: its state is gone
    absl::MutexLock lock(&mu_);
    targets_.clear();
  }
  std::map<int, Target> targets() const {
    absl::MutexLock lock(&mu_);
    return targets_;
  }
  // Sets every LUN's size from its file, as tgtd does when it opens the backing store.
  static uint64_t fileSize(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }

 private:
  static CommandResult fail(std::string message) {
    return FakeCommandRunner::exited(22, "", "tgtadm: " + message + "\n");
  }

  absl::StatusOr<CommandResult> handle(const std::vector<std::string>& argv) {
    absl::MutexLock lock(&mu_);
    if (argv.size() < 3 || argv[0] != "tgtadm" || argv[1] != "-C" ||
        argv[2] != std::to_string(control_)) {
      return fail("unexpected command " + formatCommandLine(argv));
    }
    const std::string line = formatCommandLine(argv);
    for (const auto& [needle, message] : failures_) {
      if (line.find(needle) != std::string::npos) return fail(message);
    }
    std::map<std::string, std::string> flags;
    bool force = false;
    for (size_t i = 3; i < argv.size(); ++i) {
      if (argv[i] == "--force") {
        force = true;
      } else if (i + 1 < argv.size()) {
        flags[argv[i]] = argv[i + 1];
        ++i;
      }
    }
    const std::string op = flags["--op"];
    const std::string mode = flags["--mode"];
    const int tid = flags.count("--tid") != 0 ? std::stoi(flags["--tid"]) : 0;
    auto target = targets_.find(tid);
    if (op == "show" && mode == "target") return FakeCommandRunner::exited(0, show());
    if (op == "show" && mode == "portal") return FakeCommandRunner::exited(0, portals_);
    if (mode == "target" && op == "new") {
      if (race_tid_ != 0) {
        targets_[race_tid_].iqn = "iqn.2026-01.org.someone:else";
        race_tid_ = 0;
      }
      for (const auto& [id, t] : targets_) {
        if (id == tid || t.iqn == flags["-T"]) return fail("this target already exists");
      }
      targets_[tid].iqn = flags["-T"];
      return FakeCommandRunner::exited(0);
    }
    if (target == targets_.end()) return fail("can't find the target");
    if (mode == "target" && op == "delete") {
      if (!target->second.sessions.empty() && !force) return fail("this target is still active");
      targets_.erase(target);
      return FakeCommandRunner::exited(0);
    }
    if (mode == "target" && op == "update") {
      if (flags["-n"] != "state" || (flags["-v"] != "ready" && flags["-v"] != "offline")) {
        return fail("invalid request");
      }
      target->second.state = flags["-v"];
      return FakeCommandRunner::exited(0);
    }
    if (mode == "target" && (op == "bind" || op == "unbind")) {
      const std::string entry = flags.count("-I") != 0 ? flags["-I"] : flags["--initiator-name"];
      std::vector<std::string>& acl = target->second.acl;
      if (op == "bind") {
        acl.push_back(entry);
      } else {
        acl.erase(std::remove(acl.begin(), acl.end(), entry), acl.end());
      }
      return FakeCommandRunner::exited(0);
    }
    if (mode == "logicalunit") {
      const uint64_t lun = std::stoull(flags["--lun"]);
      auto& luns = target->second.luns;
      if (op == "new") {
        if (luns.count(lun) != 0) return fail("this logical unit number already exists");
        luns[lun] = Lun{flags["-b"], fileSize(flags["-b"]), false};
        return FakeCommandRunner::exited(0);
      }
      if (luns.count(lun) == 0) return fail("can't find the logical unit");
      if (op == "delete") {
        if (lun_busy_ > 0) {
          --lun_busy_;
          return fail("this logical unit is still active");
        }
        luns.erase(lun);
        return FakeCommandRunner::exited(0);
      }
      if (op == "update") {
        luns[lun].thin = flags["--params"] == "thin_provisioning=1";
        return FakeCommandRunner::exited(0);
      }
    }
    return fail("invalid request");
  }

  std::string show() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string out;
    for (const auto& [tid, target] : targets_) {
      out += fmt::format(
          "Target {}: {}\n    System information:\n        Driver: iscsi\n        State: {}\n"
          "    I_T nexus information:\n",
          tid, target.iqn, target.state);
      int nexus = 1;
      for (const TgtSession& session : target.sessions) {
        out += fmt::format(
            "        I_T nexus: {}\n            Initiator: {} alias: none\n"
            "            Connection: 0\n                IP Address: {}\n",
            nexus++, session.initiator, session.addresses.front());
      }
      out += "    LUN information:\n";
      std::map<uint64_t, Lun> luns = target.luns;
      luns[0] = Lun{"None", 0, false};
      for (const auto& [number, lun] : luns) {
        out += fmt::format(
            "        LUN: {}\n            Type: {}\n            SCSI ID: IET     {:04x}{:04x}\n"
            "            SCSI SN: beaf{}{}\n            Size: {} MB, Block size: {}\n"
            "            Online: Yes\n            Removable media: No\n"
            "            Prevent removal: No\n            Readonly: No\n            SWP: No\n"
            "            Thin-provisioning: {}\n            Backing store type: {}\n"
            "            Backing store path: {}\n            Backing store flags: \n",
            number, number == 0 ? "controller" : "disk", tid, number, tid, number,
            tgtShownMegabytes(lun.size), number == 0 ? 1 : 512, lun.thin ? "Yes" : "No",
            number == 0 ? "null" : "rdwr", lun.path);
      }
      out += "    Account information:\n    ACL information:\n";
      for (const std::string& entry : target.acl) out += "        " + entry + "\n";
    }
    return out;
  }

  const int control_;
  mutable absl::Mutex mu_;
  std::map<int, Target> targets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> failures_ ABSL_GUARDED_BY(mu_);
  int lun_busy_ ABSL_GUARDED_BY(mu_) = 0;
  int race_tid_ ABSL_GUARDED_BY(mu_) = 0;
  std::string portals_ ABSL_GUARDED_BY(mu_) = "Portal: 10.0.0.5:3260,1\n";
};

class IscsiPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tgtd_.install(runner_);
    pool_ = openPool();
  }

  IscsiPoolOptions options() {
    IscsiPoolOptions o;
    o.name = "pool1";
    o.directory = dir_.path();
    o.portal = "10.0.0.5:3260";
    o.iqn_prefix = kPrefix;
    o.tgt_control = 7;
    o.clock = &clock_;
    return o;
  }

  std::unique_ptr<IscsiPool> openPool(IscsiPoolOptions o) {
    absl::StatusOr<std::unique_ptr<IscsiPool>> pool = IscsiPool::open(runner_, std::move(o));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }
  std::unique_ptr<IscsiPool> openPool() { return openPool(options()); }

  std::string iqn(const std::string& volume) { return std::string(kPrefix) + ":" + volume; }
  std::string file(const std::string& volume) { return dir_.file(volume + ".img"); }
  static std::string cmd(const std::string& rest) { return "tgtadm -C 7 --lld iscsi " + rest; }

  // The tid of the target with `iqn` (0 when none).
  int tidOf(const std::string& target_iqn) {
    for (const auto& [tid, target] : tgtd_.targets()) {
      if (target.iqn == target_iqn) return tid;
    }
    return 0;
  }

  testing::TempDir dir_;
  FakeClock clock_;
  FakeCommandRunner runner_;
  FakeTgtd tgtd_{7};
  std::unique_ptr<IscsiPool> pool_;
};

TEST_F(IscsiPoolTest, CreateMakesTheFileAndOneTargetWithLunOneBoundToAll) {
  absl::StatusOr<VolumeInfo> info = pool_->create("web1", 64 * kMiB);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->size_bytes, 64 * kMiB);
  EXPECT_THAT(runner_.commandLines(),
              ElementsAre(cmd("--op show --mode target"),
                          cmd("--op new --mode target --tid 1 -T " + iqn("web1")),
                          cmd("--op new --mode logicalunit --tid 1 --lun 1 -b " + file("web1")),
                          cmd("--op update --mode logicalunit --tid 1 --lun 1 --params "
                              "thin_provisioning=1"),
                          cmd("--op bind --mode target --tid 1 -I ALL")));
  EXPECT_EQ(runner_.lastCall().options.timeout, absl::Seconds(30));
  FakeTgtd::Target target = tgtd_.targets().at(1);
  EXPECT_EQ(target.iqn, iqn("web1"));
  EXPECT_EQ(target.luns.at(1).path, file("web1"));
  EXPECT_TRUE(target.luns.at(1).thin);
  EXPECT_THAT(target.acl, ElementsAre("ALL"));

  absl::StatusOr<std::string> option = pool_->diskOption("web1");
  ASSERT_TRUE(option.ok()) << option.status();
  EXPECT_EQ(*option, "iscsi=iscsi://10.0.0.5:3260/" + iqn("web1") + "/1");
  EXPECT_TRUE(absl::IsNotFound(pool_->diskOption("web2").status()));
  EXPECT_TRUE(absl::IsAlreadyExists(pool_->create("web1", kMiB).status()));
}

TEST_F(IscsiPoolTest, AllowListBindsAddressesNetworksAndInitiatorNames) {
  IscsiPoolOptions o = options();
  o.allowed_initiators = {"10.0.0.21", "10.0.1.0/24", "iqn.2026-01.org.example:host3"};
  o.thin_provisioning = false;
  std::unique_ptr<IscsiPool> pool = openPool(o);
  ASSERT_TRUE(pool->create("db", kMiB).ok());
  EXPECT_THAT(runner_.commandLines(),
              ElementsAre(cmd("--op show --mode target"),
                          cmd("--op new --mode target --tid 1 -T " + iqn("db")),
                          cmd("--op new --mode logicalunit --tid 1 --lun 1 -b " + file("db")),
                          cmd("--op bind --mode target --tid 1 -I 10.0.0.21"),
                          cmd("--op bind --mode target --tid 1 -I 10.0.1.0/24"),
                          cmd("--op bind --mode target --tid 1 --initiator-name "
                              "iqn.2026-01.org.example:host3")));
}

TEST_F(IscsiPoolTest, TidsSkipThoseOfOtherTargets) {
  tgtd_.addTarget(1, "iqn.2026-01.org.other:a", "/srv/a.img", kMiB);
  tgtd_.addTarget(2, "iqn.2026-01.org.other:b", "/srv/b.img", kMiB);
  tgtd_.addTarget(4, "iqn.2026-01.org.other:c", "/srv/c.img", kMiB);
  ASSERT_TRUE(pool_->create("v1", kMiB).ok());
  ASSERT_TRUE(pool_->create("v2", kMiB).ok());
  EXPECT_EQ(tidOf(iqn("v1")), 3);
  EXPECT_EQ(tidOf(iqn("v2")), 5);
}

TEST_F(IscsiPoolTest, ChoosesAnotherTidWhenSomeoneElseTookIt) {
  tgtd_.raceNextNewTarget(1);  // another tgtadm user creates tid 1 between our show and new
  ASSERT_TRUE(pool_->create("v1", kMiB).ok());
  EXPECT_EQ(tidOf(iqn("v1")), 2);
  EXPECT_EQ(tgtd_.targets().at(1).iqn, "iqn.2026-01.org.someone:else");
}

TEST_F(IscsiPoolTest, ConcurrentCreatesGetDistinctTids) {
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<size_t>(i)] = pool_->create(fmt::format("vol{}", i), kMiB).status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;
  std::map<int, FakeTgtd::Target> targets = tgtd_.targets();
  ASSERT_EQ(targets.size(), static_cast<size_t>(kThreads));
  std::set<std::string> iqns;
  for (const auto& [tid, target] : targets) {
    iqns.insert(target.iqn);
    EXPECT_EQ(target.luns.size(), 1u) << target.iqn;
  }
  EXPECT_EQ(iqns.size(), static_cast<size_t>(kThreads));
  EXPECT_EQ(targets.rbegin()->first, kThreads);  // tids 1..8, none skipped or shared
}

TEST_F(IscsiPoolTest, CreateIsUndoneWhenTheTargetCannotBeMade) {
  tgtd_.failCommandsWith("--mode logicalunit", "invalid request");
  absl::Status created = pool_->create("web1", kMiB).status();
  EXPECT_FALSE(created.ok());
  EXPECT_THAT(created.message(), HasSubstr("creating volume web1 (undone)"));
  EXPECT_THAT(created.message(), HasSubstr("tgtadm: invalid request"));
  EXPECT_THAT(runner_.commandLines().back(), cmd("--op delete --mode target --tid 1 --force"));
  EXPECT_THAT(tgtd_.targets(), IsEmpty());
  EXPECT_TRUE(absl::IsNotFound(pool_->get("web1").status()));
}

TEST_F(IscsiPoolTest, SaysHowToStartTgtdWhenItDoesNotAnswer) {
  runner_.setHandler([](const std::vector<std::string>&, const CommandOptions&) {
    return FakeCommandRunner::exited(
        107, "",
        "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not "
        "connected\n");
  });
  absl::Status created = pool_->create("web1", kMiB).status();
  EXPECT_TRUE(absl::IsUnavailable(created)) << created;
  EXPECT_THAT(created.message(), HasSubstr("tgtd -C 7 --iscsi portal=10.0.0.5:3260"));
  EXPECT_TRUE(absl::IsNotFound(pool_->get("web1").status()));
}

TEST_F(IscsiPoolTest, CreateReplacesAStaleTargetButNotOneInUse) {
  tgtd_.addTarget(3, iqn("web1"), file("web1"), kMiB);  // its file was deleted behind our back
  ASSERT_TRUE(pool_->create("web1", kMiB).ok());
  EXPECT_THAT(runner_.commandLines(),
              ::testing::Contains(cmd("--op delete --mode target --tid 3")));
  EXPECT_EQ(tidOf(iqn("web1")), 1);

  tgtd_.addTarget(4, iqn("web2"), file("web2"), kMiB);
  tgtd_.addSession(4, "iqn.2026-01.org.flotilla:vmm", "10.0.0.21");
  absl::Status in_use = pool_->create("web2", kMiB).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(in_use)) << in_use;
  EXPECT_THAT(in_use.message(), HasSubstr("iqn.2026-01.org.flotilla:vmm (10.0.0.21)"));
  EXPECT_TRUE(absl::IsNotFound(pool_->get("web2").status()));
  EXPECT_EQ(tidOf(iqn("web2")), 4);
}

TEST_F(IscsiPoolTest, RemoveDeletesTargetThenFileAndRefusesWhileInUse) {
  ASSERT_TRUE(pool_->create("web1", kMiB).ok());
  tgtd_.addSession(1, "iqn.2026-01.org.flotilla:vmm", "10.0.0.21");
  absl::Status in_use = pool_->remove("web1");
  EXPECT_TRUE(absl::IsFailedPrecondition(in_use)) << in_use;
  EXPECT_THAT(in_use.message(),
              HasSubstr("volume web1 is in use: iqn.2026-01.org.flotilla:vmm (10.0.0.21) logged "
                        "in to target " +
                        iqn("web1") + "; detach the volume from its VM first"));
  EXPECT_TRUE(pool_->get("web1").ok());

  tgtd_.addTarget(1, iqn("web1"), file("web1"), kMiB);  // the session ended
  runner_.clearCalls();
  ASSERT_TRUE(pool_->remove("web1").ok());
  EXPECT_THAT(runner_.commandLines(), ElementsAre(cmd("--op show --mode target"),
                                                  cmd("--op delete --mode target --tid 1")));
  EXPECT_TRUE(absl::IsNotFound(pool_->get("web1").status()));
  EXPECT_THAT(tgtd_.targets(), IsEmpty());
  EXPECT_TRUE(pool_->remove("web1").ok());  // idempotent
}

TEST_F(IscsiPoolTest, ResizeGrowsTheFileAndRecreatesTheLun) {
  ASSERT_TRUE(pool_->create("web1", 64 * kMiB).ok());
  runner_.clearCalls();
  ASSERT_TRUE(pool_->resize("web1", 256 * kMiB).ok());
  EXPECT_THAT(runner_.commandLines(),
              ElementsAre(cmd("--op show --mode target"),
                          cmd("--op update --mode target --tid 1 -n state -v offline"),
                          cmd("--op delete --mode logicalunit --tid 1 --lun 1"),
                          cmd("--op new --mode logicalunit --tid 1 --lun 1 -b " + file("web1")),
                          cmd("--op update --mode logicalunit --tid 1 --lun 1 --params "
                              "thin_provisioning=1"),
                          cmd("--op update --mode target --tid 1 -n state -v ready")));
  EXPECT_EQ(tgtd_.targets().at(1).state, "ready");
  EXPECT_EQ(pool_->get("web1")->size_bytes, 256 * kMiB);
  EXPECT_EQ(tgtd_.targets().at(1).luns.at(1).size, 256 * kMiB);

  absl::Status shrink = pool_->resize("web1", 64 * kMiB);
  EXPECT_TRUE(absl::IsFailedPrecondition(shrink));
  EXPECT_THAT(shrink.message(), HasSubstr("from 268435456 to 67108864 bytes"));
  EXPECT_TRUE(absl::IsNotFound(pool_->resize("nope", kMiB)));
}

TEST_F(IscsiPoolTest, ResizeWaitsForAnIdleLun) {
  ASSERT_TRUE(pool_->create("web1", 64 * kMiB).ok());
  tgtd_.setLunBusy(3);
  const absl::Duration before = clock_.monotonicNow();
  ASSERT_TRUE(pool_->resize("web1", 128 * kMiB).ok());
  EXPECT_EQ(clock_.monotonicNow() - before, absl::Milliseconds(60));  // 3 retries of 20 ms
  EXPECT_EQ(tgtd_.targets().at(1).luns.at(1).size, 128 * kMiB);
}

TEST_F(IscsiPoolTest, ResizeChangesNothingWhenTheLunStaysBusy) {
  ASSERT_TRUE(pool_->create("web1", 64 * kMiB).ok());
  tgtd_.setLunBusy(1 << 30);
  absl::Status resized = pool_->resize("web1", 128 * kMiB);
  EXPECT_TRUE(absl::IsUnavailable(resized)) << resized;
  EXPECT_THAT(resized.message(), HasSubstr("had commands in flight for 10s; nothing was changed"));
  EXPECT_EQ(pool_->get("web1")->size_bytes, 64 * kMiB);
  EXPECT_EQ(tgtd_.targets().at(1).luns.at(1).size, 64 * kMiB);
  EXPECT_EQ(tgtd_.targets().at(1).state, "ready");  // back online
}

TEST_F(IscsiPoolTest, ResizeToTheSameSizeCompletesAnEarlierHalfDoneResize) {
  ASSERT_TRUE(pool_->create("web1", 64 * kMiB).ok());
  // The LUN could not be re-created and the target stayed offline.
  tgtd_.failCommandsWith("--op new --mode logicalunit", "out of memory");
  tgtd_.failCommandsWith("-v ready", "out of memory");
  absl::Status failed = pool_->resize("web1", 96 * kMiB);
  EXPECT_THAT(failed.message(), HasSubstr("re-creating LUN 1 of target " + iqn("web1")));
  EXPECT_EQ(tgtd_.targets().at(1).state, "offline");
  EXPECT_EQ(tgtd_.targets().at(1).luns.count(1), 0u);
  tgtd_.clearFailures();
  ASSERT_TRUE(pool_->resize("web1", 96 * kMiB).ok());
  EXPECT_EQ(tgtd_.targets().at(1).luns.at(1).size, 96 * kMiB);
  EXPECT_EQ(tgtd_.targets().at(1).state, "ready");

  // An earlier resize grew the file but the LUN still has the old size.
  ASSERT_TRUE(pool_->files().resize("web1", 128 * kMiB).ok());
  runner_.clearCalls();
  ASSERT_TRUE(pool_->resize("web1", 128 * kMiB).ok());
  EXPECT_EQ(tgtd_.targets().at(1).luns.at(1).size, 128 * kMiB);
  runner_.clearCalls();
  ASSERT_TRUE(pool_->resize("web1", 128 * kMiB).ok());
  EXPECT_THAT(runner_.commandLines(), ElementsAre(cmd("--op show --mode target")));
}

TEST_F(IscsiPoolTest, CloneExportsTheCopy) {
  ASSERT_TRUE(pool_->create("golden", 8 * kMiB).ok());
  absl::StatusOr<VolumeInfo> copy = pool_->clone("golden", "web3");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->size_bytes, 8 * kMiB);
  EXPECT_EQ(tgtd_.targets().at(2).iqn, iqn("web3"));
  EXPECT_EQ(tgtd_.targets().at(2).luns.at(1).path, file("web3"));

  tgtd_.failCommandsWith("-T " + iqn("web4"), "invalid request");
  absl::Status failed = pool_->clone("golden", "web4").status();
  EXPECT_THAT(failed.message(), HasSubstr("cloning volume golden to web4 (undone)"));
  EXPECT_TRUE(absl::IsNotFound(pool_->get("web4").status()));
}

TEST_F(IscsiPoolTest, ReconcileRecreatesRepairsAndRemovesOnlyItsOwnTargets) {
  ASSERT_TRUE(pool_->create("a", kMiB).ok());
  ASSERT_TRUE(pool_->create("b", kMiB).ok());
  ASSERT_TRUE(pool_->create("c", kMiB).ok());
  tgtd_.restart();
  // After the restart: someone else's targets, a stale one of ours, one of ours still in use
  // whose file is gone, and b re-created by hand with the wrong file and ACL.
  tgtd_.addTarget(1, "iqn.2026-01.org.other:x", "/srv/x.img", kMiB, {"10.9.9.9"});
  tgtd_.addTarget(2, iqn("gone"), dir_.file("gone.img"), kMiB);
  tgtd_.addTarget(3, iqn("busy"), dir_.file("busy.img"), kMiB);
  tgtd_.addSession(3, "iqn.2026-01.org.flotilla:vmm", "10.0.0.21");
  tgtd_.addTarget(4, iqn("b"), "/srv/wrong.img", kMiB, {"10.1.1.1"});
  tgtd_.addTarget(6, "iqn.2026-01.org.example:pool10:a", "/srv/p10.img", kMiB);  // prefix+"0"
  runner_.clearCalls();

  absl::StatusOr<IscsiReconcileReport> report = pool_->reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->created, ElementsAre("a", "c"));
  EXPECT_THAT(report->repaired, ElementsAre("b"));
  EXPECT_THAT(report->removed, ElementsAre("gone"));
  EXPECT_THAT(report->kept, ElementsAre("busy"));
  EXPECT_THAT(report->failed, IsEmpty());

  std::map<int, FakeTgtd::Target> targets = tgtd_.targets();
  EXPECT_EQ(targets.at(1).iqn, "iqn.2026-01.org.other:x");  // untouched
  EXPECT_THAT(targets.at(1).acl, ElementsAre("10.9.9.9"));
  EXPECT_EQ(targets.at(6).iqn, "iqn.2026-01.org.example:pool10:a");
  EXPECT_EQ(tidOf(iqn("gone")), 0);
  EXPECT_EQ(targets.at(3).iqn, iqn("busy"));
  EXPECT_EQ(targets.at(4).luns.at(1).path, file("b"));
  EXPECT_THAT(targets.at(4).acl, ElementsAre("ALL"));
  EXPECT_EQ(tidOf(iqn("a")), 2);  // freed by "gone" just before
  EXPECT_EQ(tidOf(iqn("c")), 5);
  for (const std::string& line : runner_.commandLines()) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr("--tid 1 "))) << line;
    EXPECT_THAT(line, ::testing::Not(HasSubstr("--tid 6 "))) << line;
  }

  runner_.clearCalls();
  report = pool_->reconcile();  // nothing left to do
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->created, IsEmpty());
  EXPECT_THAT(report->repaired, IsEmpty());
  EXPECT_THAT(runner_.commandLines(),
              ElementsAre(cmd("--op show --mode target"), cmd("--op show --mode portal")));
}

TEST_F(IscsiPoolTest, ReconcileReportsATgtdThatDoesNotListenOnThePortal) {
  ASSERT_TRUE(pool_->create("a", kMiB).ok());
  tgtd_.restart();
  // What tgtd 1.0.85 lists when it could not bind the portal it was given.
  tgtd_.setPortals("Portal: [::]:3260,1\nPortal: 0.0.0.0:3261,1\n");
  absl::StatusOr<IscsiReconcileReport> report = pool_->reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->created, ElementsAre("a"));  // the targets are made all the same
  ASSERT_EQ(report->failed.size(), 1u);
  EXPECT_THAT(report->failed[0], HasSubstr("does not listen on the pool's portal 10.0.0.5:3260"));
  EXPECT_THAT(report->failed[0], HasSubstr("Portal: [::]:3260,1; Portal: 0.0.0.0:3261,1"));
  EXPECT_THAT(report->failed[0], HasSubstr("--iscsi portal=10.0.0.5:3260"));
}

TEST(TgtPortalTest, APortalIsServedByItselfOrItsFamilysWildcardOnItsPort) {
  constexpr char kDefault[] = "Portal: [::]:3260,1\nPortal: 0.0.0.0:3260,1\n";
  EXPECT_TRUE(tgtServesPortal(kDefault, "10.0.0.5:3260"));
  EXPECT_TRUE(tgtServesPortal(kDefault, "[fd00::5]:3260"));
  EXPECT_FALSE(tgtServesPortal(kDefault, "10.0.0.5:3261"));
  EXPECT_TRUE(tgtServesPortal("Portal: 10.0.0.5:3261,1\n", "10.0.0.5:3261"));
  EXPECT_FALSE(tgtServesPortal("Portal: 10.0.0.6:3261,1\n", "10.0.0.5:3261"));
  EXPECT_FALSE(tgtServesPortal("Portal: 10.0.0.5:32610,1\n", "10.0.0.5:3261"));
  EXPECT_FALSE(tgtServesPortal("", "10.0.0.5:3260"));
}

TEST_F(IscsiPoolTest, ReconcileReportsFailuresAndGoesOn) {
  ASSERT_TRUE(pool_->create("a", kMiB).ok());
  ASSERT_TRUE(pool_->create("b", kMiB).ok());
  tgtd_.restart();
  tgtd_.failCommandsWith("-T " + iqn("a"), "out of memory");
  absl::StatusOr<IscsiReconcileReport> report = pool_->reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->created, ElementsAre("b"));
  ASSERT_EQ(report->failed.size(), 1u);
  EXPECT_THAT(report->failed[0], HasSubstr("out of memory"));
}

TEST_F(IscsiPoolTest, OpenChecksTheConfiguration) {
  auto openWith = [&](auto change) {
    IscsiPoolOptions o = options();
    change(o);
    return IscsiPool::open(runner_, o).status();
  };
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.portal = "storage1:3260"; }).message(),
              HasSubstr("the host must be an IP address"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.portal = "10.0.0.5"; }).message(),
              HasSubstr("no port"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.portal = "10.0.0.5:70000"; }).message(),
              HasSubstr("1 to 65535"));
  EXPECT_TRUE(openWith([](IscsiPoolOptions& o) { o.portal = "[fd00::5]:3260"; }).ok());
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.iqn_prefix = "pool1"; }).message(),
              HasSubstr("does not start with 'iqn.'"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.iqn_prefix = "iqn.2026-13.org.x"; }).message(),
              HasSubstr("YYYY-MM"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.iqn_prefix = "iqn.2026-01.Org.x"; }).message(),
              HasSubstr("'O' is not allowed"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.iqn_prefix += ":"; }).message(),
              HasSubstr("ends with ':'"));
  EXPECT_THAT(
      openWith([](IscsiPoolOptions& o) { o.iqn_prefix += std::string(150, 'x'); }).message(),
      HasSubstr("too long"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.allowed_initiators = {"host3"}; }).message(),
              HasSubstr("allowed initiator 'host3'"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.allowed_initiators = {}; }).message(),
              HasSubstr("no allowed initiators"));
  EXPECT_THAT(openWith([](IscsiPoolOptions& o) { o.tgt_control = 40000; }).message(),
              HasSubstr("out of range"));
  EXPECT_THAT(runner_.commandLines(), IsEmpty());  // open() does not talk to tgtd
}

TEST(IscsiPoolClientTest, BuildsUrlsAndLeavesManagementToTheStorageHost) {
  IscsiPoolClientOptions options;
  options.name = "pool1";
  options.portal = "10.0.0.5:3260";
  options.iqn_prefix = kPrefix;
  absl::StatusOr<std::unique_ptr<IscsiPoolClient>> client = IscsiPoolClient::open(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->name(), "pool1");
  EXPECT_EQ(*(*client)->diskOption("web1"),
            "iscsi=iscsi://10.0.0.5:3260/iqn.2026-01.org.example:pool1:web1/1");
  EXPECT_TRUE(absl::IsInvalidArgument((*client)->diskOption("Web1").status()));
  absl::Status create = (*client)->create("web1", kMiB).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(create));
  EXPECT_THAT(create.message(), HasSubstr("served by the storage host at 10.0.0.5:3260: create"));
  EXPECT_TRUE(absl::IsFailedPrecondition((*client)->list().status()));
  EXPECT_TRUE(absl::IsFailedPrecondition((*client)->remove("web1")));

  options.portal = "nas:3260";
  EXPECT_FALSE(IscsiPoolClient::open(options).ok());
}

TEST(TgtShowTest, ParsesCapturedOutput) {
  absl::StatusOr<std::vector<TgtTargetState>> targets = parseTgtTargets(kCapturedShow);
  ASSERT_TRUE(targets.ok()) << targets.status();
  ASSERT_EQ(targets->size(), 2u);
  const TgtTargetState& first = (*targets)[0];
  EXPECT_EQ(first.tid, 1);
  EXPECT_EQ(first.iqn, "iqn.2026-01.org.flotilla.pool:vol-a");
  EXPECT_EQ(first.state, "ready");
  ASSERT_EQ(first.sessions.size(), 1u);
  EXPECT_EQ(first.sessions[0].initiator, "iqn.2008-11.org.linux-kvm");
  EXPECT_THAT(first.sessions[0].addresses, ElementsAre("127.0.0.1"));
  ASSERT_EQ(first.luns.size(), 2u);
  EXPECT_EQ(first.luns[0].type, "controller");
  EXPECT_EQ(first.luns[0].backing_path, "None");
  const TgtLun* disk = first.lun(1);
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->type, "disk");
  EXPECT_EQ(disk->size_mb, 268u);
  EXPECT_EQ(disk->backing_path, "/tmp/stg/a.img");
  EXPECT_TRUE(disk->online);
  EXPECT_FALSE(disk->thin_provisioning);
  EXPECT_THAT(first.acl, ElementsAre("ALL"));
  EXPECT_EQ(first.lun(2), nullptr);

  const TgtTargetState& second = (*targets)[1];
  EXPECT_EQ(second.tid, 5);
  EXPECT_THAT(second.sessions, IsEmpty());
  EXPECT_EQ(second.lun(1)->size_mb, 34u);
  EXPECT_THAT(second.acl, ElementsAre("10.0.0.1", "10.0.0.2", "iqn.2026-01.org.flotilla:host1"));

  // The sizes in the sample were 256 MiB and 32 MiB files.
  EXPECT_EQ(tgtShownMegabytes(256 * kMiB), 268u);
  EXPECT_EQ(tgtShownMegabytes(32 * kMiB), 34u);
  EXPECT_EQ(tgtShownMegabytes(64 * kMiB), 67u);
  EXPECT_EQ(tgtShownMegabytes(0), 0u);
}

TEST(TgtShowTest, ParsesACapturedPoolTargetDuringAResize) {
  absl::StatusOr<std::vector<TgtTargetState>> targets = parseTgtTargets(kCapturedPoolTarget);
  ASSERT_TRUE(targets.ok()) << targets.status();
  ASSERT_EQ(targets->size(), 1u);
  const TgtTargetState& target = targets->front();
  EXPECT_EQ(target.iqn, "iqn.2026-01.org.example:pool1:web1");
  EXPECT_EQ(target.state, "offline");
  ASSERT_EQ(target.sessions.size(), 1u);
  const TgtLun* lun = target.lun(1);
  ASSERT_NE(lun, nullptr);
  EXPECT_TRUE(lun->thin_provisioning);
  EXPECT_EQ(lun->size_mb, tgtShownMegabytes(64 * kMiB));
  EXPECT_EQ(lun->backing_path, "/tmp/stg/web1.img");
  EXPECT_THAT(target.acl, ElementsAre("ALL"));
}

TEST(TgtShowTest, EmptyOutputMeansNoTargetsAndGarbageIsAnError) {
  EXPECT_THAT(*parseTgtTargets(""), IsEmpty());
  EXPECT_THAT(parseTgtTargets("tgtadm: oops\n").status().message(),
              HasSubstr("line 1 ('tgtadm: oops')"));
  EXPECT_FALSE(parseTgtTargets("Target x: iqn.a\n").ok());
  EXPECT_FALSE(parseTgtTargets("    LUN information:\n").ok());
  EXPECT_FALSE(
      parseTgtTargets("Target 1: iqn.a\n    LUN information:\n            Type: disk\n").ok());
}

}  // namespace
}  // namespace flotilla::storage
