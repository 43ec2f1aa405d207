// Simulated live migration between simulated hosts, driven as the controller drives the real
// agents: PrepareIncoming on the target, StartMigration on the source, GetMigration until it
// ends, then Finish (or Abort) on both with their roles. Time is a FakeClock, so that "the
// transfer took its 200 ms" is exact.
#include <memory>

#include "common/testing/fake_clock.h"
#include "controller/sim/simulator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/controller/sim/sim_client.h"

namespace flotilla::sim {
namespace {

using flotilla::v1::MigrationEndRequest;
using flotilla::v1::VmState;
using ::testing::HasSubstr;
using testing::SimClient;
using testing::SimFixture;

constexpr char kA[] = "sim-0001";
constexpr char kB[] = "sim-0002";
constexpr auto kSource = MigrationEndRequest::ROLE_SOURCE;
constexpr auto kTarget = MigrationEndRequest::ROLE_TARGET;

class SimMigrationTest : public SimFixture {
 protected:
  void SetUp() override {
    SimFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(client_->createVm(kA, "web-1", 1024, true).ok());
  }

  // Prepare on B, start on A.
  flotilla::v1::PrepareIncomingResponse startToB() {
    auto target = client_->prepare(kB, "web-1", 1024);
    EXPECT_TRUE(target.ok()) << target.status();
    if (!target.ok()) return {};
    absl::Status started = client_->startMigration(kA, "web-1", *target);
    EXPECT_TRUE(started.ok()) << started;
    return *target;
  }

  std::string phase(const char* host) {
    auto status = client_->migration(host, "web-1");
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? status->phase() : "";
  }
};

TEST_F(SimMigrationTest, FinishOnBothMovesTheVm) {
  EXPECT_EQ(phase(kA), "idle");
  auto target = client_->prepare(kB, "web-1", 1024);
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_THAT(target->address(), HasSubstr("127.0.0.1:72"));
  EXPECT_EQ(target->token().size(), 32u);
  auto incoming = client_->getVm(kB, "web-1");
  ASSERT_TRUE(incoming.ok());
  EXPECT_TRUE(incoming->incoming());
  EXPECT_EQ(incoming->state(), VmState::VM_STATE_MIGRATING);
  EXPECT_EQ(phase(kB), "waiting");
  // The incoming VM holds its memory on the target.
  EXPECT_EQ(sim_->host(kB)->memoryInUse(), uint64_t{1024} << 20);

  ASSERT_TRUE(client_->startMigration(kA, "web-1", *target).ok());
  EXPECT_EQ(phase(kA), "precopy");
  EXPECT_EQ(phase(kB), "memory");
  EXPECT_EQ(client_->getVm(kA, "web-1")->state(), VmState::VM_STATE_MIGRATING);
  // Neither side may be finished before the transfer completed.
  EXPECT_EQ(client_->finish(kB, "web-1", kTarget).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->finish(kA, "web-1", kSource).status().code(),
            absl::StatusCode::kFailedPrecondition);

  clock_.advance(absl::Milliseconds(200));
  auto done = client_->migration(kA, "web-1");
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->phase(), "completed");
  EXPECT_EQ(done->role(), "source");
  EXPECT_EQ(done->bytes_sent(), uint64_t{1024} << 20);
  EXPECT_GT(done->downtime_us(), 0u);
  EXPECT_EQ(phase(kB), "resumed");
  auto source_vm = client_->getVm(kA, "web-1");
  EXPECT_EQ(source_vm->state(), VmState::VM_STATE_STOPPED);
  EXPECT_THAT(source_vm->message(), HasSubstr("migrated away"));
  EXPECT_EQ(sim_->host(kA)->memoryInUse(), 0u);

  auto finished_target = client_->finish(kB, "web-1", kTarget);
  ASSERT_TRUE(finished_target.ok()) << finished_target.status();
  EXPECT_EQ(finished_target->state(), VmState::VM_STATE_RUNNING);
  EXPECT_FALSE(finished_target->incoming());
  auto finished_source = client_->finish(kA, "web-1", kSource);
  ASSERT_TRUE(finished_source.ok()) << finished_source.status();
  EXPECT_EQ(client_->getVm(kA, "web-1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sim_->fleet().hostsOf("web-1"), std::vector<std::string>{kB});

  // Finish is idempotent on both sides.
  EXPECT_TRUE(client_->finish(kA, "web-1", kSource).ok());
  auto again = client_->finish(kB, "web-1", kTarget);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state(), VmState::VM_STATE_RUNNING);
  EXPECT_EQ(sim_->stats().migrations, 0u);  // both sides let go

  // The VM runs on B like any other: it can move on.
  auto onward = client_->prepare("sim-0003", "web-1", 1024);
  ASSERT_TRUE(onward.ok());
  EXPECT_TRUE(client_->startMigration(kB, "web-1", *onward).ok());
}

TEST_F(SimMigrationTest, InjectedFailureLeavesTheVmOnTheSource) {
  sim_->failNextMigration("web-1");
  startToB();
  clock_.advance(absl::Milliseconds(200));
  auto failed = client_->migration(kA, "web-1");
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->phase(), "failed");
  EXPECT_THAT(failed->error(), HasSubstr("injected"));
  EXPECT_EQ(phase(kB), "failed");
  // The incoming VMM is gone; the source runs on.
  EXPECT_EQ(client_->getVm(kB, "web-1")->state(), VmState::VM_STATE_FAILED);
  EXPECT_EQ(client_->finish(kB, "web-1", kTarget).status().code(),
            absl::StatusCode::kFailedPrecondition);

