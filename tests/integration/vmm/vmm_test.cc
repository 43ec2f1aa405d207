// flotilla-vmm on /dev/kvm, run as a process the way the agent runs it: the test guest's
// selftest on 1 and 4 vCPUs; a counter guest snapshotted and restored in a new process that
// keeps counting with every page consistent; pause and resume; shutdown; how the VM ends on a
// triple fault, a halt with interrupts off and a keyboard-controller reset; and bad input.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "common/process.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "tests/support/test_images.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::TempDir;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;

// The guest's counter region (guest/README.md): byte 0 of every page from 64 MiB on.
constexpr uint64_t kCounterBase = uint64_t{64} << 20;
constexpr uint64_t kCounterMib = 32;

// The exit status for a value the guest writes to the debug-exit port.
int guestExit(int value) {
  return (value << 1) | 1;
}

std::unique_ptr<VmmProcess> startVmm(const TempDir& dir, const std::string& name,
                                     std::vector<std::string> args) {
  auto vmm = VmmProcess::start(kVmm, std::move(args), dir, name);
  EXPECT_TRUE(vmm.ok()) << vmm.status();
  return vmm.ok() ? std::move(*vmm) : nullptr;
}

// The last "counter pass=N" the guest printed.
uint64_t lastCounterPass(const std::string& serial) {
  static const std::regex pass("counter pass=([0-9]+)");
  uint64_t last = 0;
  for (auto it = std::sregex_iterator(serial.begin(), serial.end(), pass);
       it != std::sregex_iterator(); ++it) {
    last = std::stoull((*it)[1]);
  }
  return last;
}

class VmmSelftestTest : public ::testing::TestWithParam<int> {};

TEST_P(VmmSelftestTest, PassesAndEveryVcpuStarts) {
  TempDir dir;
  const int vcpus = GetParam();
  auto vmm = startVmm(dir, "selftest",
                      {"--kernel", kGuest, "--memory", "128M", "--vcpus", std::to_string(vcpus),
                       "--cmdline", fmt::format("workload=selftest cpus={}", vcpus)});
  ASSERT_NE(vmm, nullptr);
  auto exited = vmm->wait(absl::Minutes(2));
  ASSERT_TRUE(exited.ok()) << exited.status() << "\n" << vmm->serial() << vmm->log();
  std::string serial = vmm->serial();
  EXPECT_EQ(exited->code, guestExit(0)) << serial << vmm->log();
  EXPECT_THAT(serial, HasSubstr("flotilla-guest: ready workload=selftest"));
  EXPECT_THAT(serial, HasSubstr("hypervisor=KVMKVMKVM"));
  EXPECT_THAT(serial, HasSubstr("result selftest lapic-timer"));
  EXPECT_THAT(serial, HasSubstr(fmt::format("result selftest smp cpus={} ok", vcpus)));
  EXPECT_THAT(serial, ::testing::Not(HasSubstr("error")));
}

INSTANTIATE_TEST_SUITE_P(Vcpus, VmmSelftestTest, ::testing::Values(1, 4));

// QEMU's migration test invariant, on the snapshot's memory file: the guest increments byte 0
// of every page in order, so all counters are equal except that a prefix is one step ahead.
void expectCountersConsistent(const std::string& memory_file) {
  std::ifstream in(memory_file, std::ios::binary);
  ASSERT_TRUE(in) << memory_file;
  const uint64_t pages = (kCounterMib << 20) / 4096;
  std::vector<uint8_t> counters(pages);
  for (uint64_t i = 0; i < pages; ++i) {
    in.seekg(static_cast<std::streamoff>(kCounterBase + i * 4096));
    char byte = 0;
    in.read(&byte, 1);
    counters[i] = static_cast<uint8_t>(byte);
  }
  const uint8_t behind = counters.back();
  uint64_t steps = 0;
  for (uint64_t i = 1; i < pages; ++i) {
    if (counters[i] != counters[i - 1]) {
      ++steps;
      EXPECT_EQ(static_cast<uint8_t>(counters[i - 1] - 1), counters[i]) << "page " << i;
    }
  }
  EXPECT_LE(steps, 1u) << "the counters must be equal except for one step";
  EXPECT_TRUE(counters.front() == behind || counters.front() == static_cast<uint8_t>(behind + 1));
}

