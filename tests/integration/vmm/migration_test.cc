// Live migration between two flotilla-vmm processes on /dev/kvm, over loopback: a counter
// guest (every page of its region incremented pass after pass, each checked against the pass
// it expects: a page lost or stale in the migration is an "error counter mismatch" line)
// migrated back and forth, over one stream and over several, and the failures that must leave
// it running at the source: a target that is not there, a wrong token, a target started for
// another memory size, a target killed during the transfer or at each point of the
// switchover (the VMM's test hook stops it there, docs/migration.md "Test hook").
#include <signal.h>

#include <string>
#include <vector>

#include "common/files.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "migration/test_hook.h"
#include "tests/integration/vmm/migration_client.h"
#include "tests/support/guest_console.h"
#include "tests/support/test_env.h"
#include "tests/support/vmm_process.h"
#include "vmm/exit_codes.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::TempDir;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kVmm[] = FLOTILLA_VMM;
// VMMs start through env(1), which can set the test hook's variable for them alone.
constexpr char kEnv[] = "/usr/bin/env";
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kToken[] = "test-token-0123456789";
constexpr char kMemory[] = "256M";

// env's arguments: the test hook's variable when `stop_at` names a point, then `command`.
std::vector<std::string> withStopPoint(const std::string& stop_at,
                                       std::vector<std::string> command) {
  if (!stop_at.empty()) {
    command.insert(command.begin(),
                   fmt::format("{}={}", ::flotilla::migration::kTestStopVariable, stop_at));
  }
  return command;
}

