// clusterctl completion bash|zsh, and the small formatting helpers of the output.
#include <fstream>

#include "cli/output.h"
#include "cli/vm_request.h"
#include "common/command.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/cli/clusterctl_fixture.h"

namespace flotilla::cli::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(ClusterctlTest, BashCompletionMentionsEveryVerbAndParses) {
  RunResult result = runRaw({"completion", "bash"});
  ASSERT_EQ(result.code, 0) << result;
  for (const char* word : {"get",
                           "describe",
                           "create",
                           "delete",
                           "vm",
                           "host",
                           "migration",
                           "rebalance",
                           "watch",
                           "info",
                           "completion",
                           "start",
                           "stop",
                           "restart",
                           "migrate",
                           "cordon",
                           "uncordon",
                           "label",
                           "drain",
                           "undrain",
                           "cancel",
                           "plan",
                           "apply",
                           "--wait",
                           "--allow-cold",
                           "--endpoint",
                           "hosts vms networks pools volumes migrations drains events"}) {
    EXPECT_THAT(result.out, HasSubstr(word)) << word;
  }
  EXPECT_THAT(result.out, HasSubstr("complete -F _clusterctl clusterctl"));

  const std::string path = dir_.file("clusterctl.bash");
  std::ofstream(path) << result.out;
  SystemCommandRunner runner;
  auto syntax = runChecked(runner, {"bash", "-n", path});
  EXPECT_TRUE(syntax.ok()) << syntax.status();
}

// Runs the completion function in bash for the words typed so far (the last one is being
// completed) and returns what it offers. Names of objects would come from `clusterctl get`,
// which is not in PATH here: those cases are not asked.
std::string complete(const std::string& script, const std::string& words) {
  SystemCommandRunner runner;
  auto offered = runChecked(runner, {"bash", "-c",
                                     script + "\nCOMP_WORDS=(" + words +
                                         ")\nCOMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
                                         "_clusterctl\necho \"${COMPREPLY[*]}\"\n"});
  return offered.ok() ? *offered : "error: " + std::string(offered.status().message());
}

TEST_F(ClusterctlTest, BashCompletionOffersWhatFollows) {
  const std::string script = runRaw({"completion", "bash"}).out;
  EXPECT_EQ(complete(script, "clusterctl vm ''"), "start stop restart migrate\n");
  EXPECT_EQ(complete(script, "clusterctl ge"), "get\n");
  EXPECT_EQ(complete(script, "clusterctl get ''"),
            "hosts vms networks pools volumes migrations drains events\n");
  EXPECT_EQ(complete(script, "clusterctl --endpoint x:1 host dr"), "drain\n");
  EXPECT_EQ(complete(script, "clusterctl get vms -o ''"), "table wide json yaml name\n");
  EXPECT_EQ(complete(script, "clusterctl vm migrate --w"), "--wait\n");
  EXPECT_EQ(complete(script, "clusterctl completion ''"), "bash zsh\n");
}

TEST_F(ClusterctlTest, ZshCompletion) {
  RunResult result = runRaw({"completion", "zsh"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_TRUE(result.out.starts_with("#compdef clusterctl\n")) << result;
  EXPECT_THAT(result.out, HasSubstr("bashcompinit"));
  EXPECT_THAT(result.out, HasSubstr("rebalance"));
  RunResult fish = runRaw({"completion", "fish"});
  EXPECT_EQ(fish.code, 2) << fish;
  EXPECT_THAT(fish.err, HasSubstr("use bash or zsh"));
}

TEST(OutputTest, HumanBytes) {
  EXPECT_EQ(humanBytes(0), "0B");
  EXPECT_EQ(humanBytes(512), "512B");
  EXPECT_EQ(humanBytes(256ull << 20), "256M");
  EXPECT_EQ(humanBytes(1536ull << 20), "1.5G");
  EXPECT_EQ(humanBytes(16ull << 30), "16G");
  EXPECT_EQ(humanBytes((1ull << 30) - 1), "1G");
}

TEST(OutputTest, AgesAndEnumWords) {
  EXPECT_EQ(formatAge(absl::Seconds(45)), "45s");
  EXPECT_EQ(formatAge(absl::Minutes(12)), "12m");
  EXPECT_EQ(formatAge(absl::Hours(5)), "5h");
  EXPECT_EQ(formatAge(absl::Hours(72)), "3d");
  EXPECT_EQ(enumWord("VM_STATE_RUNNING", "VM_STATE_"), "Running");
  EXPECT_EQ(enumWord("MIGRATION_POLICY_LIVE_OR_COLD", "MIGRATION_POLICY_"), "LiveOrCold");
  EXPECT_EQ(enumWord("VM_STATE_UNSPECIFIED", "VM_STATE_"), "-");
  EXPECT_EQ(formatTimeMillis(0), "-");
  EXPECT_EQ(formatTimeMillis(1'800'000'000'000), "2027-01-15T08:00:00Z");
}

TEST(OutputTest, TableAlignsColumns) {
  Table table({"NAME", "STATE"});
  table.addRow({"a-long-name", "Running"});
  table.addRow({"b", ""});
  std::ostringstream out;
  table.print(out);
  EXPECT_EQ(out.str(),
            "NAME          STATE\n"
            "a-long-name   Running\n"
            "b\n");
}

TEST(VmRequestTest, DiskAndNicFlags) {
  auto disk = parseDiskFlag("shared/web1,readonly");
  ASSERT_TRUE(disk.ok()) << disk.status();
  EXPECT_EQ(disk->pool(), "shared");
  EXPECT_TRUE(disk->read_only());
  EXPECT_FALSE(parseDiskFlag("/web1").ok());
  EXPECT_FALSE(parseDiskFlag("shared/").ok());
  EXPECT_FALSE(parseDiskFlag("a/b/c").ok());
  auto nic = parseNicFlag("net1,offload=off,mac=52:54:00:AB:cd:01");
  ASSERT_TRUE(nic.ok()) << nic.status();
  EXPECT_EQ(nic->mac(), "52:54:00:AB:cd:01");
  EXPECT_FALSE(nic->offload());
  EXPECT_FALSE(parseNicFlag("").ok());
  EXPECT_FALSE(parseNicFlag("net1,speed=10").ok());
}

}  // namespace
}  // namespace flotilla::cli::testing
