// Host inventory, load and process accounting (node-agent/host/host_info.h) from fixture
// files under testdata/ (proc/ and sys/ as captured on the build machine, an AMD EPYC guest
// with 2 CPUs, plus a VMM process and a zombie), the CPU model table, and one smoke test
// against the real /proc.
#include "node-agent/host/host_info.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::agent {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

HostPaths fixturePaths() {
  return HostPaths{.proc = std::string(FLOTILLA_HOST_TESTDATA) + "/proc",
                   .sys = std::string(FLOTILLA_HOST_TESTDATA) + "/sys",
                   .clock_ticks = 100};
}

TEST(HostInventoryTest, ReadsTheFixtureHost) {
  auto inventory = readHostInventory(fixturePaths());
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  EXPECT_EQ(inventory->hostname, "host-a.example");
  EXPECT_EQ(inventory->cpu_count, 2u);
  EXPECT_EQ(inventory->cpu_model_name, "AMD EPYC");
  EXPECT_THAT(inventory->cpu_flags, Contains("avx2"));
  EXPECT_THAT(inventory->cpu_flags, Contains("hypervisor"));
  EXPECT_TRUE(std::is_sorted(inventory->cpu_flags.begin(), inventory->cpu_flags.end()));
  EXPECT_EQ(inventory->memory_total_bytes, 24683656ull * 1024);
  ASSERT_EQ(inventory->huge_pages.size(), 2u);
  EXPECT_EQ(inventory->huge_pages[0].page_bytes, 2u << 20);
  EXPECT_EQ(inventory->huge_pages[0].total, 16u);
  EXPECT_EQ(inventory->huge_pages[0].free, 12u);
  EXPECT_EQ(inventory->huge_pages[1].page_bytes, 1u << 30);
  EXPECT_THAT(inventory->runnableCpuModels(), ElementsAre("host", "x86-64-v2", "x86-64-v3"));
}

TEST(HostInventoryTest, WithoutHugePageSupportThereAreNoPools) {
  HostPaths paths = fixturePaths();
  paths.sys = "/nonexistent";
  auto inventory = readHostInventory(paths);
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  EXPECT_THAT(inventory->huge_pages, IsEmpty());
}

TEST(HostInventoryTest, AMissingFileIsNamed) {
  HostPaths paths = fixturePaths();
  paths.proc = "/nonexistent/proc";
  auto inventory = readHostInventory(paths);
  ASSERT_FALSE(inventory.ok());
  EXPECT_TRUE(absl::IsNotFound(inventory.status()));
  EXPECT_THAT(inventory.status().message(), HasSubstr("/nonexistent/proc/sys/kernel/hostname"));
}

// The flags of a Westmere-era Xeon: the v2 baseline, no AVX.
constexpr const char* kWestmereCpuinfo =
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU X5650\n"
    "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 "
    "clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc "
    "pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 cx16 xtpr pdcm pcid dca sse4_1 "
    "sse4_2 popcnt aes lahf_lm\n\nprocessor\t: 1\nflags\t\t: fpu\n";

TEST(CpuModelTest, AHostWithoutAvxRunsHostAndV2) {
  auto info = parseCpuInfo(kWestmereCpuinfo);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cpu_count, 2u);
  EXPECT_EQ(info->model_name, "Intel(R) Xeon(R) CPU X5650");
  EXPECT_THAT(info->flags, Contains("sse4_2")) << "the flags of the first CPU";
  std::vector<CpuModelSupport> models = cpuModelSupport(info->flags);
  ASSERT_EQ(models.size(), 3u);
  EXPECT_EQ(models[0].model, "host");
  EXPECT_TRUE(models[0].runnable());
  EXPECT_EQ(models[1].model, "x86-64-v2");
  EXPECT_TRUE(models[1].runnable());
  EXPECT_EQ(models[2].model, "x86-64-v3");
  EXPECT_THAT(models[2].missing,
              ElementsAre("fma", "movbe", "xsave", "avx", "f16c", "bmi1", "avx2", "bmi2", "abm"));
}