// Waits until the VMM stopped itself at its test hook's point (state T in /proc/PID/stat).
absl::Status waitStopped(VmmProcess& vmm) {
  const std::string stat = fmt::format("/proc/{}/stat", vmm.process().pid());
  for (int i = 0; i < 6000; ++i) {
    auto text = readFileToString(stat);
    if (!text.ok()) return text.status();
    // "PID (comm) STATE ...": the state follows the last ')'.
    const size_t paren = text->rfind(')');
    if (paren != std::string::npos && paren + 2 < text->size() && (*text)[paren + 2] == 'T') {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      fmt::format("the VMM did not stop at its test hook within 60 s; log:\n{}", vmm.log()));
}

uint64_t lastCounterPass(const std::string& serial) {
  uint64_t last = 0;
  for (const std::string& line : ::flotilla::testing::linesStartingWith(
           ::flotilla::testing::guestProtocolLines(serial), "counter pass=")) {
    last = std::max(last, ::flotilla::testing::numberAfter(" " + line, "pass"));
  }
  return last;
}

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(::flotilla::testing::requireKvm().ok()); }

  // `stop_at`: the test hook's point (migration/test_hook.h) where this VMM stops itself.
  std::unique_ptr<VmmProcess> startSource(const std::string& vcpus = "1",
                                          const std::string& stop_at = "") {
    auto vmm = VmmProcess::start(
        kEnv,
        withStopPoint(stop_at, {kVmm, "--kernel", kGuest, "--memory", kMemory, "--vcpus", vcpus,
                                "--cmdline", "workload=counter counter_mib=32"}),
        dir_, fmt::format("vm{}", count_++));
    EXPECT_TRUE(vmm.ok()) << vmm.status();
    if (!vmm.ok()) return nullptr;
    auto counting = (*vmm)->waitForSerialCount("counter pass=", 2, absl::Minutes(1));
    EXPECT_TRUE(counting.ok()) << counting.status();
    return std::move(*vmm);
  }

  // A VMM waiting for a migration on a free port; `port` gets it.
  std::unique_ptr<VmmProcess> startTarget(uint16_t& port, const std::string& memory = kMemory,
                                          const std::string& vcpus = "1",
                                          const std::string& stop_at = "") {
    auto free_port = ::flotilla::testing::pickFreePort();
    EXPECT_TRUE(free_port.ok()) << free_port.status();
    port = *free_port;
    auto vmm = VmmProcess::start(
        kEnv,
        withStopPoint(stop_at, {kVmm, "--incoming", fmt::format("tcp:127.0.0.1:{}", port),
                                "--migration-token", kToken, "--memory", memory, "--vcpus", vcpus}),
        dir_, fmt::format("vm{}", count_++));
    EXPECT_TRUE(vmm.ok()) << vmm.status();
    if (!vmm.ok()) return nullptr;
    expectListening(**vmm);
    return std::move(*vmm);
  }

  grpc::Status migrate(VmmProcess& source, uint16_t port, MigrationOptions options = {}) {
    if (options.token.empty()) options.token = kToken;
    return sendMigration(source, port, options);
  }

  // Polls MigrateStatus until the phase is final; "" if the VMM went away first (a VMM whose
  // migration completed exits).
  std::string finalPhase(VmmProcess& source, flotilla::v1::MigrationStatus* last = nullptr) {
    auto api = source.api();
    if (!api.ok()) return "";
    for (int i = 0; i < 6000; ++i) {
      flotilla::v1::MigrationStatus status;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      if (!(*api)->MigrateStatus(&context, {}, &status).ok()) return "";
      if (last != nullptr) *last = status;
      if (status.phase() == "completed" || status.phase() == "failed" ||
          status.phase() == "unknown") {
        return status.phase();
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return "timeout";
  }

  TempDir dir_;
  int count_ = 0;
};

// The guest counts on at `target`, from at least `before`, every page checked.
void expectCountingOn(VmmProcess& target, uint64_t before) {
  auto counting = target.waitForSerialCount("counter pass=", 2, absl::Minutes(1));
  ASSERT_TRUE(counting.ok()) << counting.status() << target.log();
  EXPECT_THAT(*counting, Not(HasSubstr("error"))) << target.log();
  EXPECT_THAT(*counting, Not(HasSubstr("ready"))) << "it continued, it did not boot";
  EXPECT_GE(lastCounterPass(*counting), before);
}

// Passes the guest at `vmm` reports from now on: at least one more.
void expectRunsOn(VmmProcess& vmm) {
  const size_t passes = ::flotilla::testing::linesStartingWith(
                            ::flotilla::testing::guestProtocolLines(vmm.serial()), "counter pass=")
                            .size();
  EXPECT_TRUE(vmm.waitForSerialCount("counter pass=", passes + 1, absl::Minutes(1)).ok())
      << "the guest must run on here\n"
      << vmm.log();
}

// The migration from `source` completed: the source exited 0 saying so, and the guest counts
// on at `target` from at least `before`, every page checked.
void expectMoved(VmmProcess& source, VmmProcess& target, uint64_t before) {
  auto exit = source.wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << source.log() << target.log();
  EXPECT_EQ(exit->code, 0) << source.log();
  EXPECT_THAT(source.log(), HasSubstr("migrated"));
  expectCountingOn(target, before);
}

TEST_F(MigrationTest, CounterGuestMigratesBackAndForthWithEveryPageIntact) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  constexpr int kMigrations = 6;
  for (int i = 0; i < kMigrations; ++i) {
    uint16_t port = 0;
    std::unique_ptr<VmmProcess> target = startTarget(port);
    ASSERT_NE(target, nullptr);
    const uint64_t before = lastCounterPass(source->serial());
    grpc::Status sent = migrate(*source, port);
    ASSERT_TRUE(sent.ok()) << sent.error_message() << source->log();
    expectMoved(*source, *target, before);
    EXPECT_THAT(target->log(), HasSubstr("incoming migration from"));
    source = std::move(target);
  }
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, FourVcpusMigrate) {
  std::unique_ptr<VmmProcess> source = startSource("4");
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port, kMemory, "4");
  ASSERT_NE(target, nullptr);
  const uint64_t before = lastCounterPass(source->serial());
  ASSERT_TRUE(migrate(*source, port).ok());
  expectMoved(*source, *target, before);
  EXPECT_THAT(target->log(), HasSubstr("restored 4 vCPUs"));
  ASSERT_TRUE(target->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, FourStreamsMoveTheCounterGuest) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  for (int i = 0; i < 2; ++i) {  // there and back
    uint16_t port = 0;
    std::unique_ptr<VmmProcess> target = startTarget(port);
    ASSERT_NE(target, nullptr);
    const uint64_t before = lastCounterPass(source->serial());
    ASSERT_TRUE(migrate(*source, port, {.streams = 4}).ok());
    expectMoved(*source, *target, before);
    EXPECT_THAT(source->log(), HasSubstr("4 streams to"));
    EXPECT_THAT(target->log(), HasSubstr("3 data streams from"));
    EXPECT_THAT(target->log(), HasSubstr("4 streams"));
    source = std::move(target);
  }
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

