// Boots the test guest's virtio workloads (blk, blk-bench, net; guest/README.md) in QEMU's
// microvm machine with modern virtio-mmio devices under KVM: the reference devices the same
// guest file later checks Flotilla's own virtio-mmio devices against. The disk's content is
// checked from outside too, and the net tests talk to the guest from a network namespace
// through a tap (ARP, ICMP echo, UDP echo, announcements, link changes). Needs /dev/kvm; the
// net tests need root.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
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
#include "tests/support/netns.h"
#include "tests/support/test_env.h"

namespace flotilla {
namespace {

using testing::linesStartingWith;
using testing::numberAfter;
using testing::valueAfter;

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr char kGuestElf[] = FLOTILLA_GUEST_ELF;
constexpr uint64_t kMiB = 1 << 20;

int exitStatusFor(int guest_exit_code) {
  return (guest_exit_code << 1) | 1;
}

// The guest's blk data pattern (guest/workloads/blk.c), recomputed: the 64-bit word at disk
// byte offset `offset`.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t patternWord(uint64_t offset, uint64_t generation, uint64_t seed) {
  return mix((offset >> 3) ^ generation * 0x9e3779b97f4a7c15ull ^
             mix(seed + 0x632be59bd9b4e019ull));
}

// How many words of the first `bytes` of the file differ from the pattern (generation 0).
uint64_t patternMismatches(const std::string& path, uint64_t bytes, uint64_t seed) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint64_t> words(bytes / 8);
  in.read(reinterpret_cast<char*>(words.data()), static_cast<std::streamsize>(bytes));
  if (!in) return bytes / 8;
  uint64_t mismatches = 0;
  for (uint64_t i = 0; i < words.size(); ++i) {
    if (words[i] != patternWord(8 * i, 0, seed)) ++mismatches;
  }
  return mismatches;
}

struct QemuRun {
  std::string cmdline = "";
  std::vector<std::string> devices = {};  // QEMU arguments for the devices
  // acpi=off: microvm then appends virtio_mmio.device=<size>@<base>:<irq> for each device to
  // the command line (auto-kernel-cmdline, on by default); with ACPI it appends nothing.
  std::string machine = "microvm,acpi=off";
  std::vector<std::string> wrapper = {};  // run QEMU through this, e.g. `ip netns exec NS`
};

