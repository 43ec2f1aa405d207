// Every piece of a VM's state survives save → restore → save unchanged, on /dev/kvm with the
// VMM embedded in the test: vCPU registers, FPU/XSAVE, MSRs, LAPIC, events, debug registers,
// the interrupt controllers and the devices, virtio transports and queues in use included. Values
// that move with time by themselves (the kvmclock, the TSC, timer counts) are compared apart from
// the rest.
#include <fstream>
#include <sstream>

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "tests/support/vmm_process.h"
#include "vmm/state/snapshot.h"
#include "vmm/vm.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::TempDir;

constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrTscDeadline = 0x6e0;
constexpr size_t kLapicCurrentCount = 0x390;  // TMCCT: counts down on its own

std::string fileText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Waits until the console file shows `text`.
bool waitForConsole(const std::string& path, const std::string& text) {
  for (int i = 0; i < 3000; ++i) {
    if (fileText(path).find(text) != std::string::npos) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// The state with the values that change by themselves while a VM exists cleared.
flotilla::v1::VmSnapshot withoutClocks(flotilla::v1::VmSnapshot state) {
  state.mutable_irqchip()->clear_clock_ns();
  state.mutable_irqchip()->clear_pit();  // channel load times are host timestamps
  for (flotilla::v1::VcpuState& vcpu : *state.mutable_vcpus()) {
    for (flotilla::v1::Msr& msr : *vcpu.mutable_msrs()) {
      if (msr.index() == kMsrTsc || msr.index() == kMsrTscDeadline) msr.set_value(0);
    }
    std::string lapic = vcpu.lapic();
    std::fill_n(lapic.begin() + kLapicCurrentCount, 4, '\0');
    vcpu.set_lapic(lapic);
  }
  return state;
}

// Runs `config` until its console shows `ready`, pauses and saves it, restores the saved state
// into a new VM (paused) and saves that: both states must be the same but for the clocks. The
// first state goes to `first`.
void expectSameStateAfterRestore(const VmConfig& config, const std::string& ready,
                                 const TempDir& dir, flotilla::v1::VmSnapshot& first) {
  auto vm = Vm::create(config);
  ASSERT_TRUE(vm.ok()) << vm.status();
  ASSERT_TRUE((*vm)->start().ok());
  ASSERT_TRUE(waitForConsole(config.console.path, ready)) << fileText(config.console.path);
  ASSERT_TRUE((*vm)->pause().ok());
  auto saved = (*vm)->saveState();
  ASSERT_TRUE(saved.ok()) << saved.status();
  first = *saved;
  ASSERT_TRUE(writeSnapshot(dir.file("snapshot"), *saved, (*vm)->memory()).ok());
  ASSERT_TRUE(commitSnapshot(dir.file("snapshot")).ok());
  (*vm)->shutdown(absl::ZeroDuration());
  (*vm)->waitForEnd();

  auto state = readSnapshotState(dir.file("snapshot"));
  ASSERT_TRUE(state.ok()) << state.status();
  auto memory = readSnapshotMemory(dir.file("snapshot"), *state);
  ASSERT_TRUE(memory.ok()) << memory.status();
  VmConfig restore_config;
  restore_config.console = {ConsoleConfig::Mode::kNone, ""};
  auto restored = Vm::restore(restore_config, std::move(*memory), *state);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_TRUE((*restored)->start(/*paused=*/true).ok());
  auto again = (*restored)->saveState();
  ASSERT_TRUE(again.ok()) << again.status();

  EXPECT_EQ(withoutClocks(*saved).SerializeAsString(), withoutClocks(*again).SerializeAsString())
      << "first:\n"
      << withoutClocks(*saved).ShortDebugString().substr(0, 2000) << "\nsecond:\n"
      << withoutClocks(*again).ShortDebugString().substr(0, 2000);
  ASSERT_EQ(static_cast<uint32_t>(saved->vcpus_size()), config.vcpus);
  // The clocks moved on, but never backwards.
  EXPECT_GE(again->irqchip().clock_ns(), saved->irqchip().clock_ns());
  (*restored)->shutdown(absl::ZeroDuration());
  (*restored)->waitForEnd();
}

TEST(VmStateRoundTripTest, SaveRestoreSaveGivesTheSameState) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  TempDir dir;
  VmConfig config;
  config.name = "roundtrip";
  config.kernel = kGuest;
  config.memory_bytes = uint64_t{128} << 20;
  config.vcpus = 2;
  config.cmdline = "workload=selftest cpus=2";
  config.console = {ConsoleConfig::Mode::kFile, dir.file("console")};
  // Past the selftest's SMP start-up, so that both vCPUs and the LAPIC timers hold state. (The
  // selftest then reports through the debug-exit port and halts: its vCPUs, the boot one
  // halted and the other spinning at CPL3, are saved as they are.)
  flotilla::v1::VmSnapshot saved;
  expectSameStateAfterRestore(config, "result selftest smp", dir, saved);
}

// The virtio transports and their queues in use: a guest looping over writes and reads on a
// virtio-blk disk with interrupts and VIRTIO_F_EVENT_IDX is saved between requests (pause
// completes those in flight), so that features, ring addresses, the queue positions (next
// available and used, the last used index signalled) and the interrupt status all hold values
// of a running driver. An rng device the guest does not drive comes along as it is.
TEST(VmStateRoundTripTest, SaveRestoreSaveGivesTheSameVirtioState) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok()) << ::flotilla::testing::requireKvm();
  TempDir dir;
  auto disk = dir.sparseFile("disk.img", uint64_t{16} << 20);
  ASSERT_TRUE(disk.ok()) << disk.status();
  VmConfig config;
  config.name = "roundtrip-virtio";
  config.kernel = kGuest;
  config.memory_bytes = uint64_t{128} << 20;
  config.cmdline = "workload=blk blk.mib=2 blk.loop=1 virtio.irq=1 virtio.event_idx=1";
  config.console = {ConsoleConfig::Mode::kFile, dir.file("console")};
  DiskConfig disk_config;
  disk_config.path = *disk;
  config.disks.push_back(disk_config);
  config.rng = true;
  flotilla::v1::VmSnapshot saved;
  expectSameStateAfterRestore(config, "blk loop round=", dir, saved);
  // What was compared is a queue in use.
  ASSERT_EQ(saved.virtio_size(), 2);
  const flotilla::v1::VirtioQueueState& queue = saved.virtio(0).queues(0);
  EXPECT_GT(queue.next_avail(), 0u);
  EXPECT_EQ(queue.next_used(), queue.next_avail()) << "requests in flight after the pause";
  EXPECT_TRUE(queue.signalled_used_valid());
  EXPECT_NE(saved.virtio(0).driver_features(), 0u);
}

}  // namespace
}  // namespace flotilla::vmm