  auto aborted_source = client_->abort(kA, "web-1", kSource);
  ASSERT_TRUE(aborted_source.ok()) << aborted_source.status();
  EXPECT_EQ(aborted_source->state(), VmState::VM_STATE_RUNNING);
  ASSERT_TRUE(client_->abort(kB, "web-1", kTarget).ok());
  EXPECT_EQ(client_->getVm(kB, "web-1").status().code(), absl::StatusCode::kNotFound);
  // Abort is idempotent.
  EXPECT_TRUE(client_->abort(kB, "web-1", kTarget).ok());
  EXPECT_EQ(client_->abort(kA, "web-1", kSource)->state(), VmState::VM_STATE_RUNNING);
  EXPECT_EQ(sim_->stats().migrations, 0u);

  // The failure was for one migration only.
  startToB();
  clock_.advance(absl::Milliseconds(200));
  EXPECT_EQ(phase(kA), "completed");
}

TEST_F(SimMigrationTest, AbortOnTheSourceCancelsATransfer) {
  startToB();
  clock_.advance(absl::Milliseconds(100));
  auto aborted = client_->abort(kA, "web-1", kSource);
  ASSERT_TRUE(aborted.ok()) << aborted.status();
  EXPECT_EQ(aborted->state(), VmState::VM_STATE_RUNNING);
  EXPECT_EQ(aborted->message(), "migration aborted");
  clock_.advance(absl::Seconds(1));
  // It does not complete later.
  EXPECT_EQ(client_->getVm(kA, "web-1")->state(), VmState::VM_STATE_RUNNING);
  EXPECT_EQ(phase(kB), "failed");
  ASSERT_TRUE(client_->abort(kB, "web-1", kTarget).ok());
  EXPECT_EQ(sim_->fleet().hostsOf("web-1"), std::vector<std::string>{kA});
}

TEST_F(SimMigrationTest, AbortOnTheTargetFailsTheSourceSide) {
  startToB();
  ASSERT_TRUE(client_->abort(kB, "web-1", kTarget).ok());
  auto status = client_->migration(kA, "web-1");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->phase(), "failed");
  EXPECT_THAT(status->error(), HasSubstr("aborted"));
  EXPECT_EQ(client_->abort(kA, "web-1", kSource)->state(), VmState::VM_STATE_RUNNING);
}

TEST_F(SimMigrationTest, AKilledTargetFailsTheMigration) {
  startToB();
  ASSERT_TRUE(sim_->killHost(kB).ok());
  auto status = client_->migration(kA, "web-1");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->phase(), "failed");
  EXPECT_THAT(status->error(), HasSubstr("sim-0002"));
  EXPECT_EQ(client_->abort(kA, "web-1", kSource)->state(), VmState::VM_STATE_RUNNING);
}

TEST_F(SimMigrationTest, MisuseGetsClearErrors) {
  // No incoming VM behind that token.
  flotilla::v1::PrepareIncomingResponse bogus;
  bogus.set_address("127.0.0.1:7200");
  bogus.set_token("00");
  absl::Status refused = client_->startMigration(kA, "web-1", bogus);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("PrepareIncoming"));

  // A target must not hold the VM already; a VM is migrated once at a time.
  EXPECT_EQ(client_->prepare(kA, "web-1", 1024).status().code(), absl::StatusCode::kAlreadyExists);
  auto target = startToB();
  EXPECT_EQ(client_->startMigration(kA, "web-1", target).code(), absl::StatusCode::kAlreadyExists);
  // An incoming VM cannot be started; an unknown role is refused.
  EXPECT_EQ(client_->startVm(kB, "web-1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client_->finish(kA, "web-1", MigrationEndRequest::ROLE_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Not running: nothing to migrate.
  ASSERT_TRUE(client_->createVm(kA, "off", 512, false).ok());
  auto other = client_->prepare(kB, "off", 512);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(client_->startMigration(kA, "off", *other).code(),
            absl::StatusCode::kFailedPrecondition);
  // A target without the memory for it.
  ASSERT_TRUE(client_->createVm("sim-0003", "hog", 3584, true).ok());
  EXPECT_EQ(client_->prepare("sim-0003", "web-1", 1024).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(SimMigrationRealClockTest, CompletesAfterItsDuration) {
  SimulatorOptions options;
  options.hosts = 2;
  options.migration_duration = absl::Milliseconds(20);
  auto sim = Simulator::start(options);
  ASSERT_TRUE(sim.ok()) << sim.status();
  SimClient client((*sim)->address());
  ASSERT_TRUE(client.createVm(kA, "web-1", 512, true).ok());
  auto target = client.prepare(kB, "web-1", 512);
  ASSERT_TRUE(target.ok());
  ASSERT_TRUE(client.startMigration(kA, "web-1", *target).ok());
  // Polled as the controller polls; the bound only keeps a broken simulator from hanging.
  std::string phase;
  for (int i = 0; i < 3000 && phase != "completed"; ++i) {
    auto status = client.migration(kA, "web-1");
    ASSERT_TRUE(status.ok());
    phase = status->phase();
    ASSERT_NE(phase, "failed") << status->error();
    if (phase != "completed") absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(phase, "completed");
  ASSERT_TRUE(client.finish(kB, "web-1", kTarget).ok());
  ASSERT_TRUE(client.finish(kA, "web-1", kSource).ok());
  EXPECT_EQ((*sim)->fleet().hostsOf("web-1"), std::vector<std::string>{kB});
}

}  // namespace
}  // namespace flotilla::sim
