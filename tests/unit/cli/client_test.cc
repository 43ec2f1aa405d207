// clusterctl's failover between controller endpoints, its exit statuses and its
// configuration file.
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/cli/clusterctl_fixture.h"

namespace flotilla::cli::testing {
namespace {

using ::testing::HasSubstr;

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST_F(ClusterctlTest, FailsOverFromADeadEndpointToTheNext) {
  RunResult result = runRaw({"--plaintext", "--endpoint", deadEndpoint(dir_), "--endpoint",
                             server_.endpoint(), "get", "vms", "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "vm/db1\nvm/web1\nvm/web2\n");
  EXPECT_EQ(fake().callCount("ListVms"), 1);
}

TEST_F(ClusterctlTest, WritesAlsoFailOverWhenTheFirstEndpointCannotBeConnectedTo) {
  RunResult result = runRaw({"--plaintext", "--endpoint", deadEndpoint(dir_), "--endpoint",
                             server_.endpoint(), "vm", "stop", "web1"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(fake().callCount("StopVm"), 1);
}

TEST_F(ClusterctlTest, ReadsRetryOnTheNextReplicaWhenOneIsUnavailable) {
  FakeClusterServer second("ctl-2");
  populateCluster(second.service());
  fake().failAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcd cannot be reached"));
  RunResult result = runRaw({"--plaintext", "--endpoint", server_.endpoint(), "--endpoint",
                             second.endpoint(), "get", "hosts", "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "host/host-a\nhost/host-b\n");
  EXPECT_EQ(fake().callCount("ListHosts"), 1);
  EXPECT_EQ(second.service().callCount("ListHosts"), 1);
}

TEST_F(ClusterctlTest, WritesThatReachedAReplicaAreNotRepeated) {
  FakeClusterServer second("ctl-2");
  populateCluster(second.service());
  fake().failAll(grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcd cannot be reached"));
  RunResult result = runRaw({"--plaintext", "--endpoint", server_.endpoint(), "--endpoint",
                             second.endpoint(), "vm", "stop", "web1"});
  EXPECT_EQ(result.code, 4) << result;
  EXPECT_THAT(result.err, HasSubstr("etcd cannot be reached"));
  EXPECT_THAT(result.err, HasSubstr("may have been applied"));
  EXPECT_EQ(fake().callCount("StopVm"), 1);
  EXPECT_EQ(second.service().callCount("StopVm"), 0);
}

TEST_F(ClusterctlTest, StaysWithTheReplicaThatAnswered) {
  // --wait makes several calls: after the dead endpoint was skipped once, the rest go
  // straight to the one that answered.
  fake().scriptMigration({[] {
    v1::MigrationRecord done;
    done.set_vm("web1");
    done.set_phase(v1::MIGRATION_PHASE_SUCCEEDED);
    return done;
  }()});
  RunResult result = runRaw({"--plaintext", "--endpoint", deadEndpoint(dir_), "--endpoint",
                             server_.endpoint(), "vm", "migrate", "web1", "--wait"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(fake().callCount("MigrateVm"), 1);
  EXPECT_EQ(fake().callCount("Watch"), 1);
}

TEST_F(ClusterctlTest, ExitStatuses) {
  RunResult not_found = run({"get", "vm", "nope"});
  EXPECT_EQ(not_found.code, 3) << not_found;
  EXPECT_EQ(not_found.err, "clusterctl: vm nope not found\n");

  RunResult usage = run({"get", "vms", "--bogus"});
  EXPECT_EQ(usage.code, 2) << usage;
  EXPECT_THAT(usage.err, HasSubstr("clusterctl: "));
  EXPECT_EQ(run({"frobnicate"}).code, 2);
  EXPECT_EQ(run({}).code, 2);
  EXPECT_EQ(run({"vm"}).code, 2);
  EXPECT_EQ(run({"get", "vms", "-o", "xml"}).code, 2);
  EXPECT_EQ(
      runRaw({"--plaintext", "--endpoint", server_.endpoint(), "--timeout", "soon", "get", "vms"})
          .code,
      2);

  RunResult unreachable = runRaw({"--plaintext", "--endpoint", deadEndpoint(dir_), "get", "vms"});
  EXPECT_EQ(unreachable.code, 4) << unreachable;
  EXPECT_THAT(unreachable.err, HasSubstr("no controller reachable"));
  EXPECT_THAT(unreachable.err, HasSubstr(deadEndpoint(dir_) + ": cannot connect"));

  RunResult exists = run({"create", "vm", "web1", "--kernel", "/k"});
  EXPECT_EQ(exists.code, 5) << exists;
  EXPECT_EQ(exists.err, "clusterctl: vm web1 already exists\n");
  RunResult in_use = run({"delete", "network", "net1"});
  EXPECT_EQ(in_use.code, 5) << in_use;
  EXPECT_EQ(in_use.err, "clusterctl: network net1 is used by vm db1: delete the VM first\n");
  fake().failAll(grpc::Status(grpc::StatusCode::ABORTED, "a concurrent update won: retry"));
  EXPECT_EQ(run({"vm", "start", "web1"}).code, 5);

  fake().failAll(grpc::Status(grpc::StatusCode::INTERNAL, "the controller broke"));
  RunResult failed = run({"get", "hosts"});
  EXPECT_EQ(failed.code, 1) << failed;
  EXPECT_EQ(failed.err, "clusterctl: the controller broke\n");

  fake().failAll(grpc::Status::OK);
  RunResult invalid = run({"create", "vm", "small", "--kernel", "/k", "--memory", "4K"});
  EXPECT_EQ(invalid.code, 2) << invalid;  // the controller's INVALID_ARGUMENT
  EXPECT_EQ(invalid.err, "clusterctl: spec.memory_bytes: at least 1M is needed\n");
}

TEST_F(ClusterctlTest, HelpAndVersionSucceed) {
  RunResult help = run({"--help"});
  EXPECT_EQ(help.code, 0) << help;
  EXPECT_THAT(help.out, HasSubstr("describe"));
  RunResult sub_help = run({"vm", "migrate", "--help"});
  EXPECT_EQ(sub_help.code, 0) << sub_help;
  EXPECT_THAT(sub_help.out, HasSubstr("--downtime-ms"));
  RunResult version = run({"--version"});
  EXPECT_EQ(version.code, 0) << version;
  EXPECT_THAT(version.out, HasSubstr("clusterctl 0.1.0"));
}

TEST_F(ClusterctlTest, ConfigFileFromTheEnvironmentVariable) {
  const std::string path = dir_.file("clusterctl.yaml");
  writeFile(path, "endpoints: [" + deadEndpoint(dir_) + ", " + server_.endpoint() +
                      "]\nplaintext: true\ntimeout: 5s\n");
  env_["CLUSTERCTL_CONFIG"] = path;
  RunResult result = runRaw({"get", "hosts", "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(result.out, "host/host-a\nhost/host-b\n");
}

TEST_F(ClusterctlTest, ConfigFileUnderHome) {
  std::filesystem::create_directories(dir_.file(".config/flotilla"));
  writeFile(dir_.file(".config/flotilla/clusterctl.yaml"),
            "endpoints: [" + server_.endpoint() + "]\nplaintext: true\n");
  RunResult result = runRaw({"get", "vms", "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
  EXPECT_EQ(fake().callCount("ListVms"), 1);
}

TEST_F(ClusterctlTest, EndpointFlagsReplaceTheConfigsEndpoints) {
  const std::string path = dir_.file("clusterctl.yaml");
  writeFile(path, "endpoints: [" + deadEndpoint(dir_) + "]\nplaintext: true\n");
  RunResult result =
      runRaw({"--config", path, "--endpoint", server_.endpoint(), "get", "hosts", "-o", "name"});
  ASSERT_EQ(result.code, 0) << result;
}

TEST_F(ClusterctlTest, BadOrMissingConfigurationIsAUsageError) {
  const std::string path = dir_.file("clusterctl.yaml");
  writeFile(path, "endpoints: [127.0.0.1:7000]\nplaintxt: true\n");
  RunResult typo = runRaw({"--config", path, "get", "hosts"});
  EXPECT_EQ(typo.code, 2) << typo;
  EXPECT_THAT(typo.err, HasSubstr("clusterctl.yaml:2:1: unknown key 'plaintxt'"));

  writeFile(path, "endpoints: [127.0.0.1:7000]\nplaintext: true\ntls: {ca: /ca.pem}\n");
  RunResult both = runRaw({"--config", path, "get", "hosts"});
  EXPECT_EQ(both.code, 2) << both;
  EXPECT_THAT(both.err, HasSubstr("exclude each other"));

  writeFile(path, "endpoints: [127.0.0.1:7000]\ntls: {ca: " + dir_.file("absent-ca.pem") + "}\n");
  RunResult no_ca = runRaw({"--config", path, "get", "hosts"});
  EXPECT_EQ(no_ca.code, 2) << no_ca;
  EXPECT_THAT(no_ca.err, HasSubstr("absent-ca.pem"));

  RunResult absent = runRaw({"--config", dir_.file("absent.yaml"), "get", "hosts"});
  EXPECT_EQ(absent.code, 2) << absent;
  EXPECT_THAT(absent.err, HasSubstr("absent.yaml"));

  env_["CLUSTERCTL_CONFIG"] = dir_.file("absent.yaml");
  EXPECT_EQ(runRaw({"get", "hosts"}).code, 2);
  env_.erase("CLUSTERCTL_CONFIG");

  RunResult nothing = runRaw({"get", "hosts"});
  EXPECT_EQ(nothing.code, 2) << nothing;
  EXPECT_THAT(nothing.err, HasSubstr("no controller endpoints: give --endpoint HOST:PORT"));
}

TEST_F(ClusterctlTest, CommandsThatNeedNoClusterWorkWithoutConfiguration) {
  RunResult result = runRaw({"completion", "bash"});
  EXPECT_EQ(result.code, 0) << result;
}

}  // namespace
}  // namespace flotilla::cli::testing
