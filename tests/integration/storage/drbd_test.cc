// Tests of the DRBD helpers (storage/drbd.h) with the real drbd-utils 9.22 but without the
// drbd kernel module (this kernel has none; see ENVIRONMENT.md): resource files written by
// writeDrbdResourceFile are accepted by `drbdadm dump` and `sh-nop` for either node, the dry
// runs print the expected drbdsetup/drbdmeta sequences (up, adjust, primary, secondary, down,
// create-md, and net-options for dual-primary), and create-md really initialises internal
// metadata on a loop device (losetup over a sparse file, detached by name afterwards).
#include "storage/drbd.h"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "common/command.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kDiskBytes = uint64_t{64} << 20;

// drbdadm and losetup live in /usr/sbin, which a non-login PATH may lack.
std::string sbinProgram(const std::string& name, const std::string& package) {
  const std::string path = "/usr/sbin/" + name;
  if (::access(path.c_str(), X_OK) == 0) return path;
  absl::StatusOr<std::string> found = testing::findProgram(name, package);
  return found.ok() ? *found : std::string();
}

// A loop device over a sparse file, detached (by its name) when destroyed.
class LoopDevice {
 public:
  static absl::StatusOr<LoopDevice> attach(const std::string& losetup, const std::string& file) {
    SystemCommandRunner runner;
    ASSIGN_OR_RETURN(std::string out, runChecked(runner, {losetup, "-f", "--show", file}));
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return LoopDevice(losetup, out);
  }
  LoopDevice(LoopDevice&& other) noexcept
      : losetup_(other.losetup_), device_(std::exchange(other.device_, {})) {}
  LoopDevice& operator=(LoopDevice&&) = delete;
  ~LoopDevice() {
    if (device_.empty()) return;
    SystemCommandRunner runner;
    absl::Status detached = runChecked(runner, {losetup_, "-d", device_}).status();
    if (!detached.ok()) ADD_FAILURE() << "detaching " << device_ << ": " << detached;
  }
  const std::string& device() const { return device_; }

 private:
  LoopDevice(std::string losetup, std::string device)
      : losetup_(std::move(losetup)), device_(std::move(device)) {}
  std::string losetup_;
  std::string device_;
};

class DrbdIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    drbdadm_ = sbinProgram("drbdadm", "drbd-utils");
    ASSERT_FALSE(drbdadm_.empty())
        << "this test needs drbdadm: install the Debian package drbd-utils";
  }

  DrbdResourceSpec spec(const std::string& disk) {
    DrbdResourceSpec s;
    s.name = "vm-web1";
    s.port = 7789;
    s.nodes[0] = DrbdNode{"alpha", "10.0.0.1", 0, 100, disk};
    s.nodes[1] = DrbdNode{"beta", "10.0.0.2", 1, 100, disk};
    return s;
  }

  Drbd drbd(const std::string& file, const std::string& node, bool dry_run) {
    DrbdOptions options;
    options.drbdadm = drbdadm_;
    options.config_file = file;
    options.node_name = node;
    options.dry_run = dry_run;
    return Drbd(runner_, options);
  }

  // `drbdadm -c FILE ARGS...` as node `node`: its exit status.
  int runDrbdadm(const std::string& file, const std::string& node,
                 const std::vector<std::string>& args, std::string* err = nullptr) {
    std::vector<std::string> argv = {drbdadm_, "-c", file};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandOptions options;
    options.env = {"__DRBD_NODE__=" + node};
    absl::StatusOr<CommandResult> result = runner_.run(argv, options);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return -1;
    if (err != nullptr) *err = result->err;
    return result->status.code;
  }

  testing::TempDir dir_;
  SystemCommandRunner runner_;
  std::string drbdadm_;
};

