// The drbdadm sequences a VM's life produces on both hosts of a DRBD pool (node-agent/
// vm_disks.h over PoolStorage, the agent's VmStorage): create/start, stop, a live migration
// that finishes and one that is aborted, on a VM with a DRBD disk and a local disk; nothing
// for VMs without DRBD disks. The pools run over sparse files in temporary directories with
// losetup and drbdadm answered by a recording FakeCommandRunner.
#include "node-agent/vm_disks.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/testing/fake_command_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node-agent/pool_storage.h"
#include "storage/local_dir_pool.h"
#include "tests/support/test_env.h"

namespace flotilla::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// One host: PoolStorage with the DRBD pool "rep" (alpha node 0, beta node 1) and a local pool.
class TestHost {
 public:
  explicit TestHost(const std::string& name) : name_(name) {
    runner_.setHandler([this](const std::vector<std::string>& argv, const CommandOptions&) {
      if (argv[0] == "losetup" && argv[1] == "-f") {
        return FakeCommandRunner::exited(0, "/dev/loop3\n");
      }
      if (argv[0] == "drbdadm" && fail_ == formatCommandLine(drbdadmArgs(argv))) {
        return FakeCommandRunner::exited(11, "", "refused\n");
      }
      return FakeCommandRunner::exited(0);
    });
    auto backing = storage::LoopFileBacking::open(runner_, {"rep", dir_.file("rep"), "losetup"});
    EXPECT_TRUE(backing.ok()) << backing.status();
    storage::DrbdPoolOptions options;
    options.name = "rep";
    const storage::DrbdPoolNode alpha{"alpha", "10.0.0.1", 0}, beta{"beta", "10.0.0.2", 1};
    options.local = name == "alpha" ? alpha : beta;
    options.peer = name == "alpha" ? beta : alpha;
    options.resource_dir = dir_.file("resources");
    auto drbd = storage::DrbdPool::open(runner_, options, std::move(*backing));
    EXPECT_TRUE(drbd.ok()) << drbd.status();
    auto created = (*drbd)->create("web1", 1 << 20, storage::DrbdVolumePlacement{100, 7789});
    EXPECT_TRUE(created.ok()) << created.status();
    pools_.add(std::move(*drbd));
    auto local = storage::LocalDirPool::open({"local", dir_.file("local"), true});
    EXPECT_TRUE(local.ok()) << local.status();
    EXPECT_TRUE((*local)->create("data", 1 << 20).ok());
    pools_.add(std::unique_ptr<storage::VolumePool>(std::move(*local)));
    runner_.clearCalls();
  }

  // The event's drbdadm calls ("drbdadm ARGS", without -c FILE).
  std::vector<std::string> run(const flotilla::v1::AgentVm& vm, DiskEvent event) {
    runner_.clearCalls();
    status_ = runDiskEvent(pools_, vm, event);
    EXPECT_TRUE(status_.ok()) << name_ << ": " << status_;
    std::vector<std::string> lines;
    for (const FakeCommandRunner::Call& call : runner_.calls()) {
      if (call.argv[0] == "drbdadm") lines.push_back(formatCommandLine(drbdadmArgs(call.argv)));
    }
    return lines;
  }

  static std::vector<std::string> drbdadmArgs(std::vector<std::string> argv) {
    if (argv.size() > 2 && argv[1] == "-c") argv.erase(argv.begin() + 1, argv.begin() + 3);
    return argv;
  }

  PoolStorage& pools() { return pools_; }
  void failOn(std::string command) { fail_ = std::move(command); }
  absl::Status status_;

 private:
  std::string name_;
  testing::TempDir dir_;
  FakeCommandRunner runner_;
  PoolStorage pools_;
  std::string fail_;
};

flotilla::v1::AgentVm vmWith(std::vector<std::pair<std::string, std::string>> disks) {
  flotilla::v1::AgentVm vm;
  vm.set_name("web");
  for (const auto& [pool, volume] : disks) {
    flotilla::v1::AgentDisk* disk = vm.add_disks();
    disk->set_pool(pool);
    disk->set_volume(volume);
  }
  return vm;
}

class VmDisksTest : public ::testing::Test {
 protected:
  TestHost alpha_{"alpha"};
  TestHost beta_{"beta"};
  const flotilla::v1::AgentVm vm_ = vmWith({{"local", "data"}, {"rep", "web1"}});
};

TEST_F(VmDisksTest, StartAndStop) {
  EXPECT_THAT(alpha_.run(vm_, DiskEvent::kBeforeVmmStart), ElementsAre("drbdadm primary rep-web1"));
  EXPECT_THAT(alpha_.run(vm_, DiskEvent::kAfterVmmStopped),
              ElementsAre("drbdadm secondary rep-web1"));
  EXPECT_EQ(*alpha_.pools().diskOption("rep", "web1"), "path=/dev/drbd100");
}