// The target serves its API while the VM arrives: MigrateStatus follows the receiver, calls
// that need the VM say it is not there yet, and once it runs the figures stay readable.
TEST_F(MigrationTest, TargetReportsTheIncomingMigration) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  auto api = target->api();
  ASSERT_TRUE(api.ok()) << api.status();
  auto targetStatus = [&api]() {
    flotilla::v1::MigrationStatus status;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    EXPECT_TRUE((*api)->MigrateStatus(&context, {}, &status).ok());
    return status;
  };
  flotilla::v1::MigrationStatus waiting = targetStatus();
  EXPECT_EQ(waiting.role(), "target");
  EXPECT_EQ(waiting.phase(), "waiting");
  {
    grpc::ClientContext context;
    flotilla::v1::VmmInfo info;
    grpc::Status refused = (*api)->GetInfo(&context, {}, &info);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(refused.error_message(), HasSubstr("still arriving by live migration"));
  }
  {
    grpc::ClientContext context;
    flotilla::v1::HealthResponse health;
    ASSERT_TRUE((*api)->Health(&context, {}, &health).ok());
    EXPECT_EQ(health.status(), flotilla::v1::HealthResponse::NOT_SERVING);
  }
  // Cold, at 16 MB/s over 2 streams: the one pass over memory takes about two seconds.
  const uint64_t before = lastCounterPass(source->serial());
  ASSERT_TRUE(
      migrate(*source, port, {.bandwidth_limit = 16'000'000, .cold = true, .streams = 2}).ok());
  flotilla::v1::MigrationStatus receiving;
  for (int i = 0; i < 6000; ++i) {
    receiving = targetStatus();
    if (receiving.phase() == "memory" && receiving.pages_received() > 0) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(receiving.phase(), "memory");
  EXPECT_EQ(receiving.streams(), 2u);
  EXPECT_GT(receiving.pages_received(), 0u);
  EXPECT_GT(receiving.bytes_received(), receiving.pages_received() * 4096);
  expectMoved(*source, *target, before);
  flotilla::v1::MigrationStatus done = targetStatus();
  EXPECT_EQ(done.role(), "target");
  EXPECT_EQ(done.phase(), "resumed");
  EXPECT_GE(done.pages_received(), receiving.pages_received());
  EXPECT_GE(done.bytes_received(), receiving.bytes_received());
  grpc::ClientContext context;
  flotilla::v1::VmmInfo info;
  ASSERT_TRUE((*api)->GetInfo(&context, {}, &info).ok());
  EXPECT_EQ(info.state(), flotilla::v1::VMM_RUN_STATE_RUNNING);
  ASSERT_TRUE(target->process().terminate(absl::Seconds(10)).ok());
}

// A guest that dirties 64 MiB at 400 MB/s, over a link capped at 100 MB/s. Its rate is paced
// by wall-clock time, so a throttled guest catches up while it runs: only a throttle that
// leaves it less CPU than 100 MB/s of writes need (about 96% and up here, where a tracked
// page write costs ~1.6 µs) slows it down. A lower cap (25 MB/s) is within reach of even a
// 99%-throttled guest and made the test flaky.
std::unique_ptr<VmmProcess> startFastDirtier(const TempDir& dir, int index) {
  auto vmm = VmmProcess::start(kEnv,
                               {kVmm, "--kernel", kGuest, "--memory", kMemory, "--cmdline",
                                "workload=dirty dirty_mib=64 rate_mbps=400"},
                               dir, fmt::format("dirtier{}", index));
  EXPECT_TRUE(vmm.ok()) << vmm.status();
  if (!vmm.ok()) return nullptr;
  EXPECT_TRUE((*vmm)->waitForSerialCount("dirty pass=", 1, absl::Minutes(1)).ok()) << (*vmm)->log();
  return std::move(*vmm);
}