TEST_F(DrbdIntegrationTest, DrbdadmAcceptsTheWrittenFileForBothNodes) {
  absl::StatusOr<std::string> file = writeDrbdResourceFile(spec("/dev/vg0/web1"), dir_.path());
  ASSERT_TRUE(file.ok()) << file.status();
  for (const char* node : {"alpha", "beta"}) {
    absl::StatusOr<std::string> dumped = drbd(*file, node, false).dump("vm-web1");
    ASSERT_TRUE(dumped.ok()) << node << ": " << dumped.status();
    EXPECT_THAT(*dumped, HasSubstr("resource vm-web1"));
    EXPECT_THAT(*dumped, HasSubstr("address          ipv4 10.0.0.2:7789;"));
    EXPECT_THAT(*dumped, HasSubstr("auto-promote      no;"));
    EXPECT_EQ(runDrbdadm(*file, node, {"sh-nop"}), 0) << node;
  }
  absl::Status stranger = drbd(*file, "gamma", false).dump("vm-web1").status();
  EXPECT_THAT(stranger.message(), HasSubstr("not defined in your config (for this host)"));

  DrbdResourceSpec v6 = spec("/dev/vg0/web1");
  v6.nodes[0].address = "fd00::1";
  v6.nodes[1].address = "fd00::2";
  ASSERT_TRUE(writeDrbdResourceFile(v6, dir_.path()).ok());
  absl::StatusOr<std::string> dumped = drbd(*file, "beta", false).dump("vm-web1");
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_THAT(*dumped, HasSubstr("ipv6 [fd00::1]:7789"));
}