class GuestVirtioTest : public ::testing::Test {
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
                << testing::fileTail(consolePath(), 8192) << "\n--- QEMU standard error:\n"
                << testing::fileTail(stderrPath()) << "\n";
    }
  }

  std::string consolePath() const { return dir_.file("console.log"); }
  std::string stderrPath() const { return dir_.file("qemu.stderr"); }
  std::string monitorPath() const { return dir_.file("monitor.sock"); }
  std::string console() const { return testing::fileTail(consolePath(), 1 << 20); }
  std::vector<std::string> lines() const { return testing::guestProtocolLines(console()); }

  // The one line starting with `start`, or "" (and a failure) when there is not exactly one.
  std::string onlyLine(absl::string_view start) const {
    std::vector<std::string> found = linesStartingWith(lines(), start);
    EXPECT_THAT(found, SizeIs(1)) << "lines starting with '" << start << "'";
    return found.size() == 1 ? found[0] : "";
  }

  // A sparse raw disk image of `mib` MiB in the test's directory.
  std::string createDisk(const std::string& name, uint64_t mib) {
    auto path = dir_.sparseFile(name, mib * kMiB);
    EXPECT_TRUE(path.ok()) << path.status();
    return path.ok() ? *path : "";
  }

  static std::vector<std::string> blkDevice(const std::string& disk,
                                            const std::string& drive_options = "") {
    return {"-drive", "file=" + disk + ",format=raw,if=none,id=d0" + drive_options, "-device",
            "virtio-blk-device,drive=d0"};
  }

  // Modern virtio-mmio (QEMU 7.2's transport defaults to legacy), the monitor on a socket.
  std::vector<std::string> qemuArgv(const QemuRun& run) const {
    std::vector<std::string> argv = run.wrapper;
    argv.insert(argv.end(), {qemu_,
                             "-M",
                             run.machine,
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
                             "-serial",
                             "file:" + consolePath(),
                             "-device",
                             "isa-debug-exit,iobase=0xf4,iosize=0x04",
                             "-global",
                             "virtio-mmio.force-legacy=false",
                             "-monitor",
                             "unix:" + monitorPath() + ",server=on,wait=off"});
    argv.insert(argv.end(), run.devices.begin(), run.devices.end());
    argv.insert(argv.end(), {"-kernel", kGuestElf, "-append", run.cmdline});
    return argv;
  }

  ExitStatus runToExit(const QemuRun& run) {
    SystemCommandRunner runner;
    CommandOptions options;
    options.timeout = absl::Seconds(120);  // a hung guest, not a slow one
    auto result = runner.run(qemuArgv(run), options);
    if (!result.ok()) {
      ADD_FAILURE() << result.status();
      return ExitStatus{};
    }
    std::ofstream(stderrPath()) << result->err;
    return result->status;
  }

  ChildProcess start(const QemuRun& run) {
    UniqueFd err(::open(stderrPath().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    EXPECT_TRUE(err.valid()) << stderrPath();
    SpawnOptions spawn;
    spawn.argv = qemuArgv(run);
    spawn.fds = {{STDERR_FILENO, err.get()}};
    auto child = ChildProcess::spawn(spawn);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? std::move(*child) : ChildProcess();
  }

  // Until the console holds `count` lines starting with `start`; false when the guest exits
  // first or a generous limit passes (it bounds a broken guest; nothing is timed).
  bool waitForLines(ChildProcess& child, absl::string_view start, size_t count = 1) {
    const absl::Time give_up = absl::Now() + absl::Seconds(120);
    while (absl::Now() < give_up) {
      if (linesStartingWith(lines(), start).size() >= count) return true;
      if (child.wait(absl::Milliseconds(20)).ok()) {
        return linesStartingWith(lines(), start).size() >= count;
      }
    }
    return false;
  }

  // One HMP command on QEMU's monitor socket; returns what QEMU answered before its prompt.
  absl::StatusOr<std::string> monitor(const std::string& command) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", monitorPath().c_str());
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      return absl::UnavailableError("cannot connect to QEMU's monitor at " + monitorPath());
    }
    auto readPrompt = [&]() -> absl::StatusOr<std::string> {
      std::string text;
      const absl::Time give_up = absl::Now() + absl::Seconds(10);
      while (!absl::StrContains(text, "(qemu) ")) {
        pollfd poll_fd{fd.get(), POLLIN, 0};
        if (absl::Now() > give_up || ::poll(&poll_fd, 1, 100) < 0) {
          return absl::DeadlineExceededError("no monitor prompt; got: " + text);
        }
        char buffer[4096];
        ssize_t got = poll_fd.revents ? ::read(fd.get(), buffer, sizeof(buffer)) : 0;
        if (poll_fd.revents && got <= 0) return absl::UnavailableError("monitor closed: " + text);
        if (got > 0) text.append(buffer, static_cast<size_t>(got));
      }
      return text;
    };
    if (auto banner = readPrompt(); !banner.ok()) return banner.status();
    std::string line = command + "\n";
    if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return absl::UnavailableError("cannot write to QEMU's monitor");
    }
    return readPrompt();
  }

  testing::TempDir dir_;
  std::string qemu_;
};

// --- blk ---

