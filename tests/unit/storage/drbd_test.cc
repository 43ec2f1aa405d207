// Tests of the DRBD resource helpers (storage/drbd.h) without drbdadm: the checks drbdadm does
// not make (addresses, ports, minors, disks, also across resources), the rendered resource
// file, its atomic write, the exact drbdadm command lines (dry-run and real, with
// __DRBD_NODE__) through a FakeCommandRunner answering with output captured from drbd-utils
// 9.22, error messages without drbdadm's noise, and `drbdadm status` parsing.
#include "storage/drbd.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "common/testing/fake_command_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

DrbdResourceSpec webSpec() {
  DrbdResourceSpec spec;
  spec.name = "vm-web1";
  spec.port = 7789;
  spec.nodes[0] = DrbdNode{"alpha", "10.0.0.1", 0, 100, "/dev/vg0/web1"};
  spec.nodes[1] = DrbdNode{"beta", "10.0.0.2", 1, 100, "/dev/vg0/web1"};
  return spec;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(DrbdSpecTest, AcceptsAGoodSpec) {
  EXPECT_TRUE(validateDrbdResource(webSpec()).ok()) << validateDrbdResource(webSpec());
  DrbdResourceSpec v6 = webSpec();
  v6.nodes[0].address = "fd00::1";
  v6.nodes[1].address = "fd00::2";
  EXPECT_TRUE(validateDrbdResource(v6).ok());
}

TEST(DrbdSpecTest, CatchesWhatDrbdadmDoesNot) {
  struct Case {
    std::function<void(DrbdResourceSpec&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](DrbdResourceSpec& s) { s.name = "VM_web"; }, "invalid volume name 'VM_web'"},
      {[](DrbdResourceSpec& s) { s.port = 0; }, "the port is missing"},
      {[](DrbdResourceSpec& s) { s.protocol = 'A'; }, "protocol A is not supported"},
      {[](DrbdResourceSpec& s) { s.nodes[1].host = ""; }, "node 2 (no host): the host name is"},
      {[](DrbdResourceSpec& s) { s.nodes[1].host = "beta 2"; }, "contains ' '"},
      {[](DrbdResourceSpec& s) { s.nodes[0].address = "10.0.0.300"; },
       "'10.0.0.300' is not an IPv4 or IPv6 address"},
      {[](DrbdResourceSpec& s) { s.nodes[0].address = "alpha.example"; }, "not a host name"},
      {[](DrbdResourceSpec& s) { s.nodes[0].address = "0.0.0.0"; }, "is unspecified"},
      {[](DrbdResourceSpec& s) { s.nodes[1].address = "fd00::2"; }, "not of the same family"},
      {[](DrbdResourceSpec& s) { s.nodes[1].address = "10.0.0.1"; }, "both have address 10.0.0.1"},
      {[](DrbdResourceSpec& s) { s.nodes[1].host = "alpha"; }, "both nodes are on host alpha"},
      {[](DrbdResourceSpec& s) { s.nodes[1].node_id = 0; }, "both nodes have node-id 0"},
      {[](DrbdResourceSpec& s) { s.nodes[0].node_id = 32; }, "node-id 32 is out of range"},
      {[](DrbdResourceSpec& s) { s.nodes[0].minor = -1; }, "minor -1 is out of range"},
      {[](DrbdResourceSpec& s) { s.nodes[0].minor = 1 << 20; }, "out of range (0 to 1048575)"},
      {[](DrbdResourceSpec& s) { s.nodes[0].disk = "vg0/web1"; }, "is not a device path"},
      {[](DrbdResourceSpec& s) { s.nodes[0].disk = "/dev/x;y"; }, "contains a space or one of"},
  };
  for (const Case& c : cases) {
    DrbdResourceSpec spec = webSpec();
    c.change(spec);
    absl::Status status = validateDrbdResource(spec);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.message << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
  }
}