constexpr uint64_t kCappedLink = 100'000'000;

TEST_F(MigrationTest, GuestOutrunningACappedLinkStopsAtTheRoundLimitAndRunsOn) {
  std::unique_ptr<VmmProcess> source = startFastDirtier(dir_, 0);
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(migrate(*source, port,
                      {.downtime_limit_ms = 100, .bandwidth_limit = kCappedLink, .max_rounds = 4})
                  .ok());
  flotilla::v1::MigrationStatus status;
  EXPECT_EQ(finalPhase(*source, &status), "failed") << status.DebugString();
  EXPECT_EQ(status.throttle_percent(), 0u);
  EXPECT_THAT(status.error(), HasSubstr("round")) << status.DebugString();
  // The source runs on unharmed; the target ran nothing.
  const size_t passes =
      ::flotilla::testing::linesStartingWith(
          ::flotilla::testing::guestProtocolLines(source->serial()), "dirty pass=")
          .size();
  EXPECT_TRUE(source->waitForSerialCount("dirty pass=", passes + 1, absl::Minutes(1)).ok());
  auto exit = target->wait(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code, kExitMigrationFailed);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, AutoConvergeCompletesAMigrationThatCouldNotConverge) {
  std::unique_ptr<VmmProcess> source = startFastDirtier(dir_, 1);
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(migrate(*source, port,
                      {.downtime_limit_ms = 100,
                       .bandwidth_limit = kCappedLink,
                       .max_rounds = 40,
                       .auto_converge = true})
                  .ok());
  flotilla::v1::MigrationStatus status;
  const std::string phase = finalPhase(*source, &status);
  EXPECT_TRUE(phase == "completed" || phase == "") << phase << status.DebugString();
  EXPECT_GT(status.throttle_percent(), 0u) << status.DebugString();
  auto exit = source->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << source->log();
  EXPECT_EQ(exit->code, 0) << source->log();
  EXPECT_TRUE(target->waitForSerialCount("dirty pass=", 1, absl::Minutes(1)).ok()) << target->log();
  ASSERT_TRUE(target->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, ColdMigrationMovesTheGuest) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  const uint64_t before = lastCounterPass(source->serial());
  ASSERT_TRUE(migrate(*source, port, {.cold = true}).ok());
  expectMoved(*source, *target, before);
  EXPECT_THAT(source->log(), HasSubstr("0 rounds"));
  ASSERT_TRUE(target->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, CompressedMigrationMovesTheGuest) {
  for (const char* compression : {"zstd", "lz4"}) {
    std::unique_ptr<VmmProcess> source = startSource();
    ASSERT_NE(source, nullptr);
    uint16_t port = 0;
    std::unique_ptr<VmmProcess> target = startTarget(port);
    ASSERT_NE(target, nullptr);
    const uint64_t before = lastCounterPass(source->serial());
    SCOPED_TRACE(compression);
    ASSERT_TRUE(migrate(*source, port, {.compression = compression}).ok());
    expectMoved(*source, *target, before);
    ASSERT_TRUE(target->process().terminate(absl::Seconds(10)).ok());
  }
}

TEST_F(MigrationTest, UnknownCompressionIsRefusedUpFront) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  grpc::Status sent = migrate(*source, port, {.compression = "gzip"});
  EXPECT_EQ(sent.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(sent.error_message(), HasSubstr("use none, zstd or lz4"));
  expectRunsOn(*source);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, TargetKilledDuringTheTransferLeavesTheGuestAtTheSource) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  // 16 MB/s: the first round alone takes about two seconds.
  ASSERT_TRUE(migrate(*source, port, {.bandwidth_limit = 16'000'000}).ok());
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(target->process().signal(SIGKILL).ok());
  flotilla::v1::MigrationStatus status;
  EXPECT_EQ(finalPhase(*source, &status), "failed");
  EXPECT_FALSE(status.error().empty());
  expectRunsOn(*source);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

// The target killed (SIGKILL) at each point of the switchover after the source sent
// `complete`, stopped there by the test hook first. Before `go` the source resumes and the
// guest counts on; once `go` left, the source cannot know whether the target runs the guest:
// it stays paused in phase `unknown` until its manager decides (here: resume, as the target
// is known to be dead).
class SwitchoverKillTest : public MigrationTest {
 protected:
  // Migrates from a source to a target, one of them started with `stop_at`, and kills the
  // target once that one stopped; returns the source's final status.
  flotilla::v1::MigrationStatus killTargetAt(const std::string& stop_at) {
    const bool source_stops = stop_at.starts_with("source");
    source_ = startSource("1", source_stops ? stop_at : "");
    EXPECT_NE(source_, nullptr);
    if (source_ == nullptr) return {};
    uint16_t port = 0;
    target_ = startTarget(port, kMemory, "1", source_stops ? "" : stop_at);
    EXPECT_NE(target_, nullptr);
    if (target_ == nullptr) return {};
    EXPECT_TRUE(migrate(*source_, port).ok());
    VmmProcess& stopped = source_stops ? *source_ : *target_;
    absl::Status at_hook = waitStopped(stopped);
    EXPECT_TRUE(at_hook.ok()) << at_hook;
    EXPECT_THAT(stopped.log(), HasSubstr("stopping at " + stop_at));
    EXPECT_TRUE(target_->process().signal(SIGKILL).ok());
    auto killed = target_->wait(absl::Seconds(30));
    EXPECT_TRUE(killed.ok()) << killed.status();
    if (source_stops) {
      EXPECT_TRUE(source_->process().signal(SIGCONT).ok());
    }
    flotilla::v1::MigrationStatus status;
    finalPhase(*source_, &status);
    return status;
  }

  flotilla::v1::VmmRunState sourceState() {
    auto api = source_->api();
    if (!api.ok()) return flotilla::v1::VMM_RUN_STATE_UNSPECIFIED;
    grpc::ClientContext context;
    flotilla::v1::VmmInfo info;
    if (!(*api)->GetInfo(&context, {}, &info).ok()) return flotilla::v1::VMM_RUN_STATE_UNSPECIFIED;
    return info.state();
  }

  void expectSourceResumed(const flotilla::v1::MigrationStatus& status) {
    EXPECT_EQ(status.phase(), "failed") << status.error() << source_->log();
    EXPECT_FALSE(status.error().empty());
    EXPECT_EQ(sourceState(), flotilla::v1::VMM_RUN_STATE_RUNNING);
    expectRunsOn(*source_);
    EXPECT_THAT(source_->log(), HasSubstr("the VM runs here"));
  }

  void expectSourcePausedInUnknown(const flotilla::v1::MigrationStatus& status) {
    EXPECT_EQ(status.phase(), "unknown") << status.error() << source_->log();
    EXPECT_FALSE(status.error().empty());
    EXPECT_EQ(sourceState(), flotilla::v1::VMM_RUN_STATE_PAUSED) << "never two running copies";
    EXPECT_THAT(source_->log(), HasSubstr("stays paused"));
    // Whoever manages the pair learns that the target is gone, and resumes the source.
    auto api = source_->api();
    ASSERT_TRUE(api.ok());
    grpc::ClientContext context;
    flotilla::v1::ResumeResponse resumed;
    ASSERT_TRUE((*api)->Resume(&context, {}, &resumed).ok());
    expectRunsOn(*source_);
  }

  void TearDown() override {
    if (source_ != nullptr) (void)source_->process().terminate(absl::Seconds(10));
  }

  std::unique_ptr<VmmProcess> source_;
  std::unique_ptr<VmmProcess> target_;
};

TEST_F(SwitchoverKillTest, TargetKilledBeforeReadyResumesTheSource) {
  expectSourceResumed(killTargetAt("target-loading"));
}

TEST_F(SwitchoverKillTest, TargetKilledBetweenReadyAndGoResumesTheSource) {
  // The source holds still between `ready` and `go`; it finds the target gone before it
  // says `go`.
  expectSourceResumed(killTargetAt("source-ready"));
}

TEST_F(SwitchoverKillTest, TargetKilledAfterReadyWithGoOnItsWayLeavesTheSourcePaused) {
  // The target stops right after `ready`: `go` is already in its socket when it dies. The
  // source cannot tell this from a target that runs the guest.
  expectSourcePausedInUnknown(killTargetAt("target-ready"));
}

TEST_F(SwitchoverKillTest, TargetKilledAfterGoLeavesTheSourcePausedInPhaseUnknown) {
  expectSourcePausedInUnknown(killTargetAt("target-go"));
}

TEST_F(MigrationTest, SourceKilledDuringTheTransferLeavesNothingAtTheTarget) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(migrate(*source, port, {.bandwidth_limit = 16'000'000}).ok());
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_TRUE(source->process().signal(SIGKILL).ok());
  auto exit = target->wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok()) << exit.status() << target->log();
  EXPECT_EQ(exit->code, kExitMigrationFailed) << target->log();
  EXPECT_THAT(target->log(), HasSubstr("closed the connection"));
  EXPECT_THAT(target->serial(), Not(HasSubstr("counter")));
}