TEST(VmmSnapshotTest, ACounterGuestRestoredInANewProcessKeepsCounting) {
  TempDir dir;
  const std::string cmdline = fmt::format("workload=counter counter_mib={}", kCounterMib);
  auto source =
      startVmm(dir, "source", {"--kernel", kGuest, "--memory", "256M", "--cmdline", cmdline});
  ASSERT_NE(source, nullptr);
  auto running = source->waitForSerialCount("counter pass=", 2, absl::Minutes(2));
  ASSERT_TRUE(running.ok()) << running.status();
  auto api = source->api();
  ASSERT_TRUE(api.ok()) << api.status();

  const std::string snapshot = dir.file("snapshot");
  flotilla::v1::SnapshotRequest request;
  request.set_directory(snapshot);
  flotilla::v1::SnapshotResponse response;
  grpc::ClientContext context;
  grpc::Status status = (*api)->Snapshot(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // Zero pages are not written, and the one-byte counters wrap to zero every 256 passes: at
  // the wrong moment much of the region reads as zero. The restore below checks every page.
  EXPECT_GT(response.memory_bytes_written(), 0u);
  // The source kept running after the snapshot; stop it before the copy runs.
  const uint64_t before = lastCounterPass(source->serial());
  ASSERT_TRUE(source->process().terminate(absl::Seconds(10)).ok());
  expectCountersConsistent(snapshot + "/memory");

  auto restored = startVmm(dir, "restored", {"--restore", snapshot});
  ASSERT_NE(restored, nullptr);
  // The guest checks every counter it increments against the pass it expects, so two more
  // reports without an error line mean every page came back right.
  auto counting = restored->waitForSerialCount("counter pass=", 2, absl::Minutes(2));
  ASSERT_TRUE(counting.ok()) << counting.status();
  EXPECT_THAT(*counting, ::testing::Not(HasSubstr("error")));
  EXPECT_GT(lastCounterPass(*counting), before / 2) << "it continued, not restarted";
  EXPECT_THAT(restored->log(), HasSubstr("restored 1 vCPUs"));
  ASSERT_TRUE(restored->process().terminate(absl::Seconds(10)).ok());
}

TEST(VmmSnapshotTest, CorruptedSnapshotsAreRefusedWithExitCode8) {
  TempDir dir;
  auto vmm =
      startVmm(dir, "idle", {"--kernel", kGuest, "--memory", "64M", "--cmdline", "workload=idle"});
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->waitForSerial("ready", absl::Minutes(2)).ok());
  auto api = vmm->api();
  ASSERT_TRUE(api.ok()) << api.status();
  const std::string snapshot = dir.file("snapshot");
  {
    flotilla::v1::SnapshotRequest request;
    request.set_directory(snapshot);
    flotilla::v1::SnapshotResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE((*api)->Snapshot(&context, request, &response).ok());
  }
  ASSERT_TRUE(vmm->process().terminate(absl::Seconds(10)).ok());

  auto restoreExit = [&](const std::string& name) {
    UniqueFd err(::open(dir.file(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    SpawnOptions options;
    options.argv = {kVmm, "--restore", snapshot, "--serial", "none"};
    options.fds = {{2, err.get()}};
    auto process = ChildProcess::spawn(options);
    EXPECT_TRUE(process.ok());
    auto exited = process->wait(absl::Minutes(1));
    EXPECT_TRUE(exited.ok());
    return std::make_pair(exited.ok() ? exited->code : -1,
                          ::flotilla::testing::fileTail(dir.file(name)));
  };

  // A flipped byte in the state: the checksum catches it.
  {
    std::fstream state(snapshot + "/state", std::ios::in | std::ios::out | std::ios::binary);
    state.seekp(40);
    state.put('\x5a');
  }
  auto [code, text] = restoreExit("flipped.err");
  EXPECT_EQ(code, 8) << text;
  EXPECT_THAT(text, HasSubstr("corrupted"));

  // A memory file cut short.
  ASSERT_EQ(::truncate((snapshot + "/memory").c_str(), 4096), 0);
  auto [code2, text2] = restoreExit("short.err");
  EXPECT_EQ(code2, 8) << text2;
}

TEST(VmmControlTest, PauseStopsTheGuestAndResumeContinuesIt) {
  TempDir dir;
  auto vmm = startVmm(dir, "dirty",
                      {"--kernel", kGuest, "--memory", "128M", "--cmdline",
                       "workload=dirty dirty_mib=8 rate_mbps=200"});
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->waitForSerial("dirty pass=", absl::Minutes(2)).ok());
  auto api = vmm->api();
  ASSERT_TRUE(api.ok()) << api.status();
  {
    grpc::ClientContext context;
    flotilla::v1::PauseResponse response;
    ASSERT_TRUE((*api)->Pause(&context, {}, &response).ok());
  }
  {
    grpc::ClientContext context;
    flotilla::v1::VmmInfo info;
    ASSERT_TRUE((*api)->GetInfo(&context, {}, &info).ok());
    EXPECT_EQ(info.state(), flotilla::v1::VMM_RUN_STATE_PAUSED);
  }
  const size_t printed = vmm->serial().size();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(vmm->serial().size(), printed) << "a paused guest prints nothing";
  {
    grpc::ClientContext context;
    flotilla::v1::ResumeResponse response;
    ASSERT_TRUE((*api)->Resume(&context, {}, &response).ok());
  }
  // The guest saw the pause as a gap of at least the time it was paused.
  static const std::regex pause_us("max_pause_us=([0-9]+)");
  uint64_t longest = 0;
  for (int attempt = 0; attempt < 100 && longest < 2'000'000; ++attempt) {
    auto output = vmm->waitForSerialCount("dirty pass=", 2, absl::Minutes(1));
    ASSERT_TRUE(output.ok()) << output.status();
    for (auto it = std::sregex_iterator(output->begin(), output->end(), pause_us);
         it != std::sregex_iterator(); ++it) {
      longest = std::max<uint64_t>(longest, std::stoull((*it)[1]));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_GE(longest, 2'000'000u);
  ASSERT_TRUE(vmm->process().terminate(absl::Seconds(10)).ok());
}

TEST(VmmControlTest, ShutdownAsksTheGuestThenStopsTheVm) {
  TempDir dir;
  auto vmm =
      startVmm(dir, "idle", {"--kernel", kGuest, "--memory", "64M", "--cmdline", "workload=idle"});
  ASSERT_NE(vmm, nullptr);
  ASSERT_TRUE(vmm->waitForSerial("ready", absl::Minutes(2)).ok());
  auto api = vmm->api();
  ASSERT_TRUE(api.ok()) << api.status();
  grpc::ClientContext context;
  flotilla::v1::ShutdownRequest request;
  request.set_graceful_timeout_ms(300);  // the test guest ignores Ctrl-Alt-Del
  flotilla::v1::ShutdownResponse response;
  ASSERT_TRUE((*api)->Shutdown(&context, request, &response).ok());
  auto exited = vmm->wait(absl::Minutes(1));
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(exited->code, 0);
  EXPECT_THAT(vmm->log(), HasSubstr("did not shut down within"));
  EXPECT_THAT(vmm->log(), HasSubstr("ending: shutdown"));
}

// A PVH kernel whose entry code is `code`: it starts in 32-bit protected mode with an empty
// IDT, at 1 MiB.
std::string writeKernel(const TempDir& dir, const std::string& name, std::vector<uint8_t> code) {
  testing::ElfSpec spec;
  spec.segments = {{0x100000, std::move(code), 0}};
  spec.entry = 0x100000;
  spec.pvh_entry = 0x100000;
  std::vector<uint8_t> image = testing::buildElf(spec);
  std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(image.data()),
             static_cast<std::streamsize>(image.size()));
  return path;
}

struct EndCase {
  const char* name;
  std::vector<uint8_t> code;
  int exit_code;
  const char* log;
};

void PrintTo(const EndCase& c, std::ostream* os) {
  *os << c.name;
}

class VmmEndTest : public ::testing::TestWithParam<EndCase> {};

TEST_P(VmmEndTest, TheVmEndsCleanlyAndSaysWhy) {
  TempDir dir;
  std::string kernel = writeKernel(dir, "kernel.elf", GetParam().code);
  auto vmm = startVmm(dir, "end", {"--kernel", kernel, "--memory", "64M", "--vcpus", "2"});
  ASSERT_NE(vmm, nullptr);
  auto exited = vmm->wait(absl::Minutes(1));
  ASSERT_TRUE(exited.ok()) << exited.status() << vmm->log();
  EXPECT_EQ(exited->code, GetParam().exit_code) << vmm->log();
  EXPECT_EQ(exited->signal, 0);
  EXPECT_THAT(vmm->log(), HasSubstr(GetParam().log));
}

INSTANTIATE_TEST_SUITE_P(
    Endings, VmmEndTest,
    ::testing::Values(
        // ud2 with an empty IDT: #UD, #DF, triple fault. The report has the registers.
        EndCase{"TripleFault", {0x0f, 0x0b}, 10, "triple-faulted; rip=0x100000"},
        // cli; hlt: nothing can wake the vCPU (the other one was never started).
        EndCase{"HaltWithInterruptsOff", {0xfa, 0xf4}, 0, "halted with interrupts disabled"},
        // mov al, 0xfe; out 0x64, al: pulse the CPU reset line (Linux's reboot=k).
        EndCase{"KeyboardControllerReset", {0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe}, 0, "guest reset"}),
    [](const ::testing::TestParamInfo<EndCase>& param) { return param.param.name; });

struct BadInput {
  const char* name;
  std::vector<std::string> args;  // $DIR is the test's directory
  int exit_code;
  const char* message;
};

void PrintTo(const BadInput& c, std::ostream* os) {
  *os << c.name;
}

class VmmBadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(VmmBadInputTest, OneClearLineAndADistinctExitCode) {
  TempDir dir;
  // Inputs the cases refer to.
  std::ofstream(dir.file("garbage.img")) << std::string(4096, 'x');
  ASSERT_EQ(::mkdir(dir.file("empty-snapshot").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dir.file("foreign-snapshot").c_str(), 0755), 0);
  std::ofstream(dir.file("foreign-snapshot/state")) << std::string(100, 'q');
  std::ofstream(dir.file("foreign-snapshot/memory")) << "";

  std::vector<std::string> argv = {kVmm};
  for (std::string arg : GetParam().args) {
    if (auto at = arg.find("$DIR"); at != std::string::npos) arg.replace(at, 4, dir.path());
    if (arg == "$GUEST") arg = kGuest;
    argv.push_back(arg);
  }
  UniqueFd err(::open(dir.file("stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  SpawnOptions options;
  options.argv = argv;
  options.fds = {{2, err.get()}};
  auto process = ChildProcess::spawn(options);
  ASSERT_TRUE(process.ok()) << process.status();
  auto exited = process->wait(absl::Minutes(1));
  ASSERT_TRUE(exited.ok()) << exited.status();
  std::string stderr_text = ::flotilla::testing::fileTail(dir.file("stderr"));
  EXPECT_EQ(exited->signal, 0) << "no crash";
  EXPECT_EQ(exited->code, GetParam().exit_code) << stderr_text;
  EXPECT_THAT(stderr_text, StartsWith("flotilla-vmm: error: "));
  EXPECT_THAT(stderr_text, HasSubstr(GetParam().message));
  EXPECT_EQ(std::count(stderr_text.begin(), stderr_text.end(), '\n'), 1) << stderr_text;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, VmmBadInputTest,
    ::testing::Values(
        BadInput{"NoKernel", {"--memory", "64M"}, 2, "give --kernel FILE"},
        BadInput{"MissingKernel", {"--kernel", "$DIR/missing.elf"}, 4, "cannot read the kernel"},
        BadInput{"GarbageKernel", {"--kernel", "$DIR/garbage.img"}, 4, "kernel image"},
        BadInput{"ZeroVcpus", {"--kernel", "$GUEST", "--vcpus", "0"}, 2, "0 vCPUs"},
        BadInput{"BadMemorySize", {"--kernel", "$GUEST", "--memory", "lots"}, 2, "--memory"},
        BadInput{"MoreMemoryThanTheHost",
                 {"--kernel", "$GUEST", "--memory", "64T"},
                 6,
                 "more than this host has"},
        BadInput{"UnknownCpuModel",
                 {"--kernel", "$GUEST", "--cpu-model", "pentium"},
                 2,
                 "unknown CPU model 'pentium'"},
        BadInput{"BadSerial", {"--kernel", "$GUEST", "--serial", "tty"}, 2, "--serial"},
        BadInput{"NoSnapshot", {"--restore", "$DIR/empty-snapshot"}, 8, "has no snapshot"},
        BadInput{"ForeignSnapshot",
                 {"--restore", "$DIR/foreign-snapshot"},
                 8,
                 "is not a Flotilla snapshot"},
        BadInput{"RestoreWithKernel",
                 {"--restore", "$DIR/empty-snapshot", "--kernel", "$GUEST"},
                 2,
                 "do not apply"}),
    [](const ::testing::TestParamInfo<BadInput>& param) { return param.param.name; });

// Huge pages the host has not reserved: more than are free (whatever this host reserved).
TEST(VmmBadHugepagesTest, MoreHugePagesThanReservedIsExitCode6) {
  uint64_t free_pages = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  while (meminfo >> key >> value) {
    if (key == "HugePages_Free:") free_pages = value;
    meminfo.ignore(256, '\n');
  }
  const uint64_t mib = std::max<uint64_t>(64, (free_pages + 16) * 2);
  TempDir dir;
  UniqueFd err(::open(dir.file("stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  SpawnOptions options;
  options.argv = {kVmm, "--kernel", kGuest, "--memory", fmt::format("{}M", mib), "--hugepages"};
  options.fds = {{2, err.get()}};
  auto process = ChildProcess::spawn(options);
  ASSERT_TRUE(process.ok()) << process.status();
  auto exited = process->wait(absl::Minutes(1));
  ASSERT_TRUE(exited.ok()) << exited.status();
  std::string text = ::flotilla::testing::fileTail(dir.file("stderr"));
  EXPECT_EQ(exited->code, 6) << text;
  EXPECT_THAT(text, HasSubstr("huge pages"));
  EXPECT_THAT(text, HasSubstr("nr_hugepages"));
}

}  // namespace
}  // namespace flotilla::vmm