TEST(CpuModelTest, V2NeedsEachOfItsFlagsUnderItsCpuinfoName) {
  auto info = parseCpuInfo(kWestmereCpuinfo);
  ASSERT_TRUE(info.ok());
  for (const char* flag : {"pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lahf_lm"}) {
    std::vector<std::string> flags;
    for (const std::string& f : info->flags) {
      if (f != flag) flags.push_back(f);
    }
    std::vector<CpuModelSupport> models = cpuModelSupport(flags);
    EXPECT_TRUE(models[0].runnable()) << flag;
    EXPECT_THAT(models[1].missing, ElementsAre(flag));
  }
}

TEST(CpuModelTest, A32BitOrUnknownCpuRunsNothing) {
  std::vector<CpuModelSupport> models = cpuModelSupport({"fpu", "sse", "sse2"});
  for (const CpuModelSupport& model : models) {
    EXPECT_FALSE(model.runnable()) << model.model;
    EXPECT_THAT(model.missing, Contains("lm")) << model.model;
  }
}

TEST(CpuInfoTest, TextWithoutProcessorsIsRefused) {
  auto info = parseCpuInfo("MemTotal: 1 kB\n");
  ASSERT_FALSE(info.ok());
  EXPECT_THAT(info.status().message(), HasSubstr("no processor"));
}

TEST(CpuTimesTest, ReadsTheAggregateLine) {
  auto times = readCpuTimes(fixturePaths());
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_EQ(times->user, 2788546u);
  EXPECT_EQ(times->nice, 17771u);
  EXPECT_EQ(times->system, 627958u);
  EXPECT_EQ(times->idle, 2139157u);
  EXPECT_EQ(times->iowait, 14909u);
  EXPECT_EQ(times->irq, 0u);
  EXPECT_EQ(times->softirq, 19810u);
  EXPECT_EQ(times->steal, 14250u);
}

TEST(CpuTimesTest, OldKernelsWithFewerCountersAndErrors) {
  auto old = parseCpuTimes("cpu  10 20 30 40\ncpu0 1 2 3 4\n");  // Linux 2.4: no iowait on
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->idle, 40u);
  EXPECT_EQ(old->iowait, 0u);
  EXPECT_EQ(old->steal, 0u);
  EXPECT_THAT(parseCpuTimes("cpu 1 2 3\n").status().message(), HasSubstr("too short"));
  EXPECT_THAT(parseCpuTimes("cpu0 1 2 3 4 5\n").status().message(), HasSubstr("no aggregate"));
  EXPECT_THAT(parseCpuTimes("cpu 1 2 x 4 5\n").status().message(),
              HasSubstr("counter 3 of the cpu line"));
}

TEST(CpuUtilisationTest, BusyAndStealBetweenTwoSamples) {
  CpuTimes before{.user = 100, .idle = 100};
  CpuTimes after{.user = 150, .system = 20, .idle = 120, .iowait = 10, .steal = 20};
  // 120 ticks passed: 30 idle or iowait, 90 busy of which 20 steal.
  CpuUtilisation result = cpuUtilisation(before, after);
  EXPECT_DOUBLE_EQ(result.busy, 90.0 / 120.0);
  EXPECT_DOUBLE_EQ(result.steal, 20.0 / 120.0);
}

TEST(CpuUtilisationTest, NoTimeOrCountersGoingBackGiveZero) {
  CpuTimes sample{.user = 100, .idle = 100};
  CpuUtilisation same = cpuUtilisation(sample, sample);
  EXPECT_EQ(same.busy, 0.0);
  CpuTimes later_idle_lower{.user = 300, .idle = 90};
  EXPECT_EQ(cpuUtilisation(sample, later_idle_lower).busy, 0.0);
  EXPECT_EQ(cpuUtilisation(CpuTimes{.user = 500}, sample).busy, 0.0);
}

TEST(HostLoadTest, ReadsMemAvailableAndTheLoadAverage) {
  auto load = readHostLoad(fixturePaths());
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ(load->memory_total_bytes, 24683656ull * 1024);
  EXPECT_EQ(load->memory_available_bytes, 22894176ull * 1024);
  EXPECT_DOUBLE_EQ(load->load1, 2.48);
  EXPECT_DOUBLE_EQ(load->load5, 1.80);
  EXPECT_DOUBLE_EQ(load->load15, 1.66);
}