TEST(DrbdSpecTest, CatchesClashesBetweenResources) {
  DrbdResourceSpec db = webSpec();
  db.name = "vm-db1";
  db.port = 7790;
  db.nodes[0].minor = db.nodes[1].minor = 101;
  db.nodes[0].disk = db.nodes[1].disk = "/dev/vg0/db1";
  std::vector<DrbdResourceSpec> specs = {webSpec(), db};
  EXPECT_TRUE(validateDrbdResources(specs).ok()) << validateDrbdResources(specs);

  specs[1].port = 7789;
  EXPECT_THAT(validateDrbdResources(specs).message(),
              HasSubstr("vm-web1 and vm-db1 both use 10.0.0.1 port 7789 (host alpha)"));
  specs[1] = db;
  specs[1].nodes[1].minor = 100;
  EXPECT_THAT(validateDrbdResources(specs).message(), HasSubstr("both use minor 100 on host beta"));
  specs[1] = db;
  specs[1].nodes[0].disk = "/dev/vg0/web1";
  EXPECT_THAT(validateDrbdResources(specs).message(),
              HasSubstr("both use backing disk /dev/vg0/web1 on host alpha"));
  specs[1] = webSpec();
  EXPECT_THAT(validateDrbdResources(specs).message(), HasSubstr("defined twice"));
  // The same port on other addresses is fine (another pair of hosts).
  specs[1] = db;
  specs[1].port = 7789;
  specs[1].nodes[0] = DrbdNode{"gamma", "10.0.0.3", 0, 100, "/dev/vg0/web1"};
  specs[1].nodes[1] = DrbdNode{"delta", "10.0.0.4", 1, 100, "/dev/vg0/web1"};
  EXPECT_TRUE(validateDrbdResources(specs).ok()) << validateDrbdResources(specs);
}

TEST(DrbdSpecTest, ChecksTheLocalDisk) {
  testing::TempDir dir;
  DrbdResourceSpec spec = webSpec();
  spec.nodes[0].disk = dir.file("missing");
  absl::Status missing = checkDrbdLocalDisk(spec, "alpha");
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_THAT(missing.message(), HasSubstr("does not exist on host alpha"));
  spec.nodes[0].disk = *dir.sparseFile("file.img", 4096);
  EXPECT_THAT(checkDrbdLocalDisk(spec, "alpha").message(), HasSubstr("is not a block device"));
  spec.nodes[0].disk = "/dev/null";  // a character device
  EXPECT_TRUE(absl::IsFailedPrecondition(checkDrbdLocalDisk(spec, "alpha")));
  EXPECT_TRUE(absl::IsNotFound(checkDrbdLocalDisk(spec, "gamma")));
  EXPECT_EQ(*drbdDevicePath(spec, "beta"), "/dev/drbd100");
  EXPECT_FALSE(drbdDevicePath(spec, "gamma").ok());
}

TEST(DrbdSpecTest, RendersTheResourceFile) {
  DrbdResourceSpec spec = webSpec();
  spec.nodes[1].address = "10.0.0.02";  // not canonical: inet_pton refuses leading zeros
  EXPECT_FALSE(validateDrbdResource(spec).ok());
  spec = webSpec();
  EXPECT_EQ(
      renderDrbdResource(spec),
      R"(# DRBD resource vm-web1, written by Flotilla's agent (storage/drbd.h); it rewrites this file.
resource vm-web1 {
  options {
    auto-promote no;  # the agent promotes explicitly (drbdadm primary)
  }
  net {
    protocol C;
    allow-two-primaries no;  # yes only during a live migration (net-options)
    after-sb-0pri discard-zero-changes;
    after-sb-1pri discard-secondary;
    after-sb-2pri disconnect;
  }
  on alpha {
    node-id 0;
    device minor 100;
    disk /dev/vg0/web1;
    meta-disk internal;
    address ipv4 10.0.0.1:7789;
  }
  on beta {
    node-id 1;
    device minor 100;
    disk /dev/vg0/web1;
    meta-disk internal;
    address ipv4 10.0.0.2:7789;
  }
}
)");
  spec.nodes[0].address = "FD00:0::1";
  spec.nodes[1].address = "fd00::2";
  const std::string v6 = renderDrbdResource(spec);
  EXPECT_THAT(v6, HasSubstr("address ipv6 [fd00::1]:7789;"));
  EXPECT_THAT(v6, HasSubstr("address ipv6 [fd00::2]:7789;"));
}

