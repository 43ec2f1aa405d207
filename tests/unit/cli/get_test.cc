// clusterctl get, describe, info and watch against the fake ClusterService: tables, JSON,
// YAML and names of every kind.
#include <yaml-cpp/yaml.h>

#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/cli/clusterctl_fixture.h"

namespace flotilla::cli::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// One kind: the `get` word, a name it lists, the key of its list in JSON/YAML, and a header
// and a cell its table shows.
struct KindCase {
  std::string kind;
  std::string name;       // an object `get KIND` lists
  std::string list_key;   // ListXResponse's repeated field
  std::string name_path;  // where the name is in one object ("name" or "meta.name")
  std::string header;     // a table header
  std::string cell;       // a cell of that object's row
};

std::vector<KindCase> kindCases() {
  return {
      {"hosts", "host-a", "hosts", "name", "STATUS", "Ready"},
      {"vms", "web1", "vms", "name", "HOST", "host-a"},
      {"networks", "net1", "networks", "meta.name", "VLAN", "100"},
      {"pools", "shared", "pools", "meta.name", "TYPE", "iscsi"},
      {"volumes", "web1", "volumes", "meta.name", "ATTACHED-TO", "1G"},
      {"migrations", "web1-old", "migrations", "meta.name", "PHASE", "Succeeded"},
      {"drains", "host-b", "drains", "meta.name", "DONE", "1/2"},
      {"events", "web1", "events", "object", "REASON", "Scheduled"},
  };
}

std::string nameAt(const nlohmann::json& object, const std::string& path) {
  if (path == "meta.name") return object.at("meta").at("name").get<std::string>();
  return object.at(path).get<std::string>();
}

std::string nameAt(const YAML::Node& object, const std::string& path) {
  if (path == "meta.name") return object["meta"]["name"].as<std::string>();
  return object[path].as<std::string>();
}

class GetKindTest : public ClusterctlTest, public ::testing::WithParamInterface<KindCase> {};

TEST_P(GetKindTest, Table) {
  const KindCase& c = GetParam();
  RunResult result = run({"get", c.kind});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, AllOf(HasSubstr(c.header), HasSubstr(c.name), HasSubstr(c.cell)));
  EXPECT_EQ(result.err, "");
}

TEST_P(GetKindTest, Wide) {
  const KindCase& c = GetParam();
  RunResult narrow = run({"get", c.kind});
  RunResult wide = run({"get", c.kind, "-o", "wide"});
  ASSERT_EQ(wide.code, 0) << wide;
  // Every line of a wide table is longer: it has more columns.
  const std::string first_narrow = narrow.out.substr(0, narrow.out.find('\n'));
  const std::string first_wide = wide.out.substr(0, wide.out.find('\n'));
  EXPECT_GT(first_wide.size(), first_narrow.size()) << wide;
  EXPECT_THAT(wide.out, HasSubstr(c.name));
}

TEST_P(GetKindTest, Json) {
  const KindCase& c = GetParam();
  RunResult result = run({"get", c.kind, "-o", "json"});
  ASSERT_EQ(result.code, 0) << result;
  const nlohmann::json document = nlohmann::json::parse(result.out);
  ASSERT_TRUE(document.contains(c.list_key)) << result;
  bool found = false;
  for (const auto& object : document.at(c.list_key)) found |= nameAt(object, c.name_path) == c.name;
  EXPECT_TRUE(found) << result;
}

TEST_P(GetKindTest, Yaml) {
  const KindCase& c = GetParam();
  RunResult result = run({"get", c.kind, "-o", "yaml"});
  ASSERT_EQ(result.code, 0) << result;
  const YAML::Node document = YAML::Load(result.out);
  ASSERT_TRUE(document[c.list_key].IsSequence()) << result;
  bool found = false;
  for (const auto& object : document[c.list_key]) found |= nameAt(object, c.name_path) == c.name;
  EXPECT_TRUE(found) << result;
}

