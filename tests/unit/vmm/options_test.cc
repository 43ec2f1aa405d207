// Tests of flotilla-vmm's options: every flag, every key of the YAML file, flags winning over
// the file, and each usage error with its exit status (2) and a message naming the problem.
#include "vmm/options.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "vmm/exit_codes.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<VmmOptions> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "flotilla-vmm");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return parseVmmOptions(static_cast<int>(argv.size()), argv.data());
}

// Expects a usage error (exit status 2) whose message contains `fragment`.
void expectUsageError(const std::vector<std::string>& args, const std::string& fragment) {
  auto options = parse(args);
  ASSERT_FALSE(options.ok()) << "accepted: " << ::testing::PrintToString(args);
  EXPECT_TRUE(absl::IsInvalidArgument(options.status()) || absl::IsNotFound(options.status()))
      << options.status();
  EXPECT_EQ(exitCodeOf(options.status(), -1), kExitUsage) << options.status();
  EXPECT_THAT(options.status().message(), HasSubstr(fragment));
}

std::string writeConfig(const flotilla::testing::TempDir& dir, const std::string& yaml) {
  const std::string path = dir.file("vmm.yaml");
  std::ofstream out(path);
  out << yaml;
  return path;
}

TEST(VmmOptionsTest, DefaultsWithJustAKernel) {
  auto options = parse({"--kernel", "/boot/vmlinuz"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->vm.kernel, "/boot/vmlinuz");
  EXPECT_EQ(options->vm.name, "vm");
  EXPECT_EQ(options->vm.vcpus, 1u);
  EXPECT_EQ(options->vm.memory_bytes, uint64_t{512} << 20);
  EXPECT_EQ(options->vm.cpu_model, "host");
  EXPECT_FALSE(options->vm.hugepages);
  EXPECT_EQ(options->vm.initrd, "");
  EXPECT_EQ(options->vm.cmdline, "");
  EXPECT_EQ(options->vm.console.mode, ConsoleConfig::Mode::kStdout);
  EXPECT_EQ(options->api_socket, "");
  EXPECT_EQ(options->restore, "");
  EXPECT_EQ(options->log.level, LogLevel::kInfo);
  EXPECT_EQ(options->log.file, "");
  EXPECT_FALSE(options->help);
}

TEST(VmmOptionsTest, EveryFlag) {
  auto options = parse({"--name",
                        "web1",
                        "--kernel",
                        "/k",
                        "--initrd",
                        "/i",
                        "--cmdline",
                        "console=ttyS0 quiet",
                        "--memory",
                        "2G",
                        "--vcpus",
                        "4",
                        "--cpu-model",
                        "x86-64-v3",
                        "--hugepages",
                        "--serial",
                        "socket:/run/c.sock",
                        "--api-socket",
                        "/run/a.sock",
                        "--log-level",
                        "debug",
                        "--log-file",
                        "/var/log/vmm.log"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->vm.name, "web1");
  EXPECT_EQ(options->vm.kernel, "/k");
  EXPECT_EQ(options->vm.initrd, "/i");
  EXPECT_EQ(options->vm.cmdline, "console=ttyS0 quiet");
  EXPECT_EQ(options->vm.memory_bytes, uint64_t{2} << 30);
  EXPECT_EQ(options->vm.vcpus, 4u);
  EXPECT_EQ(options->vm.cpu_model, "x86-64-v3");
  EXPECT_TRUE(options->vm.hugepages);
  EXPECT_EQ(options->vm.console.mode, ConsoleConfig::Mode::kSocket);
  EXPECT_EQ(options->vm.console.path, "/run/c.sock");
  EXPECT_EQ(options->api_socket, "/run/a.sock");
  EXPECT_EQ(options->log.level, LogLevel::kDebug);
  EXPECT_EQ(options->log.file, "/var/log/vmm.log");
}

TEST(VmmOptionsTest, EqualsFormWorksToo) {
  auto options = parse({"--kernel=/k", "--memory=1536M", "--vcpus=2"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->vm.memory_bytes, uint64_t{1536} << 20);
  EXPECT_EQ(options->vm.vcpus, 2u);
}

TEST(VmmOptionsTest, EveryKeyOfTheYamlFile) {
  flotilla::testing::TempDir dir;
  const std::string path = writeConfig(dir, R"(name: db1
kernel: /images/bzImage
initrd: /images/initrd.img
cmdline: console=ttyS0 root=/dev/vda
vcpus: 3
memory: 1G
cpu_model: x86-64-v2
hugepages: true
serial: file:/var/log/db1.serial
api_socket: /run/flotilla/db1.sock
log_level: warn
log_file: /var/log/db1.log
)");
  auto options = parse({"--config", path});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->vm.name, "db1");
  EXPECT_EQ(options->vm.kernel, "/images/bzImage");
  EXPECT_EQ(options->vm.initrd, "/images/initrd.img");
  EXPECT_EQ(options->vm.cmdline, "console=ttyS0 root=/dev/vda");
  EXPECT_EQ(options->vm.vcpus, 3u);
  EXPECT_EQ(options->vm.memory_bytes, uint64_t{1} << 30);
  EXPECT_EQ(options->vm.cpu_model, "x86-64-v2");
  EXPECT_TRUE(options->vm.hugepages);
  EXPECT_EQ(options->vm.console.mode, ConsoleConfig::Mode::kFile);
  EXPECT_EQ(options->vm.console.path, "/var/log/db1.serial");
  EXPECT_EQ(options->api_socket, "/run/flotilla/db1.sock");
  EXPECT_EQ(options->log.level, LogLevel::kWarn);
  EXPECT_EQ(options->log.file, "/var/log/db1.log");
}

TEST(VmmOptionsTest, TheYamlFileCanRestoreASnapshot) {
  flotilla::testing::TempDir dir;
  const std::string path = writeConfig(dir, "restore: /var/lib/snap\nserial: none\n");
  auto options = parse({"--config", path});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->restore, "/var/lib/snap");
  EXPECT_EQ(options->vm.console.mode, ConsoleConfig::Mode::kNone);
}

TEST(VmmOptionsTest, FlagsWinOverTheFile) {
  flotilla::testing::TempDir dir;
  const std::string path = writeConfig(dir, R"(name: from-file
kernel: /file/kernel
vcpus: 2
memory: 1G
serial: none
log_level: warn
log_file: /file.log
)");
  auto options = parse({"--vcpus", "8", "--config", path, "--memory", "256M", "--serial", "stdout",
                        "--log-level", "error", "--name", "from-flag"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->vm.vcpus, 8u);
  EXPECT_EQ(options->vm.memory_bytes, uint64_t{256} << 20);
  EXPECT_EQ(options->vm.console.mode, ConsoleConfig::Mode::kStdout);
  EXPECT_EQ(options->log.level, LogLevel::kError);
  EXPECT_EQ(options->vm.name, "from-flag");
  // What no flag gave comes from the file.
  EXPECT_EQ(options->vm.kernel, "/file/kernel");
  EXPECT_EQ(options->log.file, "/file.log");
}

TEST(VmmOptionsTest, MemorySizes) {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  for (Case c : {Case{"512M", uint64_t{512} << 20}, Case{"64m", uint64_t{64} << 20},
                 Case{"2GiB", uint64_t{2} << 30}, Case{"1073741824", uint64_t{1} << 30},
                 Case{"32M", uint64_t{32} << 20}, Case{"1T", uint64_t{1} << 40}}) {
    auto options = parse({"--kernel", "/k", "--memory", c.text});
    ASSERT_TRUE(options.ok()) << c.text << ": " << options.status();
    EXPECT_EQ(options->vm.memory_bytes, c.bytes) << c.text;
  }
}

TEST(VmmOptionsTest, SerialModes) {
  struct Case {
    const char* text;
    ConsoleConfig::Mode mode;
    const char* path;
  };
  for (Case c : {Case{"stdout", ConsoleConfig::Mode::kStdout, ""},
                 Case{"none", ConsoleConfig::Mode::kNone, ""},
                 Case{"file:/tmp/serial.log", ConsoleConfig::Mode::kFile, "/tmp/serial.log"},
                 Case{"socket:/run/c.sock", ConsoleConfig::Mode::kSocket, "/run/c.sock"}}) {
    auto options = parse({"--kernel", "/k", "--serial", c.text});
    ASSERT_TRUE(options.ok()) << c.text << ": " << options.status();
    EXPECT_EQ(options->vm.console.mode, c.mode) << c.text;
    EXPECT_EQ(options->vm.console.path, c.path) << c.text;
  }
  expectUsageError({"--kernel", "/k", "--serial", "tty"},
                   "--serial: serial console 'tty' is not stdout, none, file:PATH or socket:PATH");
  expectUsageError({"--kernel", "/k", "--serial", "file:"}, "--serial:");
}

TEST(VmmOptionsTest, LogLevels) {
  struct Case {
    const char* text;
    LogLevel level;
  };
  for (Case c : {Case{"debug", LogLevel::kDebug}, Case{"info", LogLevel::kInfo},
                 Case{"warn", LogLevel::kWarn}, Case{"warning", LogLevel::kWarn},
                 Case{"error", LogLevel::kError}, Case{"ERROR", LogLevel::kError}}) {
    auto options = parse({"--kernel", "/k", "--log-level", c.text});
    ASSERT_TRUE(options.ok()) << c.text << ": " << options.status();
    EXPECT_EQ(options->log.level, c.level) << c.text;
  }
  expectUsageError({"--kernel", "/k", "--log-level", "verbose"},
                   "--log-level: unknown log level 'verbose': use debug, info, warn or error");
}

TEST(VmmOptionsTest, RestoreAloneNeedsNoKernel) {
  auto options = parse({"--restore", "/var/lib/snap", "--serial", "socket:/run/c.sock",
                        "--api-socket", "/run/a.sock", "--hugepages", "--name", "again"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->restore, "/var/lib/snap");
  EXPECT_EQ(options->vm.kernel, "");
  EXPECT_EQ(options->vm.console.mode, ConsoleConfig::Mode::kSocket);
  EXPECT_TRUE(options->vm.hugepages);
}

TEST(VmmOptionsTest, RestoreExcludesWhatTheSnapshotDecides) {
  const std::string message =
      "--restore resumes a snapshot as it was: --kernel, --initrd, --cmdline, --vcpus, "
      "--memory and --cpu-model do not apply";
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--kernel", "/k"}, std::vector<std::string>{"--initrd", "/i"},
        std::vector<std::string>{"--cmdline", "quiet"}, std::vector<std::string>{"--vcpus", "2"},
        std::vector<std::string>{"--memory", "1G"},
        std::vector<std::string>{"--cpu-model", "x86-64-v2"}}) {
    std::vector<std::string> args = {"--restore", "/var/lib/snap"};
    args.insert(args.end(), extra.begin(), extra.end());
    expectUsageError(args, message);
  }
}

TEST(VmmOptionsTest, IncomingTakesTheVmShapeAndAToken) {
  auto options = parse({"--incoming", "tcp:127.0.0.1:7201", "--migration-token", "t0k3n",
                        "--memory", "1G", "--vcpus", "2", "--net", "tap=vm0"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->incoming, "127.0.0.1:7201");
  EXPECT_EQ(options->migration_token, "t0k3n");
  EXPECT_EQ(options->vm.memory_bytes, uint64_t{1} << 30);
  EXPECT_EQ(options->vm.vcpus, 2u);
  EXPECT_EQ(options->vm.nics.size(), 1u);
}

TEST(VmmOptionsTest, TheMigrationStatusFileGoesWithEveryMode) {
  for (const std::vector<std::string>& mode :
       {std::vector<std::string>{"--kernel", "/k"},
        std::vector<std::string>{"--incoming", "tcp:127.0.0.1:7201", "--migration-token", "t"}}) {
    std::vector<std::string> args = mode;
    args.insert(args.end(), {"--migration-status", "/run/vm1/migration.status"});
    auto options = parse(args);
    ASSERT_TRUE(options.ok()) << options.status();
    EXPECT_EQ(options->migration_status, "/run/vm1/migration.status");
  }
}

TEST(VmmOptionsTest, IncomingMisuseIsAUsageError) {
  expectUsageError({"--incoming", "tcp:127.0.0.1:7201"}, "--incoming needs --migration-token");
  expectUsageError({"--incoming", "127.0.0.1:7201", "--migration-token", "t"},
                   "expected tcp:HOST:PORT");
  expectUsageError({"--incoming", "tcp:127.0.0.1:7201", "--migration-token", "t", "--kernel", "/k"},
                   "--incoming receives a running VM");
  expectUsageError({"--kernel", "/k", "--migration-token", "t"},
                   "--migration-token goes with --incoming");
  expectUsageError({"--incoming", "tcp:127.0.0.1:7201", "--migration-token", "t", "--vcpus", "0"},
                   "0 vCPUs is not possible");
}

TEST(VmmOptionsTest, NothingToRun) {
  expectUsageError(
      {}, "nothing to run: give --kernel FILE to boot, --restore DIR to resume, or --incoming");
  expectUsageError({"--vcpus", "2"}, "nothing to run");
}

TEST(VmmOptionsTest, VcpuCountsOutOfRange) {
  expectUsageError({"--kernel", "/k", "--vcpus", "0"},
                   "0 vCPUs is not possible: give between 1 and 254");
  expectUsageError({"--kernel", "/k", "--vcpus", "255"}, "255 vCPUs is not possible");
  EXPECT_TRUE(parse({"--kernel", "/k", "--vcpus", "254"}).ok());
  expectUsageError({"--kernel", "/k", "--vcpus", "two"}, "see flotilla-vmm --help");
  expectUsageError({"--kernel", "/k", "--vcpus", "-1"}, "see flotilla-vmm --help");
}

TEST(VmmOptionsTest, BadMemory) {
  expectUsageError({"--kernel", "/k", "--memory", "1.5G"}, "--memory: expected a byte size");
  expectUsageError({"--kernel", "/k", "--memory", "1.5G"}, "fractions are not allowed");
  expectUsageError({"--kernel", "/k", "--memory", "lots"}, "--memory:");
  expectUsageError({"--kernel", "/k", "--memory", "512MB"}, "ambiguous");
  expectUsageError({"--kernel", "/k", "--memory", "1M"},
                   "memory of 1048576 bytes is not possible: give at least 32M");
  expectUsageError({"--kernel", "/k", "--memory", "33554433"}, "in whole pages");
}

TEST(VmmOptionsTest, BadYamlFiles) {
  flotilla::testing::TempDir dir;
  std::string path = writeConfig(dir, "kernel: /k\nvcpu: 2\n");
  expectUsageError({"--config", path}, "unknown key 'vcpu'");
  expectUsageError({"--config", path}, path);

  path = writeConfig(dir, "kernel: /k\nvcpus: lots\n");
  expectUsageError({"--config", path}, "vcpus");

  path = writeConfig(dir, "kernel: /k\nmemory: 1.5G\n");
  expectUsageError({"--config", path}, "memory");

  path = writeConfig(dir, "kernel: /k\nserial: tty\n");
  expectUsageError({"--config", path}, "serial console 'tty' is not");

  path = writeConfig(dir, "kernel: /k\nlog_level: loud\n");
  expectUsageError({"--config", path}, "unknown log level 'loud'");

  path = writeConfig(dir, "kernel: /k\nvcpus: 0\n");
  expectUsageError({"--config", path}, "0 vCPUs is not possible");

  const std::string missing = dir.file("missing.yaml");
  expectUsageError({"--config", missing}, missing);
}

TEST(VmmOptionsTest, UnknownFlagsAndStrayArgumentsAreUsageErrors) {
  expectUsageError({"--kernel", "/k", "--bogus"}, "see flotilla-vmm --help");
  expectUsageError({"--kernel", "/k", "extra"}, "see flotilla-vmm --help");
  expectUsageError({"--kernel"}, "see flotilla-vmm --help");
}

TEST(VmmOptionsTest, HelpSetsHelpWithTheText) {
  for (const char* flag : {"--help", "-h"}) {
    auto options = parse({flag});
    ASSERT_TRUE(options.ok()) << options.status();
    EXPECT_TRUE(options->help) << flag;
    EXPECT_THAT(options->help_text, HasSubstr("--kernel"));
    EXPECT_THAT(options->help_text, HasSubstr("host, x86-64-v2, x86-64-v3"));
    EXPECT_THAT(options->help_text, HasSubstr("--restore"));
  }
  auto with_others = parse({"--vcpus", "0", "--help"});
  ASSERT_TRUE(with_others.ok()) << "help wins over what else is wrong";
  EXPECT_TRUE(with_others->help);
}

}  // namespace
}  // namespace flotilla::vmm