TEST_F(MigrationTest, CancelledMigrationLeavesTheGuestAtTheSource) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(migrate(*source, port, {.bandwidth_limit = 16'000'000}).ok());
  absl::SleepFor(absl::Milliseconds(300));
  auto api = source->api();
  ASSERT_TRUE(api.ok());
  flotilla::v1::MigrateCancelResponse cancelled;
  grpc::ClientContext context;
  ASSERT_TRUE((*api)->MigrateCancel(&context, {}, &cancelled).ok());
  EXPECT_TRUE(cancelled.cancelled());
  EXPECT_EQ(finalPhase(*source), "failed");
  auto exit = target->wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code, kExitMigrationFailed);
  EXPECT_THAT(target->log(), HasSubstr("cancelled"));
  expectRunsOn(*source);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, UnreachableTargetIsAnErrorAndTheGuestRunsOn) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  grpc::Status sent = migrate(*source, *port);
  EXPECT_EQ(sent.error_code(), grpc::StatusCode::UNAVAILABLE) << sent.error_message();
  EXPECT_THAT(sent.error_message(), HasSubstr("cannot connect to the migration target"));
  expectRunsOn(*source);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, WrongTokenFailsAndNothingRunsAtTheTarget) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(migrate(*source, port, {.token = "guessed-token"}).ok());
  flotilla::v1::MigrationStatus status;
  EXPECT_EQ(finalPhase(*source, &status), "failed");
  EXPECT_THAT(status.error(), HasSubstr("wrong migration token"));
  auto exit = target->wait(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code, kExitMigrationFailed) << target->log();
  EXPECT_THAT(target->serial(), Not(HasSubstr("counter")));
  expectRunsOn(*source);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

TEST_F(MigrationTest, TargetForAnotherMemorySizeRefusesWithTheReason) {
  std::unique_ptr<VmmProcess> source = startSource();
  ASSERT_NE(source, nullptr);
  uint16_t port = 0;
  std::unique_ptr<VmmProcess> target = startTarget(port, "128M");
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(migrate(*source, port).ok());
  flotilla::v1::MigrationStatus status;
  EXPECT_EQ(finalPhase(*source, &status), "failed");
  EXPECT_THAT(status.error(), HasSubstr("--memory"));
  auto exit = target->wait(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->code, kExitMigrationFailed);
  expectRunsOn(*source);
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace flotilla::vmm