TEST_F(GuestVirtioTest, BlkWritesVerifiesFlushesDiscardsAndZeroesARawDisk) {
  const std::string disk = createDisk("disk.img", 64);
  ExitStatus status = runToExit({.cmdline = "workload=blk", .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  // QEMU appended the device's virtio_mmio.device= word, and the guest probed it.
  EXPECT_THAT(lines(), Contains(MatchesRegex("virtio device base=0x[0-9a-f]+ size=512 irq=[0-9]+ "
                                             "id=2 type=blk vendor=0x554d4551")));
  std::string config = onlyLine("blk config ");
  EXPECT_EQ(numberAfter(config, "capacity"), 64 * kMiB / 512);
  EXPECT_EQ(valueAfter(config, "ro"), "0");
  EXPECT_EQ(valueAfter(config, "irq"), "0");
  std::string ok = onlyLine("blk ok ");
  EXPECT_EQ(numberAfter(ok, "capacity"), 64 * kMiB / 512);
  // 16 MiB (the default region), plus its last MiB again after discard and write-zeroes.
  EXPECT_EQ(numberAfter(ok, "written"), 17 * kMiB);
  EXPECT_EQ(numberAfter(ok, "verified"), 17 * kMiB);
  EXPECT_EQ(valueAfter(ok, "flush"), "ok");
  EXPECT_EQ(valueAfter(ok, "discard"), "ok");
  EXPECT_EQ(valueAfter(ok, "write_zeroes"), "ok");
  EXPECT_EQ(numberAfter(ok, "interrupts"), 0u);  // polling
  EXPECT_THAT(linesStartingWith(lines(), "error"), IsEmpty());
  // The data reached the file.
  EXPECT_EQ(patternMismatches(disk, 16 * kMiB, 1), 0u);
}

struct ModeVariant {
  std::string name;
  std::string options;
  bool interrupts;
};

void PrintTo(const ModeVariant& variant, std::ostream* out) {
  *out << '"' << variant.options << '"';
}

class GuestBlkVariantTest : public GuestVirtioTest,
                            public ::testing::WithParamInterface<ModeVariant> {};

TEST_P(GuestBlkVariantTest, WritesAndVerifies) {
  const std::string disk = createDisk("disk.img", 32);
  ExitStatus status = runToExit(
      {.cmdline = "workload=blk blk.mib=8 " + GetParam().options, .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::string ok = onlyLine("blk ok ");
  EXPECT_EQ(numberAfter(ok, "written"), 9 * kMiB);
  EXPECT_EQ(numberAfter(ok, "verified"), 9 * kMiB);
  if (GetParam().interrupts) {
    EXPECT_GT(numberAfter(ok, "interrupts"), 0u) << "virtio.irq=1 took no interrupt";
  }
  EXPECT_THAT(linesStartingWith(lines(), "error"), IsEmpty());
  EXPECT_EQ(patternMismatches(disk, 8 * kMiB, 1), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, GuestBlkVariantTest,
    ::testing::Values(
        ModeVariant{"IndirectDescriptors", "virtio.indirect=1", false},
        ModeVariant{"EventIdx", "virtio.event_idx=1", false},
        ModeVariant{"Interrupts", "virtio.irq=1", true},
        ModeVariant{"InterruptsWithEventIdx", "virtio.irq=1 virtio.event_idx=1", true},
        ModeVariant{"InterruptsEventIdxIndirect",
                    "virtio.irq=1 virtio.event_idx=1 virtio.indirect=1", true},
        // 8 entries: few segments per request, and the ring indexes wrap thousands of times.
        ModeVariant{"SmallQueueDeepQueueing", "virtio.queue_size=8 blk.qd=16", false},
        ModeVariant{"SmallQueueIndirect", "virtio.queue_size=4 virtio.indirect=1 blk.qd=8", false}),
    [](const ::testing::TestParamInfo<ModeVariant>& param) { return param.param.name; });

TEST_F(GuestVirtioTest, BlkVerifyOnlyChecksWhatAnEarlierBootWrote) {
  const std::string disk = createDisk("disk.img", 16);
  ExitStatus wrote =
      runToExit({.cmdline = "workload=blk blk.mib=4 blk.seed=7", .devices = blkDevice(disk)});
  ASSERT_EQ(wrote.code, exitStatusFor(0)) << wrote.describe();

  ExitStatus verified = runToExit({.cmdline = "workload=blk blk.mib=4 blk.seed=7 blk.verify-only=1",
                                   .devices = blkDevice(disk)});
  EXPECT_EQ(verified.code, exitStatusFor(0)) << verified.describe();
  std::string ok = onlyLine("blk ok ");
  EXPECT_EQ(numberAfter(ok, "written"), 0u);
  EXPECT_EQ(numberAfter(ok, "verified"), 4 * kMiB);

  // Another seed: the very first word differs.
  ExitStatus mismatch = runToExit({.cmdline = "workload=blk blk.mib=4 blk.seed=8 blk.verify-only=1",
                                   .devices = blkDevice(disk)});
  EXPECT_EQ(mismatch.code, exitStatusFor(1)) << mismatch.describe();
  EXPECT_THAT(lines(),
              Contains(MatchesRegex("error blk mismatch sector=0 offset=0 "
                                    "expected=0x[0-9a-f]+ found=0x[0-9a-f]+ generation=0")));
}

TEST_F(GuestVirtioTest, BlkVerifyOnlyFailsOnAnEmptyDisk) {
  const std::string disk = createDisk("disk.img", 16);
  ExitStatus status =
      runToExit({.cmdline = "workload=blk blk.verify-only=1", .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(1)) << status.describe();
  EXPECT_THAT(lines(), Contains(StartsWith("error blk mismatch sector=0 offset=0 ")));
  EXPECT_THAT(lines(), Contains(HasSubstr(" found=0x0 ")));
}

TEST_F(GuestVirtioTest, BlkReadOnlyDiskFailsWritesWithIoerrAndStillVerifies) {
  const std::string disk = createDisk("disk.img", 16);
  ASSERT_EQ(runToExit({.cmdline = "workload=blk blk.mib=4", .devices = blkDevice(disk)}).code,
            exitStatusFor(0));
  ExitStatus status = runToExit({.cmdline = "workload=blk blk.mib=4 blk.verify-only=1",
                                 .devices = blkDevice(disk, ",readonly=on")});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  EXPECT_EQ(valueAfter(onlyLine("blk config "), "ro"), "1");
  std::string ok = onlyLine("blk ok ");
  EXPECT_EQ(valueAfter(ok, "ro"), "1");
  EXPECT_EQ(valueAfter(ok, "write"), "ioerr");
  EXPECT_EQ(numberAfter(ok, "written"), 0u);
  EXPECT_EQ(numberAfter(ok, "verified"), 4 * kMiB);
  EXPECT_EQ(patternMismatches(disk, 4 * kMiB, 1), 0u);  // the refused write changed nothing
}

TEST_F(GuestVirtioTest, BlkReadOnlyDiskWithoutVerifyOnlyReads) {
  const std::string disk = createDisk("disk.img", 16);
  ExitStatus status =
      runToExit({.cmdline = "workload=blk blk.mib=4", .devices = blkDevice(disk, ",readonly=on")});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::string ok = onlyLine("blk ok ");
  EXPECT_EQ(valueAfter(ok, "write"), "ioerr");
  EXPECT_EQ(numberAfter(ok, "verified"), 0u);
  EXPECT_EQ(numberAfter(ok, "read"), 4 * kMiB);
}

TEST_F(GuestVirtioTest, BlkLoopReportsRoundsUntilKilled) {
  const std::string disk = createDisk("disk.img", 16);
  ChildProcess qemu =
      start({.cmdline = "workload=blk blk.loop=1 blk.mib=2", .devices = blkDevice(disk)});
  ASSERT_TRUE(qemu.valid());
  // Round 1 is always reported, later rounds once a second at most.
  const bool progressed = waitForLines(qemu, "blk loop round=", 2);
  EXPECT_TRUE(qemu.terminate(absl::Seconds(5)).ok());
  ASSERT_TRUE(progressed) << "fewer than two loop progress lines";
  std::vector<std::string> rounds = linesStartingWith(lines(), "blk loop round=");
  EXPECT_EQ(rounds[0], fmt::format("blk loop round=1 written={} verified={}", 2 * kMiB, 2 * kMiB));
  const uint64_t round = numberAfter(rounds.back(), "round");
  EXPECT_GT(round, 1u);
  EXPECT_EQ(numberAfter(rounds.back(), "written"), round * 2 * kMiB);
  EXPECT_THAT(linesStartingWith(lines(), "error"), IsEmpty());
}

// A resize raises a configuration change interrupt (InterruptStatus bit 1); the guest
// re-reads the capacity. Polling reads InterruptStatus once a second.
class GuestBlkResizeTest : public GuestVirtioTest,
                           public ::testing::WithParamInterface<const char*> {};

TEST_P(GuestBlkResizeTest, ReportsTheNewCapacity) {
  const std::string disk = createDisk("disk.img", 16);
  ChildProcess qemu =
      start({.cmdline = fmt::format("workload=blk blk.loop=1 blk.mib=2 {}", GetParam()),
             .devices = blkDevice(disk)});
  ASSERT_TRUE(qemu.valid());
  ASSERT_TRUE(waitForLines(qemu, "blk loop round="));
  auto resized = monitor("block_resize d0 24M");
  ASSERT_TRUE(resized.ok()) << resized.status();
  EXPECT_TRUE(waitForLines(qemu, "blk config-change "));
  EXPECT_TRUE(qemu.terminate(absl::Seconds(5)).ok());
  EXPECT_THAT(lines(), Contains("blk config-change capacity=49152 changes=1"));
  EXPECT_THAT(linesStartingWith(lines(), "error"), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Modes, GuestBlkResizeTest, ::testing::Values("", "virtio.irq=1"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           return std::string(param.param[0] ? "Interrupts" : "Polling");
                         });

TEST_F(GuestVirtioTest, BlkWithoutADiskSaysSo) {
  ExitStatus status = runToExit({.cmdline = "workload=blk"});
  EXPECT_EQ(status.code, exitStatusFor(1)) << status.describe();
  EXPECT_THAT(lines(),
              Contains("error blk no virtio-blk device among the 0 virtio_mmio.device= entries"));
}

TEST_F(GuestVirtioTest, BlkRegionLargerThanTheDiskIsAnError) {
  const std::string disk = createDisk("disk.img", 8);
  ExitStatus status = runToExit({.cmdline = "workload=blk blk.mib=9", .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(1)) << status.describe();
  EXPECT_THAT(lines(),
              Contains("error blk blk.mib=9 is larger than the disk (16384 sectors, 8 MiB)"));
}

// Devices given by hand (QEMU's auto-kernel-cmdline off): QEMU 7.2's microvm places the
// transports at 0xfeb00000 + 512 * i with IRQ 5 + i (acpi=off: no second IOAPIC), and plugs
// the first device into the last transport. An empty transport reads device ID 0.
TEST_F(GuestVirtioTest, ExplicitDeviceEntriesAndAnEmptyTransport) {
  const std::string disk = createDisk("disk.img", 16);
  ExitStatus status =
      runToExit({.cmdline = "workload=blk blk.mib=1 virtio_mmio.device=0x200@0xfeb00000:5 "
                            "virtio_mmio.device=512@0xfeb00e00:12",
                 .devices = blkDevice(disk),
                 .machine = "microvm,acpi=off,auto-kernel-cmdline=off"});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  EXPECT_THAT(lines(), Contains("virtio device base=0xfeb00000 size=512 irq=5 id=0 type=none"));
  EXPECT_THAT(lines(), Contains(StartsWith("virtio device base=0xfeb00e00 size=512 irq=12 id=2 "
                                           "type=blk")));
  EXPECT_THAT(lines(), Contains(StartsWith("blk ok ")));
}

TEST_F(GuestVirtioTest, OtherWorkloadsAcceptTheVirtioMmioWordsQemuAppends) {
  const std::string disk = createDisk("disk.img", 1);
  ExitStatus status =
      runToExit({.cmdline = "workload=compute iterations=1000", .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  EXPECT_THAT(lines(), Contains(StartsWith("result compute iterations=1000 ")));
}

// --- blk-bench ---

TEST_F(GuestVirtioTest, BenchRandomReadsACountOfRequests) {
  const std::string disk = createDisk("disk.img", 64);
  ExitStatus status =
      runToExit({.cmdline = "workload=blk-bench bench.pattern=randread bench.ops=2000",
                 .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::string result = onlyLine("blk-bench ");
  EXPECT_THAT(result, MatchesRegex("blk-bench pattern=randread bs=4096 qd=1 ops=2000 "
                                   "bytes=8192000 ns=[0-9]+ iops=[0-9]+ mbps=[0-9]+"));
  EXPECT_GT(numberAfter(result, "ns"), 0u);
  EXPECT_GT(numberAfter(result, "iops"), 0u);
}

TEST_F(GuestVirtioTest, BenchWritesWithQueueDepthAndIndirectDescriptors) {
  const std::string disk = createDisk("disk.img", 64);
  ExitStatus status =
      runToExit({.cmdline = "workload=blk-bench bench.pattern=randwrite bench.qd=32 bench.ops=3000 "
                            "virtio.indirect=1",
                 .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::string result = onlyLine("blk-bench ");
  EXPECT_EQ(valueAfter(result, "pattern"), "randwrite");
  EXPECT_EQ(numberAfter(result, "qd"), 32u);
  EXPECT_EQ(numberAfter(result, "ops"), 3000u);
  EXPECT_EQ(numberAfter(result, "bytes"), 3000u * 4096);
}

TEST_F(GuestVirtioTest, BenchSequentialReadsForASecondWithInterrupts) {
  const std::string disk = createDisk("disk.img", 64);
  ExitStatus status =
      runToExit({.cmdline = "workload=blk-bench bench.pattern=seqread bench.bs=65536 bench.qd=4 "
                            "bench.seconds=1 bench.mib=32 virtio.irq=1",
                 .devices = blkDevice(disk)});
  EXPECT_EQ(status.code, exitStatusFor(0)) << status.describe();
  std::string result = onlyLine("blk-bench ");
  EXPECT_EQ(numberAfter(result, "bs"), 65536u);
  EXPECT_GT(numberAfter(result, "ops"), 0u);
  EXPECT_GE(numberAfter(result, "ns"), 1000000000u);
  EXPECT_EQ(numberAfter(result, "bytes"), numberAfter(result, "ops") * 65536);
}

// --- command line ---

struct BadCommandLine {
  std::string name;
  std::string cmdline;
  std::string why;
};

void PrintTo(const BadCommandLine& bad, std::ostream* out) {
  *out << '"' << bad.cmdline << '"';
}

class GuestVirtioBadCommandLineTest : public GuestVirtioTest,
                                      public ::testing::WithParamInterface<BadCommandLine> {};

TEST_P(GuestVirtioBadCommandLineTest, ExitsWithStatusTwoAndSaysWhy) {
  ExitStatus status = runToExit({.cmdline = GetParam().cmdline});
  EXPECT_EQ(status.code, exitStatusFor(2)) << status.describe();
  EXPECT_THAT(lines(), Contains("error bad command line: " + GetParam().why));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GuestVirtioBadCommandLineTest,
    ::testing::Values(
        BadCommandLine{"DeviceWithoutIrq", "workload=blk virtio_mmio.device=512@0xfeb00e00",
                       "virtio_mmio.device=512@0xfeb00e00: expected <size>@<base>:<irq>, like "
                       "512@0xfeb00e00:12"},
        BadCommandLine{"VirtioOptionOfAnotherWorkload", "workload=compute virtio.irq=1",
                       "virtio.irq is not a parameter of workload compute"},
        BadCommandLine{"UnknownBenchPattern", "workload=blk-bench bench.pattern=randrw",
                       "bench.pattern=randrw: expected one of: randread randwrite seqread "
                       "seqwrite"},
        BadCommandLine{"BenchBlockSizeNotInSectors", "workload=blk-bench bench.bs=1000",
                       "bench.bs=1000: not a multiple of 512"},
        BadCommandLine{"QueueSizeNotAPowerOfTwo", "workload=blk virtio.queue_size=100",
                       "virtio.queue_size=100: a split virtqueue's size is a power of 2"},
        BadCommandLine{"VerifyOnlyAndLoop", "workload=blk blk.verify-only=1 blk.loop=1",
                       "blk.verify-only=1 and blk.loop=1 exclude each other"},
        BadCommandLine{"NetWithoutAddress", "workload=net", "workload net needs net.ip="},
        BadCommandLine{"NetBadAddress", "workload=net net.ip=10.0.0.300/24",
                       "net.ip=10.0.0.300/24: expected an IPv4 address and prefix length, like "
                       "10.0.0.2/24"},
        BadCommandLine{"NetMulticastMac",
                       "workload=net net.ip=10.0.0.2/24 net.mac=01:00:5e:00:00:01",
                       "net.mac=01:00:5e:00:00:01: expected a unicast MAC address, like "
                       "52:54:00:12:34:56"}),
    [](const ::testing::TestParamInfo<BadCommandLine>& param) { return param.param.name; });

// --- net ---

constexpr char kGuestMac[] = "52:54:00:12:34:56";
constexpr char kGuestIp[] = "10.0.0.2";
constexpr char kHostCidr[] = "10.0.0.1/24";
constexpr char kTap[] = "fgtap0";  // inside the test's own namespace, so no clash

uint16_t internetChecksum(const uint8_t* data, size_t length) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < length; i += 2)
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (length & 1) sum += static_cast<uint32_t>(data[length - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Waits up to `timeout` for a datagram on `fd`; its bytes, or an error.
absl::StatusOr<std::vector<uint8_t>> receive(int fd, absl::Duration timeout) {
  pollfd poll_fd{fd, POLLIN, 0};
  int ready = ::poll(&poll_fd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (ready <= 0) return absl::DeadlineExceededError("nothing received");
  std::vector<uint8_t> data(65536);
  ssize_t got = ::recv(fd, data.data(), data.size(), 0);
  if (got < 0) return absl::ErrnoToStatus(errno, "recv");
  data.resize(static_cast<size_t>(got));
  return data;
}

sockaddr_in guestAddress(uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  ::inet_pton(AF_INET, kGuestIp, &address.sin_addr);
  return address;
}

class GuestNetTest : public GuestVirtioTest {
 protected:
  void SetUp() override {
    GuestVirtioTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_EQ(::geteuid(), 0u)
        << "the net tests create a network namespace and a tap: run them as root";
    auto ip = testing::findProgram("ip", "iproute2");
    ASSERT_TRUE(ip.ok()) << ip.status();
    ip_ = *ip;
    // A namespace of the test's own with a tap inside (address kHostCidr, up); deleting the
    // namespace removes the tap. QEMU runs inside through `ip netns exec`.
    auto netns = testing::NetNamespace::create("gv");
    ASSERT_TRUE(netns.ok()) << netns.status();
    netns_ = std::move(*netns);
    auto tap = netns_->execChecked({"ip", "tuntap", "add", "dev", kTap, "mode", "tap"});
    ASSERT_TRUE(tap.ok()) << tap.status();
    ASSERT_TRUE(netns_->addAddress(kTap, kHostCidr).ok());
    ASSERT_TRUE(netns_->setLinkUp(kTap).ok());
  }

  void TearDown() override {
    if (guest_.valid()) (void)guest_.terminate(absl::Seconds(5));  // before the namespace goes
    GuestVirtioTest::TearDown();
  }

  // Boots the net workload with `options` and waits for its `net up` line.
  void startGuest(const std::string& options) {
    guest_ = start(
        {.cmdline = fmt::format("workload=net net.ip={}/24 {}", kGuestIp, options),
         .devices = {"-netdev", fmt::format("tap,id=n0,ifname={},script=no,downscript=no", kTap),
                     "-device", fmt::format("virtio-net-device,netdev=n0,mac={}", kGuestMac)},
         .wrapper = {ip_, "netns", "exec", netns_->name()}});
    ASSERT_TRUE(guest_.valid());
    ASSERT_TRUE(waitForLines(guest_, "net up ")) << "the guest did not report `net up`";
  }

  // One ICMP echo request through a raw socket; checks the reply's identifier, sequence,
  // data and checksum.
  void ping(int fd, uint16_t sequence) {
    std::vector<uint8_t> request(8 + 56);
    request[0] = 8;  // echo request
    request[4] = 0x46;
    request[5] = 0x4c;  // identifier
    request[6] = static_cast<uint8_t>(sequence >> 8);
    request[7] = static_cast<uint8_t>(sequence);
    for (size_t i = 8; i < request.size(); ++i) request[i] = static_cast<uint8_t>(i * 7 + sequence);
    const uint16_t sum = internetChecksum(request.data(), request.size());
    request[2] = static_cast<uint8_t>(sum >> 8);
    request[3] = static_cast<uint8_t>(sum);
    sockaddr_in to = guestAddress(0);
    ASSERT_EQ(::sendto(fd, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&to),
                       sizeof(to)),
              static_cast<ssize_t>(request.size()));
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (absl::Now() < give_up) {
      auto packet = receive(fd, absl::Seconds(1));
      if (!packet.ok()) continue;
      // A raw socket gets the IP header too, and every ICMP packet (our request included on
      // some paths): skip until the reply.
      const size_t header = (packet->at(0) & 15u) * 4;
      if (packet->size() < header + 8) continue;
      const uint8_t* icmp = packet->data() + header;
      if (icmp[0] != 0 || icmp[4] != 0x46 || icmp[5] != 0x4c ||
          (icmp[6] << 8 | icmp[7]) != sequence) {
        continue;
      }
      EXPECT_EQ(internetChecksum(icmp, packet->size() - header), 0) << "ICMP checksum";
      EXPECT_EQ(internetChecksum(packet->data(), header), 0) << "IPv4 header checksum";
      EXPECT_TRUE(std::equal(request.begin() + 8, request.end(), icmp + 8)) << "echo data";
      return;
    }
    ADD_FAILURE() << "no echo reply to sequence " << sequence;
  }

  // One UDP datagram to `port`; the same payload must come back from that port.
  void udpEcho(int fd, uint16_t port, size_t size) {
    std::vector<uint8_t> payload(size);
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<uint8_t>(i * 13 + port);
    sockaddr_in to = guestAddress(port);
    ASSERT_EQ(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to),
                       sizeof(to)),
              static_cast<ssize_t>(payload.size()));
    pollfd poll_fd{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&poll_fd, 1, 5000), 1) << "no UDP echo from port " << port;
    std::vector<uint8_t> reply(65536);
    sockaddr_in from{};
    socklen_t from_length = sizeof(from);
    ssize_t got = ::recvfrom(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                             &from_length);
    ASSERT_EQ(got, static_cast<ssize_t>(size));
    reply.resize(size);
    EXPECT_EQ(reply, payload);
    EXPECT_EQ(ntohs(from.sin_port), port);
    char from_ip[INET_ADDRSTRLEN] = "";
    ::inet_ntop(AF_INET, &from.sin_addr, from_ip, sizeof(from_ip));
    EXPECT_STREQ(from_ip, kGuestIp);
  }

  std::string ip_;
  std::unique_ptr<testing::NetNamespace> netns_;
  ChildProcess guest_;
};

class GuestNetModeTest : public GuestNetTest, public ::testing::WithParamInterface<ModeVariant> {};

TEST_P(GuestNetModeTest, AnswersArpPingAndUdp) {
  ASSERT_NO_FATAL_FAILURE(startGuest(GetParam().options));
  std::string up = onlyLine("net up ");
  EXPECT_EQ(valueAfter(up, "mac"), kGuestMac);
  EXPECT_EQ(valueAfter(up, "ip"), fmt::format("{}/24", kGuestIp));
  EXPECT_EQ(valueAfter(up, "link"), "up");
  EXPECT_EQ(valueAfter(up, "mac_source"), "device");

  auto icmp = netns_->socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  ASSERT_TRUE(icmp.ok()) << icmp.status();
  for (uint16_t sequence = 1; sequence <= 3; ++sequence) ping(icmp->get(), sequence);

  auto udp = netns_->socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_TRUE(udp.ok()) << udp.status();
  udpEcho(udp->get(), 7, 1);
  udpEcho(udp->get(), 5000, 1000);
  udpEcho(udp->get(), 65535, 1472);  // a full 1514-byte frame

  // The host resolved the guest's address over ARP: the guest answered with its MAC.
  SystemCommandRunner runner;
  auto neighbors = runChecked(runner, {"ip", "-n", netns_->name(), "neigh", "show", kGuestIp});
  ASSERT_TRUE(neighbors.ok()) << neighbors.status();
  EXPECT_THAT(*neighbors, HasSubstr(fmt::format("lladdr {}", kGuestMac)));
  EXPECT_THAT(linesStartingWith(lines(), "error"), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    Modes, GuestNetModeTest,
    ::testing::Values(ModeVariant{"Polling", "", false},
                      ModeVariant{"Interrupts", "virtio.irq=1", true},
                      ModeVariant{"IndirectEventIdx", "virtio.indirect=1 virtio.event_idx=1",
                                  false},
                      ModeVariant{"InterruptsIndirectEventIdx",
                                  "virtio.irq=1 virtio.indirect=1 virtio.event_idx=1", true}),
    [](const ::testing::TestParamInfo<ModeVariant>& param) { return param.param.name; });

TEST_F(GuestNetTest, ExitsAfterThePacketLimit) {
  ASSERT_NO_FATAL_FAILURE(startGuest("net.packets=4 net.stats=1"));
  auto udp = netns_->socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_TRUE(udp.ok()) << udp.status();
  // The ARP reply counts too, so the guest ends after the third datagram at the latest.
  for (uint16_t i = 0; i < 10 && !guest_.wait(absl::ZeroDuration()).ok(); ++i) {
    sockaddr_in to = guestAddress(static_cast<uint16_t>(6000 + i));
    ASSERT_EQ(::sendto(udp->get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 1);
    (void)receive(udp->get(), absl::Seconds(2));
  }
  auto status = guest_.wait(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << "the guest did not exit after net.packets replies";
  EXPECT_EQ(status->code, exitStatusFor(0)) << status->describe();
  std::string done = onlyLine("net done ");
  EXPECT_EQ(numberAfter(done, "replies"), 4u);
  EXPECT_EQ(numberAfter(done, "arp") + numberAfter(done, "udp"), 4u);
}

TEST_F(GuestNetTest, AnnouncesWhenTheDeviceAsks) {
  ASSERT_NO_FATAL_FAILURE(startGuest(""));
  EXPECT_EQ(valueAfter(onlyLine("net up "), "announce"), "1");
  auto arp = netns_->packetSocket(kTap);  // every frame; ARP is picked out below
  ASSERT_TRUE(arp.ok()) << arp.status();
  // QEMU's announce_self sets VIRTIO_NET_S_ANNOUNCE (with GUEST_ANNOUNCE and CTRL_VQ
  // negotiated) and raises a configuration change, as after a live migration.
  auto answer = monitor("announce_self");
  ASSERT_TRUE(answer.ok()) << answer.status();
  const std::array<uint8_t, 6> mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  const std::array<uint8_t, 4> ip = {10, 0, 0, 2};
  bool seen = false;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (!seen && absl::Now() < give_up) {
    auto frame = receive(arp->get(), absl::Seconds(1));
    if (!frame.ok() || frame->size() < 42) continue;
    const uint8_t* f = frame->data();
    // A gratuitous ARP from the guest: sender and target address both its own.
    seen = std::equal(mac.begin(), mac.end(), f + 6) && f[12] == 0x08 && f[13] == 0x06 &&
           std::equal(mac.begin(), mac.end(), f + 22) && std::equal(ip.begin(), ip.end(), f + 28) &&
           std::equal(ip.begin(), ip.end(), f + 38);
  }
  EXPECT_TRUE(seen) << "no gratuitous ARP from the guest";
  EXPECT_TRUE(waitForLines(guest_, "net announce garp=1 ack=ok"));
}

TEST_F(GuestNetTest, ReportsLinkChanges) {
  ASSERT_NO_FATAL_FAILURE(startGuest("virtio.irq=1"));
  auto down = monitor("set_link n0 off");
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_TRUE(waitForLines(guest_, "net link=down"));
  auto up = monitor("set_link n0 on");
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_TRUE(waitForLines(guest_, "net link=up"));
}

}  // namespace
}  // namespace flotilla