TEST(DrbdSpecTest, WritesTheFileAtomically) {
  testing::TempDir dir;
  absl::StatusOr<std::string> path = writeDrbdResourceFile(webSpec(), dir.path());
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, dir.file("vm-web1.res"));
  EXPECT_EQ(readFile(*path), renderDrbdResource(webSpec()));
  struct stat st {};
  ASSERT_EQ(::stat(path->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  DrbdResourceSpec moved = webSpec();
  moved.port = 7800;
  ASSERT_TRUE(writeDrbdResourceFile(moved, dir.path()).ok());  // replaces it
  EXPECT_THAT(readFile(*path), HasSubstr(":7800;"));

  DrbdResourceSpec bad = webSpec();
  bad.nodes[0].address = "nowhere";
  EXPECT_FALSE(writeDrbdResourceFile(bad, dir.path()).ok());
  EXPECT_THAT(readFile(*path), HasSubstr(":7800;"));  // the good file stays
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_THAT(names, ElementsAre("vm-web1.res"));  // no temporary left
  EXPECT_FALSE(writeDrbdResourceFile(webSpec(), dir.file("missing")).ok());
}

// `drbdadm -c r0.res -d up vm-web1` with __DRBD_NODE__=alpha, drbd-utils 9.22, no module.
constexpr char kCapturedDryRunUp[] = R"(drbdsetup new-resource vm-web1 0
drbdsetup new-minor vm-web1 100 0
drbdsetup new-peer vm-web1 1 --_name=beta --protocol=C
drbdsetup new-path vm-web1 1 ipv4:10.0.0.1:7789 ipv4:10.0.0.2:7789
drbdmeta 100 v09 /dev/loop9 internal apply-al
drbdsetup attach 100 /dev/loop9 /dev/loop9 internal
drbdsetup connect vm-web1 1
)";
constexpr char kCapturedNotice[] =
    "\n   found __DRBD_NODE__ in environment\n   PRETENDING that I am >>alpha<<\n\n"
    "modinfo: ERROR: Module drbd not found.\nmodinfo: ERROR: Module drbd not found.\n";

class DrbdCommandTest : public ::testing::Test {
 protected:
  Drbd drbd(bool dry_run) {
    DrbdOptions options;
    options.config_file = "/etc/flotilla/drbd/vm-web1.res";
    options.node_name = "alpha";
    options.dry_run = dry_run;
    return Drbd(runner_, options);
  }
  FakeCommandRunner runner_;
};

