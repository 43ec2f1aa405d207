// The simulator's options: host shapes, validation, names and the per-VM figures that must be
// the same on every run.
#include "controller/sim/sim_options.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::sim {
namespace {

using ::testing::HasSubstr;

TEST(SimHostShapesTest, ParsesCpusAndMemoryPerShape) {
  auto shapes = parseHostShapes("16:64G, 32:128GiB");
  ASSERT_TRUE(shapes.ok()) << shapes.status();
  ASSERT_EQ(shapes->size(), 2u);
  EXPECT_EQ((*shapes)[0], (HostShape{.cpus = 16, .memory_bytes = uint64_t{64} << 30}));
  EXPECT_EQ((*shapes)[1], (HostShape{.cpus = 32, .memory_bytes = uint64_t{128} << 30}));
}

TEST(SimHostShapesTest, RefusesMalformedShapesNamingThePiece) {
  for (const char* bad : {"16", "x:64G", "0:64G", "16:1.5G", "16:512M", "16:64G,", "-4:8G"}) {
    auto shapes = parseHostShapes(bad);
    ASSERT_FALSE(shapes.ok()) << bad;
    EXPECT_EQ(shapes.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(shapes.status().message()), HasSubstr("16:64G,32:128G")) << bad;
  }
  EXPECT_THAT(std::string(parseHostShapes("16:512M").status().message()), HasSubstr("at least 1G"));
}

TEST(SimulatorOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(validateOptions(SimulatorOptions{}).ok());
}

TEST(SimulatorOptionsTest, RefusesWhatCannotWork) {
  auto refused = [](auto change) {
    SimulatorOptions options;
    change(options);
    return validateOptions(options);
  };
  EXPECT_THAT(std::string(refused([](auto& o) { o.hosts = 0; }).message()), HasSubstr("hosts"));
  EXPECT_THAT(std::string(refused([](auto& o) { o.prefix = "Sim_1"; }).message()),
              HasSubstr("DNS"));
  EXPECT_THAT(std::string(refused([](auto& o) { o.shapes.clear(); }).message()),
              HasSubstr("shape"));
  EXPECT_THAT(std::string(refused([](auto& o) {
                            o.report_interval = absl::Seconds(10);
                            o.lease_ttl = absl::Seconds(5);
                          }).message()),
              HasSubstr("shorter than lease_ttl"));
  EXPECT_FALSE(refused([](auto& o) { o.lease_ttl = absl::Seconds(1); }).ok());
  EXPECT_FALSE(refused([](auto& o) {
                 o.vm_cpu_min = 0.9;
                 o.vm_cpu_max = 0.1;
               }).ok());
  EXPECT_FALSE(refused([](auto& o) { o.report_threads = 0; }).ok());
}

TEST(SimHostNameTest, FourDigitsAtLeast) {
  EXPECT_EQ(hostName("sim", 1), "sim-0001");
  EXPECT_EQ(hostName("rack-a", 1000), "rack-a-1000");
  EXPECT_EQ(hostName("sim", 12345), "sim-12345");
}

TEST(SimStableFractionTest, IsFixedByTheKeyAndSpreadsOverTheRange) {
  EXPECT_EQ(stableFraction("vm-1"), stableFraction("vm-1"));
  EXPECT_NE(stableFraction("vm-1"), stableFraction("vm-2"));
  std::set<int> deciles;
  for (int i = 0; i < 1000; ++i) {
    const double f = stableFraction("vm-" + std::to_string(i));
    ASSERT_GE(f, 0.0);
    ASSERT_LT(f, 1.0);
    deciles.insert(static_cast<int>(f * 10));
  }
  EXPECT_EQ(deciles.size(), 10u);
}

TEST(SimStableFractionTest, VmFiguresStayWithinTheirRanges) {
  SimulatorOptions options;
  options.vm_cpu_min = 0.2;
  options.vm_cpu_max = 0.4;
  options.vm_memory_min = 0.5;
  options.vm_memory_max = 0.5;
  for (int i = 0; i < 100; ++i) {
    const std::string vm = "web-" + std::to_string(i);
    EXPECT_GE(vmCpuFraction(options, vm), 0.2);
    EXPECT_LE(vmCpuFraction(options, vm), 0.4);
    EXPECT_DOUBLE_EQ(vmMemoryFraction(options, vm), 0.5);
  }
  EXPECT_NE(vmCpuFraction(options, "web-1"), vmCpuFraction(options, "web-2"));
}

}  // namespace
}  // namespace flotilla::sim
