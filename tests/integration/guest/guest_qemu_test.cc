// Boots the test guest (guest/README.md) in QEMU's microvm machine under KVM and checks every
// workload's lines and exit status, the bad-command-line path, and the halt that a VMM without
// the debug-exit device sees. QEMU is the reference: the same file must behave the same way in
// Flotilla's VMM.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/command.h"
#include "common/process.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/guest_console.h"
#include "tests/support/test_env.h"

namespace flotilla {
namespace {

using testing::linesStartingWith;
using testing::numberAfter;

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kGuestElf[] = FLOTILLA_GUEST_ELF;

// QEMU's isa-debug-exit (and Flotilla's VMM) exit with (value << 1) | 1 when the guest writes
// `value` to port 0xf4.
int exitStatusFor(int guest_exit_code) {
  return (guest_exit_code << 1) | 1;
}

// The guest's compute checksum (guest/workloads/compute.c), recomputed here.
uint64_t computeChecksum(uint64_t iterations) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < iterations; ++i) {
    hash ^= i;
    hash *= 0x100000001b3ull;
    hash ^= hash >> 32;
  }
  return hash;
}

struct GuestOptions {
  std::string cmdline;
  int cpus = 1;
  bool debug_exit = true;
};

class GuestQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto qemu = testing::findProgram("qemu-system-x86_64", "qemu-system-x86");
    ASSERT_TRUE(qemu.ok()) << qemu.status();
    qemu_ = *qemu;
    ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0)
        << "/dev/kvm is missing or not usable: these tests boot the guest in QEMU under KVM";
    ASSERT_EQ(::access(kGuestElf, R_OK), 0)
        << kGuestElf << " is missing: build the flotilla-guest.elf target";
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "--- guest console (" << consolePath() << "):\n"
                << testing::fileTail(consolePath()) << "\n--- QEMU standard error:\n"
                << testing::fileTail(stderrPath()) << "\n";
    }
  }

  std::string consolePath() const { return dir_.file("console.log"); }
  std::string stderrPath() const { return dir_.file("qemu.stderr"); }
  std::string console() const { return testing::fileTail(consolePath(), 1 << 20); }

  // microvm: no firmware to run (SeaBIOS in `pc` runs emulated at CPL0 under PVM and takes
  // seconds), no PCI. Its defaults already include what the guest needs: the ISA serial port,
  // the PIT (KVM's in-kernel one; no port 0x61, which the guest does not need) and the PICs.
  // -cpu host,-arch-capabilities: with plain `host`, PVM refuses the IA32_ARCH_CAPABILITIES
  // MSR (0x10a) value QEMU sets and QEMU aborts. -no-reboot: a triple fault ends QEMU (status
  // 0) instead of rebooting the guest in a loop. The console goes to a file so that it
  // survives a run that the test ends by killing QEMU.
  std::vector<std::string> qemuArgv(const GuestOptions& options) const {
    std::vector<std::string> argv = {
        qemu_,
        "-M",
        "microvm",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-cpu",
        "host,-arch-capabilities",
        "-accel",
        "kvm",
        "-m",
        "256M",
        "-smp",
        std::to_string(options.cpus),
        "-serial",
        "file:" + consolePath(),
        "-kernel",
        kGuestElf,
        "-append",
        options.cmdline,
    };
    if (options.debug_exit) {
      argv.insert(argv.end(), {"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"});
    }
    return argv;
  }

  // Runs the guest to its exit through the debug-exit device.
  ExitStatus runToExit(const GuestOptions& options) {
    SystemCommandRunner runner;
    CommandOptions command_options;
    command_options.timeout = absl::Seconds(120);  // a hung guest, not a slow one
    auto result = runner.run(qemuArgv(options), command_options);
    if (!result.ok()) {
      ADD_FAILURE() << result.status();
      return ExitStatus{};
    }
    std::FILE* err = std::fopen(stderrPath().c_str(), "w");
    if (err != nullptr) {
      std::fputs(result->err.c_str(), err);
      std::fclose(err);
    }
    return result->status;
  }

  // Starts the guest and keeps it running; the caller stops it.
  ChildProcess start(const GuestOptions& options) {
    UniqueFd err(::open(stderrPath().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    EXPECT_TRUE(err.valid()) << stderrPath();
    SpawnOptions spawn;
    spawn.argv = qemuArgv(options);
    spawn.fds = {{STDERR_FILENO, err.get()}};
    auto child = ChildProcess::spawn(spawn);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? std::move(*child) : ChildProcess();
  }

  // Waits until the console holds `count` lines starting with `start`, or the guest exits, or
  // a generous limit passes (the limit only bounds a broken guest; nothing is timed).
  bool waitForLines(ChildProcess& child, absl::string_view start, size_t count) {
    const absl::Time give_up = absl::Now() + absl::Seconds(120);
    while (absl::Now() < give_up) {
      if (linesStartingWith(testing::guestProtocolLines(console()), start).size() >= count)
        return true;
      if (child.wait(absl::Milliseconds(50)).ok()) return false;  // it exited
    }
    return false;
  }

  testing::TempDir dir_;
  std::string qemu_;
};

TEST_F(GuestQemuTest, SelftestPassesWithOneCpu) {
  ExitStatus status = runToExit({.cmdline = "workload=selftest cpus=1", .cpus = 1});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::vector<std::string> lines = testing::guestProtocolLines(console());
  std::vector<std::string> ready = linesStartingWith(lines, "ready ");
  ASSERT_THAT(ready, ::testing::SizeIs(1));
  EXPECT_THAT(ready[0], StartsWith("ready workload=selftest cpus=1 tsc_khz="));
  EXPECT_GT(numberAfter(ready[0], "tsc_khz"), 0u);
  EXPECT_GE(numberAfter(ready[0], "mem_mib"), 250u);  // -m 256M, minus firmware holes
  EXPECT_THAT(lines, Contains(StartsWith("result selftest cpuid vendor=")));
  EXPECT_THAT(lines, Contains(HasSubstr(" hypervisor=KVMKVMKVM")));
  std::vector<std::string> timer = linesStartingWith(lines, "result selftest lapic-timer ");
  ASSERT_THAT(timer, ::testing::SizeIs(1));
  EXPECT_THAT(timer[0], ::testing::EndsWith(" ok"));
  EXPECT_GE(numberAfter(timer[0], "ticks"), 10u);
  EXPECT_THAT(lines, Contains("result selftest smp cpus=1 ok"));
  EXPECT_THAT(linesStartingWith(lines, "error"), IsEmpty());
}

TEST_F(GuestQemuTest, SelftestStartsFourCpus) {
  ExitStatus status = runToExit({.cmdline = "workload=selftest cpus=4", .cpus = 4});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::vector<std::string> lines = testing::guestProtocolLines(console());
  EXPECT_THAT(lines, Contains(StartsWith("result selftest lapic-timer ")));
  EXPECT_THAT(lines, Contains("result selftest smp cpus=4 ok"));
  EXPECT_THAT(linesStartingWith(lines, "error"), IsEmpty());
}

TEST_F(GuestQemuTest, SelftestWithoutExpectedCountCountsTheCpus) {
  ExitStatus status = runToExit({.cmdline = "workload=selftest", .cpus = 2});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  EXPECT_THAT(testing::guestProtocolLines(console()), Contains("result selftest smp cpus=2 ok"));
}

TEST_F(GuestQemuTest, SelftestFailsWhenFewerCpusStart) {
  ExitStatus status = runToExit({.cmdline = "workload=selftest cpus=2", .cpus = 1});
  EXPECT_EQ(status.code, exitStatusFor(1)) << status.describe();
  EXPECT_THAT(testing::guestProtocolLines(console()),
              Contains("error selftest smp cpus=1 expected=2"));
}

TEST_F(GuestQemuTest, ComputePrintsTheChecksumAndExits) {
  constexpr uint64_t kIterations = 10000000;
  ExitStatus status =
      runToExit({.cmdline = fmt::format("workload=compute iterations={}", kIterations)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::vector<std::string> lines = testing::guestProtocolLines(console());
  EXPECT_THAT(lines, Contains(StartsWith("ready workload=compute cpus=1 ")));
  EXPECT_THAT(lines, Contains(fmt::format("result compute iterations={} checksum={:#x}",
                                          kIterations, computeChecksum(kIterations))));
}

TEST_F(GuestQemuTest, CounterPassesItsSelfCheckUntilKilled) {
  ChildProcess qemu = start({.cmdline = "workload=counter counter_mib=64"});
  ASSERT_TRUE(qemu.valid());
  // Two progress lines: the counter ran its self-check for at least a second of guest time.
  bool progressed = waitForLines(qemu, "counter pass=", 2);
  auto stopped = qemu.terminate(absl::Seconds(5));
  EXPECT_TRUE(stopped.ok()) << stopped.status();
  ASSERT_TRUE(progressed) << "the counter did not report progress twice";
  std::vector<std::string> lines = testing::guestProtocolLines(console());
  EXPECT_THAT(lines, Contains(StartsWith("ready workload=counter ")));
  std::vector<std::string> passes = linesStartingWith(lines, "counter pass=");
  EXPECT_GE(numberAfter(passes.back(), "pass"), 1u);
  EXPECT_THAT(linesStartingWith(lines, "error"), IsEmpty());
}

TEST_F(GuestQemuTest, DirtyReportsPassesAndPausesAfterItsDuration) {
  ExitStatus status =
      runToExit({.cmdline = "workload=dirty dirty_mib=4 rate_mbps=100 duration_s=2"});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::vector<std::string> lines = testing::guestProtocolLines(console());
  std::vector<std::string> results = linesStartingWith(lines, "result dirty ");
  ASSERT_THAT(results, ::testing::SizeIs(1));
  EXPECT_THAT(results[0],
              ::testing::MatchesRegex("result dirty passes=[0-9]+ max_pause_us=[0-9]+"));
  EXPECT_GE(numberAfter(results[0], "passes"), 1u);  // one pass is 4 MB: 40 ms at 100 MB/s
  EXPECT_THAT(linesStartingWith(lines, "error"), IsEmpty());
}

TEST_F(GuestQemuTest, IdleHaltsWithoutExiting) {
  ChildProcess qemu = start({.cmdline = ""});  // idle is the default workload
  ASSERT_TRUE(qemu.valid());
  ASSERT_TRUE(waitForLines(qemu, "ready workload=idle ", 1));
  // Still running a moment later (a guest that exits early fails; a slow one cannot).
  EXPECT_FALSE(qemu.wait(absl::Milliseconds(500)).ok()) << "the idle guest exited";
  EXPECT_TRUE(qemu.terminate(absl::Seconds(5)).ok());
}

TEST_F(GuestQemuTest, WithoutDebugExitDeviceTheGuestHaltsAfterItsResult) {
  ChildProcess qemu = start({.cmdline = "workload=compute iterations=1000", .debug_exit = false});
  ASSERT_TRUE(qemu.valid());
  ASSERT_TRUE(waitForLines(qemu, "result compute ", 1));
  EXPECT_FALSE(qemu.wait(absl::Milliseconds(500)).ok()) << "QEMU exited without the device";
  EXPECT_TRUE(qemu.terminate(absl::Seconds(5)).ok());
}

struct BadCommandLine {
  std::string name;  // of the test case
  std::string cmdline;
  std::string why;
};

void PrintTo(const BadCommandLine& bad, std::ostream* out) {
  *out << '"' << bad.cmdline << '"';
}

class GuestBadCommandLineTest : public GuestQemuTest,
                                public ::testing::WithParamInterface<BadCommandLine> {};

TEST_P(GuestBadCommandLineTest, ExitsWithStatusTwoAndSaysWhy) {
  ExitStatus status = runToExit({.cmdline = GetParam().cmdline});
  EXPECT_EQ(status.code, exitStatusFor(2)) << status.describe();
  std::vector<std::string> lines = testing::guestProtocolLines(console());
  EXPECT_THAT(lines, Contains("error bad command line: " + GetParam().why));
  EXPECT_THAT(linesStartingWith(lines, "ready"), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GuestBadCommandLineTest,
    ::testing::Values(
        BadCommandLine{"UnknownWorkload", "workload=nope",
                       "unknown workload 'nope' (known: idle selftest compute counter dirty blk "
                       "blk-bench net)"},
        BadCommandLine{"UnknownKey", "workload=compute colour=blue", "unknown key 'colour'"},
        BadCommandLine{"KeyOfAnotherWorkload", "workload=compute cpus=2",
                       "cpus is not a parameter of workload compute"},
        BadCommandLine{"NotANumber", "workload=selftest cpus=x",
                       "cpus=x: expected a decimal number from 1 to 16"},
        BadCommandLine{"MissingRequiredKey", "workload=dirty dirty_mib=8",
                       "workload dirty needs rate_mbps="},
        BadCommandLine{"RegionBeyondRam", "workload=counter counter_mib=1024",
                       "counter_mib=1024 does not fit in RAM: the region starts at 64 MiB and "
                       "RAM is 256 MiB"},
        BadCommandLine{"NotKeyValue", "workload=idle noapic", "'noapic' is not key=value"}),
    [](const ::testing::TestParamInfo<BadCommandLine>& param) { return param.param.name; });

}  // namespace
}  // namespace flotilla