TEST(ProcStatTest, ParsesTheFieldsAfterACommWithSpacesAndParentheses) {
  auto stat = parseProcStat(
      "77 (a) b) c) R 1 77 77 0 -1 4194304 98 0 0 0 250 50 0 0 20 0 1 0 123456 3133440 385 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0");
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->pid, 77);
  EXPECT_EQ(stat->comm, "a) b) c");
  EXPECT_EQ(stat->state, 'R');
  EXPECT_EQ(stat->cpu_ticks, 300u);
  EXPECT_EQ(stat->start_time, 123456u);
}

TEST(ProcStatTest, MalformedLinesAreRefused) {
  EXPECT_THAT(parseProcStat("77 noparen R 1").status().message(), HasSubstr("no '(comm)'"));
  EXPECT_THAT(parseProcStat("77 (x) R 1 2 3").status().message(), HasSubstr("too few fields"));
  EXPECT_THAT(parseProcStat("x (y) R 1 2 3").status().message(), HasSubstr("bad pid"));
}

TEST(ProcessStatsTest, ReadsCpuTimeRssAndStartTime) {
  auto stats = readProcessStats(4242, fixturePaths());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pid, 4242);
  EXPECT_EQ(stats->comm, "flotilla-vmm");
  EXPECT_EQ(stats->state, 'S');
  EXPECT_EQ(stats->cpu_ns, (1234u + 567u) * 10'000'000ull);  // 100 ticks per second
  EXPECT_EQ(stats->rss_bytes, 524288ull * 1024);
  EXPECT_EQ(stats->start_time, 2820223u);
}

TEST(ProcessStatsTest, AZombieHasNoResidentMemory) {
  auto stats = readProcessStats(4243, fixturePaths());
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->comm, "vmm (old)");
  EXPECT_EQ(stats->state, 'Z');
  EXPECT_EQ(stats->rss_bytes, 0u);
}

TEST(ProcessStatsTest, AMissingProcessIsNotFound) {
  auto stats = readProcessStats(999999, fixturePaths());
  EXPECT_TRUE(absl::IsNotFound(stats.status())) << stats.status();
  EXPECT_THAT(stats.status().message(), HasSubstr("process 999999 does not exist"));
}

TEST(ProcessIdentityTest, SamePidAndStartTimeIsTheSameProcess) {
  HostPaths paths = fixturePaths();
  EXPECT_TRUE(*isSameProcess({.pid = 4242, .start_time = 2820223}, paths));
  EXPECT_FALSE(*isSameProcess({.pid = 4242, .start_time = 2820224}, paths)) << "a reused pid";
  EXPECT_FALSE(*isSameProcess({.pid = 4243, .start_time = 2800000}, paths)) << "a zombie";
  EXPECT_FALSE(*isSameProcess({.pid = 999999, .start_time = 1}, paths)) << "gone";
}

// The real /proc of the machine running the tests (no root needed).
TEST(HostInfoOnThisMachineTest, ReadsItselfAndTheHost) {
  auto self = readProcessStats(::getpid());
  ASSERT_TRUE(self.ok()) << self.status();
  EXPECT_EQ(self->state, 'R');
  EXPECT_GT(self->rss_bytes, 0u);
  EXPECT_TRUE(*isSameProcess({.pid = ::getpid(), .start_time = self->start_time}));

  auto inventory = readHostInventory();
  ASSERT_TRUE(inventory.ok()) << inventory.status();
  EXPECT_EQ(inventory->cpu_count, static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_GT(inventory->memory_total_bytes, 0u);
  EXPECT_THAT(inventory->runnableCpuModels(), Contains("host"));

  auto load = readHostLoad();
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_LE(load->memory_available_bytes, load->memory_total_bytes);
  auto times = readCpuTimes();
  ASSERT_TRUE(times.ok()) << times.status();
  EXPECT_GT(times->total(), 0u);
}

}  // namespace
}  // namespace flotilla::agent