TEST_F(DrbdIntegrationTest, DrbdadmErrorsComeBackWithFileAndLine) {
  // A file Flotilla would never write (validateDrbdResource refuses it): the same node-id twice.
  const std::string file = dir_.file("broken.res");
  std::string text = renderDrbdResource(spec("/dev/vg0/web1"));
  text.replace(text.find("node-id 1;"), 10, "node-id 0;");
  {
    FILE* out = std::fopen(file.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fputs(text.c_str(), out);
    std::fclose(out);
  }
  absl::Status dumped = drbd(file, "alpha", false).dump("vm-web1").status();
  EXPECT_FALSE(dumped.ok());
  EXPECT_THAT(dumped.message(), HasSubstr("broken.res:"));
  EXPECT_THAT(dumped.message(), HasSubstr("conflicting use of node-id 'vm-web1:0'"));
  EXPECT_THAT(dumped.message(), ::testing::Not(HasSubstr("PRETENDING")));
}

TEST_F(DrbdIntegrationTest, DrbdadmSeesPortClashesOnlyInOneFileWhileWeSeeThemAlways) {
  DrbdResourceSpec web = spec("/dev/vg0/web1");
  DrbdResourceSpec db = spec("/dev/vg0/db1");
  db.name = "vm-db1";
  db.nodes[0].minor = db.nodes[1].minor = 101;  // same port 7789 on the same addresses
  absl::StatusOr<std::string> web_file = writeDrbdResourceFile(web, dir_.path());
  absl::StatusOr<std::string> db_file = writeDrbdResourceFile(db, dir_.path());
  ASSERT_TRUE(web_file.ok() && db_file.ok());
  EXPECT_EQ(runDrbdadm(*web_file, "alpha", {"sh-nop"}), 0);  // each file alone is fine
  EXPECT_EQ(runDrbdadm(*db_file, "alpha", {"sh-nop"}), 0);
  const std::string both = dir_.file("both.conf");
  {
    FILE* out = std::fopen(both.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fputs((renderDrbdResource(web) + renderDrbdResource(db)).c_str(), out);
    std::fclose(out);
  }
  std::string err;
  EXPECT_NE(runDrbdadm(both, "alpha", {"sh-nop"}, &err), 0);
  EXPECT_THAT(err, HasSubstr("ipv4:10.0.0.1:7789 is also used"));
  std::vector<DrbdResourceSpec> specs = {web, db};
  EXPECT_THAT(validateDrbdResources(specs).message(), HasSubstr("both use 10.0.0.1 port 7789"));
}

TEST_F(DrbdIntegrationTest, DryRunsPrintTheCommandSequences) {
  absl::StatusOr<std::string> file = writeDrbdResourceFile(spec("/dev/vg0/web1"), dir_.path());
  ASSERT_TRUE(file.ok()) << file.status();
  Drbd alpha = drbd(*file, "alpha", true);
  const std::string peer_options =
      "--_name=beta --after-sb-2pri=disconnect --after-sb-1pri=discard-secondary "
      "--after-sb-0pri=discard-zero-changes";
  const std::vector<std::string> up = {
      "drbdsetup new-resource vm-web1 0 --auto-promote=no",
      "drbdsetup new-minor vm-web1 100 0",
      "drbdsetup new-peer vm-web1 1 " + peer_options + " --allow-two-primaries=no --protocol=C",
      "drbdsetup new-path vm-web1 1 ipv4:10.0.0.1:7789 ipv4:10.0.0.2:7789",
      "drbdmeta 100 v09 /dev/vg0/web1 internal apply-al",
      "drbdsetup attach 100 /dev/vg0/web1 /dev/vg0/web1 internal",
      "drbdsetup connect vm-web1 1",
  };
  absl::StatusOr<std::vector<std::string>> steps = alpha.up("vm-web1");
  ASSERT_TRUE(steps.ok()) << steps.status();
  EXPECT_EQ(*steps, up);
  // Without the module there is no kernel state, so adjust would bring it all up.
  EXPECT_EQ(*alpha.adjust("vm-web1"), up);
  EXPECT_THAT(*alpha.createMetadata("vm-web1"),
              ElementsAre("drbdmeta 100 v09 /dev/vg0/web1 internal create-md 1 --force"));
  EXPECT_THAT(*alpha.primary("vm-web1"), ElementsAre("drbdsetup primary vm-web1"));
  EXPECT_THAT(*alpha.primary("vm-web1", true), ElementsAre("drbdsetup primary vm-web1 --force"));
  EXPECT_THAT(*alpha.secondary("vm-web1"), ElementsAre("drbdsetup secondary vm-web1"));
  EXPECT_THAT(*alpha.down("vm-web1"), ElementsAre("drbdsetup down vm-web1"));
  EXPECT_THAT(*alpha.allowTwoPrimaries("vm-web1", true),
              ElementsAre("drbdsetup net-options vm-web1 1 " + peer_options +
                          " --protocol=C --allow-two-primaries=yes"));
  EXPECT_THAT(*alpha.allowTwoPrimaries("vm-web1", false),
              ElementsAre("drbdsetup net-options vm-web1 1 " + peer_options +
                          " --protocol=C --allow-two-primaries=no"));

  // The other node's view: its own node id, the peer is alpha, the addresses swap.
  absl::StatusOr<std::vector<std::string>> beta = drbd(*file, "beta", true).up("vm-web1");
  ASSERT_TRUE(beta.ok()) << beta.status();
  EXPECT_EQ((*beta)[0], "drbdsetup new-resource vm-web1 1 --auto-promote=no");
  EXPECT_EQ((*beta)[3], "drbdsetup new-path vm-web1 0 ipv4:10.0.0.2:7789 ipv4:10.0.0.1:7789");
}

TEST_F(DrbdIntegrationTest, CreateMetadataOnALoopDevice) {
  const std::string losetup = sbinProgram("losetup", "mount");
  ASSERT_FALSE(losetup.empty()) << "this test needs losetup (Debian package mount)";
  absl::StatusOr<std::string> image = dir_.sparseFile("disk.img", kDiskBytes);
  ASSERT_TRUE(image.ok()) << image.status();
  absl::StatusOr<LoopDevice> loop = LoopDevice::attach(losetup, *image);
  ASSERT_TRUE(loop.ok()) << loop.status() << " (losetup needs root)";

  DrbdResourceSpec resource = spec(loop->device());
  ASSERT_TRUE(checkDrbdLocalDisk(resource, "alpha").ok()) << checkDrbdLocalDisk(resource, "alpha");
  absl::StatusOr<std::string> file = writeDrbdResourceFile(resource, dir_.path());
  ASSERT_TRUE(file.ok()) << file.status();

  std::string err;
  EXPECT_NE(runDrbdadm(*file, "alpha", {"dump-md", "vm-web1"}, &err), 0)
      << "a blank disk has no DRBD metadata yet";
  absl::StatusOr<std::vector<std::string>> created =
      drbd(*file, "alpha", false).createMetadata("vm-web1");
  ASSERT_TRUE(created.ok()) << created.status();

  std::vector<std::string> argv = {drbdadm_, "-c", *file, "dump-md", "vm-web1"};
  CommandOptions options;
  options.env = {"__DRBD_NODE__=alpha"};
  absl::StatusOr<std::string> dumped = runChecked(runner_, argv, options);
  ASSERT_TRUE(dumped.ok()) << dumped.status();
  EXPECT_THAT(*dumped, HasSubstr("version \"v09\";"));
  EXPECT_THAT(*dumped, HasSubstr("max-peers 1;"));
  // Internal metadata: the last 4 KiB superblock of the 64 MiB disk.
  EXPECT_THAT(*dumped, HasSubstr("# md_offset 67104768"));
}

}  // namespace
}  // namespace flotilla::storage