TEST_F(DrbdCommandTest, DryRunsReturnTheCommandSequence) {
  runner_.setHandler([](const std::vector<std::string>& argv, const CommandOptions&) {
    if (argv.back() == "vm-web1" && argv[4] == "up") {
      return FakeCommandRunner::exited(0, kCapturedDryRunUp, kCapturedNotice);
    }
    return FakeCommandRunner::exited(0, "drbdsetup something\n", kCapturedNotice);
  });
  Drbd dry = drbd(true);
  absl::StatusOr<std::vector<std::string>> up = dry.up("vm-web1");
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_EQ(up->size(), 7u);
  EXPECT_EQ((*up)[0], "drbdsetup new-resource vm-web1 0");
  EXPECT_EQ((*up)[6], "drbdsetup connect vm-web1 1");
  FakeCommandRunner::Call call = runner_.lastCall();
  EXPECT_EQ(call.commandLine(), "drbdadm -c /etc/flotilla/drbd/vm-web1.res -d up vm-web1");
  EXPECT_THAT(call.options.env, ElementsAre("__DRBD_NODE__=alpha"));

  ASSERT_TRUE(dry.createMetadata("vm-web1").ok());
  ASSERT_TRUE(dry.primary("vm-web1").ok());
  ASSERT_TRUE(dry.primary("vm-web1", /*force=*/true).ok());
  ASSERT_TRUE(dry.allowTwoPrimaries("vm-web1", true).ok());
  ASSERT_TRUE(dry.allowTwoPrimaries("vm-web1", false).ok());
  ASSERT_TRUE(dry.secondary("vm-web1").ok());
  ASSERT_TRUE(dry.adjust("vm-web1").ok());
  ASSERT_TRUE(dry.down("vm-web1").ok());
  const std::string c = "drbdadm -c /etc/flotilla/drbd/vm-web1.res -d ";
  std::vector<std::string> lines = runner_.commandLines();
  lines.erase(lines.begin());
  EXPECT_THAT(lines,
              ElementsAre(c + "create-md --force vm-web1", c + "primary vm-web1",
                          c + "primary --force vm-web1",
                          c + "net-options --allow-two-primaries=yes vm-web1",
                          c + "net-options --allow-two-primaries=no vm-web1",
                          c + "secondary vm-web1", c + "adjust vm-web1", c + "down vm-web1"));
  EXPECT_TRUE(absl::IsFailedPrecondition(dry.status("vm-web1").status()));
}

TEST_F(DrbdCommandTest, RealRunsOmitTheDryRunFlagAndTheDefaultsOmitTheirs) {
  ASSERT_TRUE(drbd(false).up("vm-web1").ok());
  EXPECT_EQ(runner_.lastCall().commandLine(),
            "drbdadm -c /etc/flotilla/drbd/vm-web1.res up vm-web1");
  Drbd plain(runner_, DrbdOptions{});
  absl::StatusOr<std::vector<std::string>> out = plain.secondary("vm-web1");
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->empty());
  EXPECT_EQ(runner_.lastCall().commandLine(), "drbdadm secondary vm-web1");
  EXPECT_TRUE(runner_.lastCall().options.env.empty());
  ASSERT_TRUE(drbd(true).dump("vm-web1").ok());  // dump never needs -d
  EXPECT_EQ(runner_.lastCall().commandLine(),
            "drbdadm -c /etc/flotilla/drbd/vm-web1.res dump vm-web1");
}

TEST_F(DrbdCommandTest, ErrorsQuoteDrbdadmWithoutItsNoise) {
  runner_.setHandler([](const std::vector<std::string>&, const CommandOptions&) {
    return FakeCommandRunner::exited(
        10, "",
        std::string(kCapturedNotice) +
            "/etc/flotilla/drbd/vm-web1.res:13: conflicting use of node-id 'vm-web1:0' ...\n"
            "/etc/flotilla/drbd/vm-web1.res:6: node-id 'vm-web1:0' first used here.\n");
  });
  absl::Status dumped = drbd(false).dump("vm-web1").status();
  EXPECT_THAT(dumped.message(),
              HasSubstr("`drbdadm -c /etc/flotilla/drbd/vm-web1.res dump vm-web1` exited with "
                        "status 10: /etc/flotilla/drbd/vm-web1.res:13: conflicting use of node-id "
                        "'vm-web1:0' ...; /etc/flotilla/drbd/vm-web1.res:6: node-id"));
  EXPECT_THAT(dumped.message(), Not(HasSubstr("PRETENDING")));
  EXPECT_THAT(dumped.message(), Not(HasSubstr("modinfo")));

  // `drbdadm status` on this kernel (captured): no module.
  runner_.setHandler([](const std::vector<std::string>&, const CommandOptions&) {
    return FakeCommandRunner::exited(
        20, "",
        std::string(kCapturedNotice) +
            "modprobe: FATAL: Module drbd not found in directory /lib/modules/6.1.0-amd64\n"
            "Failed to modprobe drbd (No such file or directory)\n"
            "Command 'drbdsetup status vm-web1' terminated with exit code 20\n");
  });
  absl::Status status = drbd(false).status("vm-web1").status();
  EXPECT_THAT(status.message(), HasSubstr("Failed to modprobe drbd"));
  EXPECT_THAT(status.message(), HasSubstr("the drbd kernel module is not available on this host"));
}

