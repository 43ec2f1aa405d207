// The flotilla-vmm command line the agent builds for a VM.
#include "node-agent/vmm_command.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node-agent/names.h"

namespace flotilla::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(VmmCommandTest, BootsTheSpecWithTheAgentsDevicesAndPaths) {
  VmmCommand command;
  command.binary = "/usr/bin/flotilla-vmm";
  command.name = "web1";
  command.spec.set_vcpus(2);
  command.spec.set_memory_bytes(uint64_t{512} << 20);
  command.spec.set_cpu_model("x86-64-v2");
  command.spec.mutable_boot()->set_kernel("/k");
  command.spec.mutable_boot()->set_cmdline("console=ttyS0");
  command.spec.add_disks()->set_read_only(true);
  command.disk_options = {"path=/pool/web1.img"};
  command.nics = {{.child_fd = 3, .mac = "02:00:00:00:00:01", .offload = false}};
  command.api_socket = "/run/vms/web1/api.sock";
  command.serial_path = "/run/vms/web1/serial.log";
  command.log_path = "/run/vms/web1/vmm.log";
  EXPECT_THAT(vmmArgv(command),
              ElementsAre("/usr/bin/flotilla-vmm", "--name", "web1", "--vcpus", "2", "--memory",
                          "512M", "--api-socket", "/run/vms/web1/api.sock", "--serial",
                          "file:/run/vms/web1/serial.log", "--log-file", "/run/vms/web1/vmm.log",
                          "--cpu-model", "x86-64-v2", "--kernel", "/k", "--cmdline",
                          "console=ttyS0", "--disk", "path=/pool/web1.img,readonly", "--net",
                          "fd=3,mac=02:00:00:00:00:01,offload=off"));
}

TEST(VmmCommandTest, IncomingMigrationAddsTheAddressAndTokenAndLeavesTheBootOut) {
  VmmCommand command;
  command.binary = "vmm";
  command.spec.mutable_boot()->set_kernel("/k");
  command.spec.mutable_boot()->set_cmdline("workload=idle");
  command.spec.set_vcpus(1);
  command.spec.set_memory_bytes(uint64_t{128} << 20);
  command.incoming = "tcp:10.0.0.2:7200";
  command.migration_token = "secret";
  std::vector<std::string> argv = vmmArgv(command);
  const std::string joined = ::testing::PrintToString(argv);
  EXPECT_THAT(
      joined,
      HasSubstr("\"--incoming\", \"tcp:10.0.0.2:7200\", \"--migration-token\", \"secret\""));
  EXPECT_THAT(joined, ::testing::Not(HasSubstr("--kernel")));
  EXPECT_THAT(joined, ::testing::Not(HasSubstr("--cmdline")));
}

TEST(NamesTest, TapNamesAreShortStableAndDistinct) {
  const std::string tap = tapName("uid-web1", 0);
  EXPECT_LE(tap.size(), 15u);
  EXPECT_EQ(tap, tapName("uid-web1", 0));
  EXPECT_NE(tap, tapName("uid-web1", 1));
  EXPECT_NE(tap, tapName("uid-web2", 0));
  EXPECT_EQ(tap.substr(0, 2), "fv");
}

TEST(NamesTest, VmNamesAreDnsLabels) {
  EXPECT_TRUE(validateVmName("web-1").ok());
  EXPECT_FALSE(validateVmName("").ok());
  EXPECT_FALSE(validateVmName("-web").ok());
  EXPECT_FALSE(validateVmName("Web").ok());
  EXPECT_FALSE(validateVmName(std::string(64, 'a')).ok());
  EXPECT_THAT(std::string(validateVmName("a_b").message()), HasSubstr("VM name 'a_b'"));
}

}  // namespace
}  // namespace flotilla::agent
