// vm migrate --wait and host drain --wait: the fake controller moves the migration or drain
// through scripted states; clusterctl must show each one and end with the right status.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/cli/clusterctl_fixture.h"

namespace flotilla::cli::testing {
namespace {

using ::testing::HasSubstr;

v1::MigrationRecord migrationState(v1::MigrationPhase phase, uint64_t sent = 0, uint32_t rounds = 0,
                                   std::string message = "") {
  v1::MigrationRecord migration;
  migration.set_vm("web1");
  migration.set_source("host-a");
  migration.set_target("host-b");
  migration.set_mode(v1::MIGRATION_MODE_LIVE);
  migration.set_phase(phase);
  migration.set_bytes_sent(sent);
  migration.set_rounds(rounds);
  migration.set_message(std::move(message));
  return migration;
}

v1::DrainRecord drainState(v1::DrainPhase phase,
                           std::vector<std::pair<std::string, v1::DrainVm::State>> vms,
                           std::string failure = "") {
  v1::DrainRecord drain;
  drain.set_phase(phase);
  for (const auto& [name, state] : vms) {
    v1::DrainVm* vm = drain.add_vms();
    vm->set_vm(name);
    vm->set_state(state);
    if (state == v1::DrainVm::STATE_FAILED) vm->set_message(failure);
  }
  return drain;
}

TEST_F(ClusterctlTest, MigrateWaitFollowsEveryPhaseToSuccess) {
  v1::MigrationRecord succeeded = migrationState(v1::MIGRATION_PHASE_SUCCEEDED, 300 << 20, 3);
  succeeded.set_downtime_ms(1.5);
  fake().scriptMigration({
      migrationState(v1::MIGRATION_PHASE_PREPARING),
      migrationState(v1::MIGRATION_PHASE_TRANSFERRING, 100 << 20, 1),
      migrationState(v1::MIGRATION_PHASE_TRANSFERRING, 260 << 20, 2),
      migrationState(v1::MIGRATION_PHASE_SWITCHING, 300 << 20, 3),
      succeeded,
  });
  RunResult result = run({"vm", "migrate", "web1", "--to", "host-b", "--wait"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out,
            "migration/web1-1 created: vm web1 from host-a to host-b (live)\n"
            "migration/web1-1: Pending to host-b\n"
            "migration/web1-1: Preparing to host-b\n"
            "migration/web1-1: Transferring to host-b, 100M sent, round 1\n"
            "migration/web1-1: Transferring to host-b, 260M sent, round 2\n"
            "migration/web1-1: Switching to host-b, 300M sent, round 3\n"
            "migration/web1-1: Succeeded to host-b, 300M sent, round 3, downtime 1.5ms\n"
            "migration/web1-1 succeeded: vm web1 runs on host-b (downtime 1.5ms)\n");
  EXPECT_EQ(result.err, "");
}

TEST_F(ClusterctlTest, MigrateWaitExitsNonZeroWhenTheMigrationFails) {
  fake().scriptMigration({
      migrationState(v1::MIGRATION_PHASE_PREPARING),
      migrationState(v1::MIGRATION_PHASE_TRANSFERRING, 50 << 20, 1),
      migrationState(v1::MIGRATION_PHASE_FAILED, 50 << 20, 1,
                     "target host-b: connection reset during round 1"),
  });
  RunResult result = run({"vm", "migrate", "web1", "--to", "host-b", "--wait"});
  EXPECT_EQ(result.code, 1) << result;
  EXPECT_EQ(result.err,
            "clusterctl: migration web1-1 failed: target host-b: connection reset during round "
            "1; vm web1 still runs on host-a\n");
  EXPECT_THAT(result.out, HasSubstr("migration/web1-1: Failed to host-b"));
}

TEST_F(ClusterctlTest, MigrateWaitReportsACancelledMigration) {
  fake().scriptMigration({migrationState(v1::MIGRATION_PHASE_CANCELLED)});
  RunResult result = run({"vm", "migrate", "web1", "--wait"});
  EXPECT_EQ(result.code, 1) << result;
  EXPECT_THAT(result.err,
              HasSubstr("migration web1-1 was cancelled; vm web1 still runs on host-a"));
}

TEST_F(ClusterctlTest, MigrateWaitPollsAControllerWithoutWatch) {
  fake().disableWatch();
  fake().scriptMigration({migrationState(v1::MIGRATION_PHASE_TRANSFERRING, 10 << 20, 1),
                          migrationState(v1::MIGRATION_PHASE_SUCCEEDED, 20 << 20, 2)});
  RunResult result = run({"vm", "migrate", "web1", "--to", "host-b", "--wait"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("migration/web1-1: Transferring to host-b, 10M sent"));
  EXPECT_THAT(result.out, HasSubstr("migration/web1-1 succeeded"));
  EXPECT_EQ(fake().callCount("GetMigration"), 3);
}

TEST_F(ClusterctlTest, MigrateWaitDrawsABarOnATerminal) {
  tty_ = true;
  fake().scriptMigration({migrationState(v1::MIGRATION_PHASE_TRANSFERRING, 128 << 20, 1),
                          migrationState(v1::MIGRATION_PHASE_SUCCEEDED, 256 << 20, 2)});
  RunResult result = run({"vm", "migrate", "web1", "--wait"});
  ASSERT_EQ(result.code, 0) << result;
  // Redrawn in place: carriage return + erase line, a bar, the percentage.
  EXPECT_THAT(result.out, HasSubstr("\r\033[Kmigration/web1-1 ["));
  EXPECT_THAT(result.out, HasSubstr("] 100% Succeeded"));
  // Half the VM's 256M memory sent: the bar is half-way through the transfer.
  EXPECT_THAT(result.out, HasSubstr(" 50% Transferring"));
}

TEST_F(ClusterctlTest, MigrateWaitWithJsonPrintsTheFinalRecord) {
  fake().scriptMigration({migrationState(v1::MIGRATION_PHASE_SUCCEEDED, 1 << 20, 1)});
  RunResult result = run({"vm", "migrate", "web1", "--wait", "-o", "json"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(nlohmann::json::parse(result.out).at("phase"), "MIGRATION_PHASE_SUCCEEDED");
  EXPECT_THAT(result.err, HasSubstr("migration/web1-1: Succeeded"));
}

TEST_F(ClusterctlTest, DrainWaitShowsProgressUntilSuccess) {
  fake().scriptDrain({
      drainState(v1::DRAIN_PHASE_RUNNING,
                 {{"web1", v1::DrainVm::STATE_MIGRATING}, {"web2", v1::DrainVm::STATE_MIGRATING}}),
      drainState(v1::DRAIN_PHASE_RUNNING,
                 {{"web1", v1::DrainVm::STATE_DONE}, {"web2", v1::DrainVm::STATE_MIGRATING}}),
      drainState(v1::DRAIN_PHASE_SUCCEEDED,
                 {{"web1", v1::DrainVm::STATE_DONE}, {"web2", v1::DrainVm::STATE_DONE}}),
  });
  RunResult result = run({"host", "drain", "host-a", "--allow-cold", "--wait"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_TRUE(fake().lastRequest<v1::DrainHostRequest>("DrainHost")->allow_cold());
  EXPECT_EQ(result.out,
            "drain/host-a started: host cordoned, 2 VM(s) to move\n"
            "drain/host-a: Running, 0/2 done, 0 failed\n"
            "drain/host-a: Running, 1/2 done, 0 failed\n"
            "drain/host-a: Succeeded, 2/2 done, 0 failed\n"
            "drain/host-a succeeded: 2 VM(s) moved; the host is empty and cordoned\n");
}

TEST_F(ClusterctlTest, DrainWaitListsEveryVmThatCouldNotLeave) {
  v1::DrainRecord failed =
      drainState(v1::DRAIN_PHASE_FAILED,
                 {{"web1", v1::DrainVm::STATE_DONE}, {"web2", v1::DrainVm::STATE_FAILED}},
                 "no host has 256M free memory and anti-affinity group web allows");
  failed.set_message("1 VM cannot leave");
  fake().scriptDrain({
      drainState(v1::DRAIN_PHASE_RUNNING,
                 {{"web1", v1::DrainVm::STATE_DONE}, {"web2", v1::DrainVm::STATE_MIGRATING}}),
      failed,
  });
  RunResult result = run({"host", "drain", "host-a", "--wait"});
  EXPECT_EQ(result.code, 1) << result;
  EXPECT_EQ(result.err,
            "clusterctl: drain of host host-a failed: 1 of 2 VM(s) could not leave (1 VM cannot "
            "leave)\n"
            "  vm web2: no host has 256M free memory and anti-affinity group web allows\n");
  EXPECT_THAT(result.out, HasSubstr("drain/host-a: Failed, 1/2 done, 1 failed: 1 VM cannot leave"));
}

TEST_F(ClusterctlTest, DrainWaitDrawsDoneOverTotalOnATerminal) {
  tty_ = true;
  fake().scriptDrain({
      drainState(v1::DRAIN_PHASE_RUNNING,
                 {{"web1", v1::DrainVm::STATE_DONE}, {"web2", v1::DrainVm::STATE_MIGRATING}}),
      drainState(v1::DRAIN_PHASE_SUCCEEDED,
                 {{"web1", v1::DrainVm::STATE_DONE}, {"web2", v1::DrainVm::STATE_DONE}}),
  });
  RunResult result = run({"host", "drain", "host-a", "--wait"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("[###############...............]  50% Running, 1/2 done"));
  EXPECT_THAT(result.out, HasSubstr("100% Succeeded, 2/2 done, 0 failed\n"));
}

TEST_F(ClusterctlTest, DrainOfAHostBeingDrainedIsAConflict) {
  ASSERT_EQ(run({"host", "drain", "host-a"}).code, 0);
  RunResult again = run({"host", "drain", "host-a"});
  EXPECT_EQ(again.code, 5) << again;
  EXPECT_EQ(again.err, "clusterctl: host host-a is already being drained\n");
  RunResult undrain = run({"host", "undrain", "host-a"});
  EXPECT_EQ(undrain.code, 0) << undrain;
}

TEST_F(ClusterctlTest, CtrlCStopsWaitingWithoutFailingTheDrain) {
  Interrupt interrupt;
  interrupt_ = &interrupt;
  // No script: the drain stays Running.
  RunResult result;
  std::thread waiter([&] { result = run({"host", "drain", "host-a", "--wait"}); });
  fake().waitDelivered(1);
  interrupt.trigger();
  waiter.join();
  EXPECT_EQ(result.code, 130) << result;
  EXPECT_THAT(result.err, HasSubstr("stopped waiting; the drain goes on"));
}

}  // namespace
}  // namespace flotilla::cli::testing
