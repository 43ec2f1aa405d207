// Live migration between two flotilla-vmm processes on /dev/kvm, over loopback: a counter
// guest (every page of its region incremented pass after pass, each checked against the pass
// it expects: a page lost or stale in the migration is an "error counter mismatch" line)
// migrated back and forth, and the failures that must leave it running at the source: a
// target that is not there, a wrong token, a target started for another memory size.
#include <signal.h>

#include <string>
#include <vector>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kToken[] = "test-token-0123456789";
constexpr char kMemory[] = "256M";

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

  std::unique_ptr<VmmProcess> startSource(const std::string& vcpus = "1") {
    auto vmm = VmmProcess::start(kVmm,
                                 {"--kernel", kGuest, "--memory", kMemory, "--vcpus", vcpus,
                                  "--cmdline", "workload=counter counter_mib=32"},
                                 dir_, fmt::format("vm{}", count_++));
    EXPECT_TRUE(vmm.ok()) << vmm.status();
    if (!vmm.ok()) return nullptr;
    auto counting = (*vmm)->waitForSerialCount("counter pass=", 2, absl::Minutes(1));
    EXPECT_TRUE(counting.ok()) << counting.status();
    return std::move(*vmm);
  }

  // A VMM waiting for a migration on a free port; `port` gets it.
  std::unique_ptr<VmmProcess> startTarget(uint16_t& port, const std::string& memory = kMemory,
                                          const std::string& vcpus = "1") {
    auto free_port = ::flotilla::testing::pickFreePort();
    EXPECT_TRUE(free_port.ok()) << free_port.status();
    port = *free_port;
    auto vmm =
        VmmProcess::start(kVmm,
                          {"--incoming", fmt::format("tcp:127.0.0.1:{}", port), "--migration-token",
                           kToken, "--memory", memory, "--vcpus", vcpus},
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