TEST_F(VmDisksTest, MigrationThatFinishes) {
  // In the controller's order: PrepareOutgoing (source), PrepareIncoming (target), ...,
  // FinishMigration on the target, then on the source.
  EXPECT_THAT(alpha_.run(vm_, DiskEvent::kPrepareOutgoing),
              ElementsAre("drbdadm net-options --allow-two-primaries=yes rep-web1"));
  EXPECT_THAT(beta_.run(vm_, DiskEvent::kPrepareIncoming),
              ElementsAre("drbdadm net-options --allow-two-primaries=yes rep-web1",
                          "drbdadm primary rep-web1"));
  EXPECT_THAT(beta_.run(vm_, DiskEvent::kFinishTarget),
              ElementsAre("drbdadm net-options --allow-two-primaries=no rep-web1"));
  EXPECT_THAT(alpha_.run(vm_, DiskEvent::kFinishSource),
              ElementsAre("drbdadm secondary rep-web1",
                          "drbdadm net-options --allow-two-primaries=no rep-web1"));
  // Again (a retried FinishMigration): the same idempotent steps.
  EXPECT_THAT(alpha_.run(vm_, DiskEvent::kFinishSource),
              ElementsAre("drbdadm secondary rep-web1",
                          "drbdadm net-options --allow-two-primaries=no rep-web1"));
}

TEST_F(VmDisksTest, MigrationThatIsAborted) {
  alpha_.run(vm_, DiskEvent::kPrepareOutgoing);
  beta_.run(vm_, DiskEvent::kPrepareIncoming);
  // The controller aborts the source first: DRBD refuses to clear allow-two-primaries while
  // both are primary. That side's step is best effort; the target's, after its demotion, ends
  // dual-primary.
  alpha_.failOn("drbdadm net-options --allow-two-primaries=no rep-web1");
  EXPECT_THAT(alpha_.run(vm_, DiskEvent::kAbortSource),
              ElementsAre("drbdadm net-options --allow-two-primaries=no rep-web1"));
  EXPECT_THAT(beta_.run(vm_, DiskEvent::kAbortTarget),
              ElementsAre("drbdadm secondary rep-web1",
                          "drbdadm net-options --allow-two-primaries=no rep-web1"));
  // A failure of a step that matters is returned, naming the VM, the disk and the event.
  beta_.failOn("drbdadm secondary rep-web1");
  absl::Status failed = runDiskEvent(beta_.pools(), vm_, DiskEvent::kAbortTarget);
  EXPECT_THAT(failed.message(), HasSubstr("VM 'web' disk rep/web1, aborting its migration"));
  EXPECT_THAT(failed.message(), HasSubstr("refused"));
}

TEST_F(VmDisksTest, NothingForOtherPools) {
  const flotilla::v1::AgentVm local = vmWith({{"local", "data"}});
  for (DiskEvent event :
       {DiskEvent::kBeforeVmmStart, DiskEvent::kAfterVmmStopped, DiskEvent::kPrepareOutgoing,
        DiskEvent::kPrepareIncoming, DiskEvent::kFinishSource, DiskEvent::kFinishTarget,
        DiskEvent::kAbortSource, DiskEvent::kAbortTarget}) {
    EXPECT_THAT(alpha_.run(local, event), IsEmpty()) << diskEventName(event);
  }
  // A pool no longer configured: no step (the disk option recorded for the VM decides).
  const flotilla::v1::AgentVm lost = vmWith({{"gone", "x"}});
  EXPECT_TRUE(runDiskEvent(alpha_.pools(), lost, DiskEvent::kBeforeVmmStart).ok());
  EXPECT_TRUE(runDiskEvent(alpha_.pools(), lost, DiskEvent::kAbortTarget).ok());
  // A DRBD volume that does not exist: starting fails; the steps on the way out succeed.
  const flotilla::v1::AgentVm missing = vmWith({{"rep", "nope"}});
  EXPECT_TRUE(absl::IsNotFound(runDiskEvent(alpha_.pools(), missing, DiskEvent::kBeforeVmmStart)));
  EXPECT_TRUE(runDiskEvent(alpha_.pools(), missing, DiskEvent::kAfterVmmStopped).ok());
  EXPECT_TRUE(runDiskEvent(alpha_.pools(), missing, DiskEvent::kAbortTarget).ok());
}

}  // namespace
}  // namespace flotilla::agent