TEST_F(DrbdCommandTest, StatusIsParsed) {
  runner_.setHandler([](const std::vector<std::string>&, const CommandOptions&) {
    return FakeCommandRunner::exited(0,
                                     "vm-web1 role:Primary\n"
                                     "  disk:UpToDate\n"
                                     "  beta role:Secondary\n"
                                     "    peer-disk:UpToDate\n\n");
  });
  absl::StatusOr<DrbdStatus> status = drbd(false).status("vm-web1");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(runner_.lastCall().commandLine(),
            "drbdadm -c /etc/flotilla/drbd/vm-web1.res status vm-web1");
  EXPECT_EQ(status->role, "Primary");
  ASSERT_EQ(status->peers.size(), 1u);
  EXPECT_EQ(status->peers[0].connection, "Connected");
  EXPECT_EQ(status->peers[0].replication, "Established");
}

// The layouts of `drbdadm status` in DRBD 9 (drbd-utils 9.x documentation and man page; no
// kernel module here to capture them from).
TEST(DrbdStatusTest, ParsesConnectedSyncingAndDisconnectedResources) {
  absl::StatusOr<DrbdStatus> up = parseDrbdStatus(
      "vm-web1 role:Secondary\n  disk:UpToDate\n  alpha role:Primary\n    peer-disk:UpToDate\n");
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->resource, "vm-web1");
  EXPECT_EQ(up->role, "Secondary");
  EXPECT_EQ(up->disk, "UpToDate");
  EXPECT_FALSE(up->suspended);
  ASSERT_EQ(up->peers.size(), 1u);
  EXPECT_EQ(up->peers[0].name, "alpha");
  EXPECT_EQ(up->peers[0].role, "Primary");
  EXPECT_EQ(up->peers[0].peer_disk, "UpToDate");
  EXPECT_FALSE(up->peers[0].done.has_value());

  absl::StatusOr<DrbdStatus> syncing = parseDrbdStatus(
      "vm-web1 role:Primary\n"
      "  volume:0 disk:UpToDate\n"
      "  beta role:Secondary\n"
      "    volume:0 replication:SyncSource peer-disk:Inconsistent done:45.20\n");
  ASSERT_TRUE(syncing.ok()) << syncing.status();
  EXPECT_EQ(syncing->disk, "UpToDate");
  EXPECT_EQ(syncing->peers[0].replication, "SyncSource");
  EXPECT_EQ(syncing->peers[0].peer_disk, "Inconsistent");
  ASSERT_TRUE(syncing->peers[0].done.has_value());
  EXPECT_DOUBLE_EQ(*syncing->peers[0].done, 45.2);

  absl::StatusOr<DrbdStatus> alone = parseDrbdStatus(
      "vm-web1 role:Primary suspended:user\n  disk:UpToDate\n  beta connection:Connecting\n");
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_TRUE(alone->suspended);
  EXPECT_EQ(alone->peers[0].connection, "Connecting");
  EXPECT_EQ(alone->peers[0].role, "");

  EXPECT_FALSE(parseDrbdStatus("").ok());
  EXPECT_FALSE(parseDrbdStatus("  disk:UpToDate\n").ok());
  EXPECT_FALSE(parseDrbdStatus("a role:Primary\nb role:Primary\n").ok());
  EXPECT_FALSE(parseDrbdStatus("a role:Primary\n    peer-disk:UpToDate\n").ok());
  EXPECT_FALSE(parseDrbdStatus("a role:Primary\n  b role:Secondary\n    done:lots\n").ok());
}

}  // namespace
}  // namespace flotilla::storage