TEST_P(GetKindTest, Names) {
  const KindCase& c = GetParam();
  RunResult result = run({"get", c.kind, "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("/" + c.name + "\n"));
}

INSTANTIATE_TEST_SUITE_P(Kinds, GetKindTest, ::testing::ValuesIn(kindCases()),
                         [](const auto& test_info) { return test_info.param.kind; });

TEST_F(ClusterctlTest, GetHostsTableShowsStateLoadAndCordon) {
  RunResult result = run({"get", "hosts"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out,
            "NAME     STATUS           VMS   CPUS   CPU   MEMORY     AGE\n"
            "host-a   Ready            2     8      25%   512M/16G   3h\n"
            "host-b   Ready,Cordoned   0     4      25%   0B/8G      3h\n");
}

TEST_F(ClusterctlTest, GetVmsWideShowsPlacementDetails) {
  RunResult result = run({"get", "vms", "-o", "wide"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("live-or-cold"));
  EXPECT_THAT(result.out, HasSubstr("no host fits"));
  EXPECT_THAT(result.out, HasSubstr("5m"));
}

TEST_F(ClusterctlTest, GetOneObjectPrintsTheObjectItself) {
  RunResult json = run({"get", "vm", "web1", "-o", "json"});
  ASSERT_EQ(json.code, 0) << json;
  const nlohmann::json vm = nlohmann::json::parse(json.out);
  EXPECT_EQ(vm.at("name"), "web1");
  // Protobuf's JSON mapping writes 64-bit integers as strings...
  EXPECT_EQ(vm.at("record").at("spec").at("memory_bytes"), "268435456");
  EXPECT_EQ(vm.at("status").at("state"), "VM_STATE_RUNNING");

  RunResult yaml = run({"get", "vm", "web1", "-o", "yaml"});
  ASSERT_EQ(yaml.code, 0) << yaml;
  const YAML::Node node = YAML::Load(yaml.out);
  // ...YAML as numbers.
  EXPECT_EQ(node["record"]["spec"]["memory_bytes"].as<uint64_t>(), uint64_t{268435456});
  EXPECT_THAT(yaml.out, HasSubstr("memory_bytes: 268435456\n"));
  EXPECT_EQ(node["record"]["spec"]["ha"].as<bool>(), true);
  EXPECT_EQ(node["status"]["host"].as<std::string>(), "host-a");
}

TEST_F(ClusterctlTest, YamlQuotesStringsThatWouldReadAsOtherTypes) {
  v1::NetworkRecord network;
  network.mutable_meta()->set_name("net2");
  network.set_vlan(200);
  network.set_description("true");
  (*network.mutable_meta()->mutable_labels())["rack"] = "12";
  fake().addNetwork(network);
  RunResult result = run({"get", "network", "net2", "-o", "yaml"});
  ASSERT_EQ(result.code, 0) << result;
  const YAML::Node node = YAML::Load(result.out);
  EXPECT_THAT(result.out, HasSubstr("description: \"true\""));
  EXPECT_THAT(result.out, HasSubstr("rack: \"12\""));
  EXPECT_EQ(node["vlan"].as<int>(), 200);
}

TEST_F(ClusterctlTest, GetVolumesByPoolAndByName) {
  RunResult pool = run({"get", "volumes", "shared"});
  ASSERT_EQ(pool.code, 0) << pool;
  EXPECT_THAT(pool.out, HasSubstr("web1"));
  EXPECT_EQ(fake().lastRequest<v1::ListVolumesClusterRequest>("ListVolumes")->pool(), "shared");

  RunResult one = run({"get", "volume", "shared/web1", "-o", "json"});
  ASSERT_EQ(one.code, 0) << one;
  EXPECT_EQ(nlohmann::json::parse(one.out).at("size_bytes"), "1073741824");

  RunResult missing = run({"get", "volume", "shared/nope"});
  EXPECT_EQ(missing.code, 3) << missing;
  EXPECT_EQ(missing.err, "clusterctl: volume shared/nope not found\n");
}

TEST_F(ClusterctlTest, GetVmsOfOneHost) {
  RunResult result = run({"get", "vms", "--host", "host-a", "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "vm/web1\nvm/web2\n");
  EXPECT_EQ(fake().lastRequest<v1::ListVmsRequest>("ListVms")->host(), "host-a");
}

TEST_F(ClusterctlTest, GetEventsOfOneObjectWithALimit) {
  RunResult result = run({"get", "events", "db1", "--limit", "5"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, AllOf(HasSubstr("Unschedulable"), Not(HasSubstr("Scheduled "))));
  auto request = fake().lastRequest<v1::ListEventsRequest>("ListEvents");
  EXPECT_EQ(request->object(), "db1");
  EXPECT_EQ(request->limit(), 5u);
}

TEST_F(ClusterctlTest, EmptyListSaysSoOnStandardError) {
  RunResult result = run({"get", "vms", "--host", "host-b"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "");
  EXPECT_EQ(result.err, "No vms found.\n");
}

TEST_F(ClusterctlTest, DescribeVmShowsSpecPlacementReasonsAndEvents) {
  RunResult result = run({"describe", "vm", "db1"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("Name:                 db1"));
  EXPECT_THAT(result.out, HasSubstr("State:                Pending"));
  EXPECT_THAT(result.out, HasSubstr("Memory:             64G"));
  EXPECT_THAT(result.out, HasSubstr("shared/db1"));
  EXPECT_THAT(result.out, HasSubstr("Unschedulable:\n  host-a: 64G memory needed, 15.5G free\n"));
  EXPECT_THAT(result.out, HasSubstr("Events:"));
  EXPECT_THAT(result.out, HasSubstr("no host has 64G free"));
}

TEST_F(ClusterctlTest, DescribeHostShowsCapacityVmsAndDrain) {
  RunResult result = run({"describe", "host", "host-b"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("Cordoned:             yes: disk replacement"));
  EXPECT_THAT(result.out, HasSubstr("Drain:                Failed, 1/2 done, 1 failed"));
  EXPECT_THAT(result.out, HasSubstr("CPUs:               4 (Test CPU)"));

  RunResult host_a = run({"describe", "host", "host-a"});
  ASSERT_EQ(host_a.code, 0) << host_a;
  EXPECT_THAT(host_a.out, HasSubstr("web2"));
  EXPECT_THAT(host_a.out, Not(HasSubstr("Drain:")));
}

TEST_F(ClusterctlTest, DescribeMigrationAndDrain) {
  RunResult migration = run({"describe", "migration", "web1-old"});
  ASSERT_EQ(migration.code, 0) << migration;
  EXPECT_THAT(migration.out, HasSubstr("Sent:                 300M in 3 round(s)"));
  EXPECT_THAT(migration.out, HasSubstr("Downtime:             2.5ms"));
  EXPECT_THAT(migration.out, HasSubstr("Duration:             10.0s"));

  RunResult drain = run({"describe", "drain", "host-b"});
  ASSERT_EQ(drain.code, 0) << drain;
  EXPECT_THAT(drain.out, HasSubstr("policy live: no live target"));
  EXPECT_THAT(drain.out, HasSubstr("Progress:             1/2 done, 1 failed"));
}

TEST_F(ClusterctlTest, DescribeOtherKindsIsAUsageError) {
  RunResult result = run({"describe", "network", "net1"});
  EXPECT_EQ(result.code, 2) << result;
  EXPECT_THAT(result.err, HasSubstr("use host, vm, migration or drain"));
}

TEST_F(ClusterctlTest, InfoShowsReplicaLeaderAndEveryEndpoint) {
  fake().setLeader("ctl-1");
  RunResult result = runRaw(
      {"--plaintext", "--endpoint", server_.endpoint(), "--endpoint", deadEndpoint(dir_), "info"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_THAT(result.out, HasSubstr("Replica:        ctl-1"));
  EXPECT_THAT(result.out, HasSubstr("Leader:         ctl-1"));
  EXPECT_THAT(result.out, HasSubstr("etcd:           127.0.0.1:2379"));
  EXPECT_THAT(result.out, HasSubstr("ok (leader)"));
  EXPECT_THAT(result.out, HasSubstr("cannot connect"));

  RunResult json = run({"info", "-o", "json"});
  ASSERT_EQ(json.code, 0) << json;
  EXPECT_EQ(nlohmann::json::parse(json.out).at("replica"), "ctl-1");
}

TEST_F(ClusterctlTest, WatchPrintsALinePerChange) {
  RunResult result = run({"watch", "vms", "--limit", "3"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out,
            "vm/db1: Pending: no host fits\n"
            "vm/web1: Running on host-a\n"
            "vm/web2: Running on host-a\n");
  EXPECT_EQ(fake().lastRequest<v1::WatchRequest>("Watch")->kinds_size(), 1);
}

TEST_F(ClusterctlTest, WatchJsonIsOneObjectPerLine) {
  RunResult result = run({"watch", "hosts", "-o", "json", "--limit", "2"});
  ASSERT_EQ(result.code, 0) << result;
  std::istringstream lines(result.out);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    const nlohmann::json event = nlohmann::json::parse(line);
    EXPECT_EQ(event.at("kind"), "OBJECT_KIND_HOST");
    ++count;
  }
  EXPECT_EQ(count, 2);
}

TEST_F(ClusterctlTest, WatchReconnectsToTheNextEndpointWithoutRepeatingObjects) {
  FakeClusterServer second("ctl-2");
  populateCluster(second.service());
  fake().breakWatchAfter(1);  // the first replica's stream breaks after db1
  RunResult result = runRaw({"--plaintext", "--endpoint", server_.endpoint(), "--endpoint",
                             second.endpoint(), "watch", "vms", "--limit", "3"});
  ASSERT_EQ(result.code, 0) << result;
  // db1 comes from the first replica; the second replays it unchanged (dropped), then the rest.
  EXPECT_EQ(result.out,
            "vm/db1: Pending: no host fits\n"
            "vm/web1: Running on host-a\n"
            "vm/web2: Running on host-a\n");
  EXPECT_THAT(result.err, HasSubstr("reconnecting to " + second.endpoint()));
  EXPECT_EQ(second.service().callCount("Watch"), 1);
}

TEST_F(ClusterctlTest, WatchEndsOnCtrlC) {
  Interrupt interrupt;
  interrupt_ = &interrupt;
  RunResult result;
  std::thread watcher([&] { result = run({"watch", "hosts"}); });
  fake().waitDelivered(2);  // both hosts are on the stream: clusterctl is waiting for more
  interrupt.trigger();
  watcher.join();
  // Ctrl-C is how a watch ends: not an error. (What was printed is not checked: events on the
  // wire when the stream is cancelled are dropped.)
  EXPECT_EQ(result.code, 0) << result;
}

TEST_F(ClusterctlTest, UnknownKindIsAUsageError) {
  RunResult result = run({"get", "things"});
  EXPECT_EQ(result.code, 2) << result;
  EXPECT_THAT(result.err, HasSubstr("get things: unknown kind; use one of: hosts, vms"));
  RunResult watch = run({"watch", "vms", "things"});
  EXPECT_EQ(watch.code, 2) << watch;
}

}  // namespace
}  // namespace flotilla::cli::testing
