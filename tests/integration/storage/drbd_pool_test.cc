// DrbdPool (storage/drbd_pool.h) with the real tools but no drbd kernel module: both hosts'
// pools (alpha, node 0; beta, node 1) over sparse files attached as real loop devices (root),
// drbdadm in dry-run mode. Checks that `drbdadm dump` and `sh-nop` accept the resource files
// the pools write, for each node; the exact drbdsetup/drbdmeta sequences drbdadm prints for
// create, the VM's start and stop, a migration and remove; that the size the pool reports is
// where drbdmeta really puts the bitmap (create-md on the loop device, then dump-md); and that
// remove detaches the loop devices and deletes the files.
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/command.h"
#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/drbd_pool.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string sbinProgram(const std::string& name, const std::string& package) {
  const std::string path = "/usr/sbin/" + name;
  if (::access(path.c_str(), X_OK) == 0) return path;
  absl::StatusOr<std::string> found = testing::findProgram(name, package);
  return found.ok() ? *found : std::string();
}

// Runs commands for real and keeps what drbdadm printed (its dry-run sequences).
class RecordingRunner final : public CommandRunner {
 public:
  absl::StatusOr<CommandResult> run(const std::vector<std::string>& argv,
                                    const CommandOptions& options) override {
    absl::StatusOr<CommandResult> result = real_.run(argv, options);
    if (result.ok() && argv[0].ends_with("drbdadm")) {
      absl::MutexLock lock(&mu_);
      for (std::string_view line : splitLines(result->out)) {
        const size_t slash = line.substr(0, line.find(' ')).rfind('/');
        if (slash != std::string_view::npos) line.remove_prefix(slash + 1);
        printed_.emplace_back(line);
      }
    }
    return result;
  }
  std::vector<std::string> take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(printed_, {});
  }

 private:
  static std::vector<std::string_view> splitLines(std::string_view text) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
      const size_t end = text.find('\n');
      std::string_view line = text.substr(0, end);
      if (!line.empty()) lines.push_back(line);
      if (end == std::string_view::npos) break;
      text.remove_prefix(end + 1);
    }
    return lines;
  }
  SystemCommandRunner real_;
  absl::Mutex mu_;
  std::vector<std::string> printed_;
};

class DrbdPoolIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    drbdadm_ = sbinProgram("drbdadm", "drbd-utils");
    losetup_ = sbinProgram("losetup", "mount");
    ASSERT_FALSE(drbdadm_.empty()) << "this test needs drbdadm: install drbd-utils";
    ASSERT_FALSE(losetup_.empty()) << "this test needs losetup (Debian package mount)";
    ASSERT_EQ(::geteuid(), 0u) << "this test attaches loop devices: run it as root";
    alpha_ = open("alpha", alpha_dir_);
    beta_ = open("beta", beta_dir_);
    ASSERT_NE(alpha_, nullptr);
    ASSERT_NE(beta_, nullptr);
  }
  void TearDown() override {
    // Whatever a failed test left: loop devices detached, files removed.
    for (DrbdPool* pool : {alpha_.get(), beta_.get()}) {
      if (pool == nullptr) continue;
      absl::Status removed = pool->remove("web1");
      if (!removed.ok()) ADD_FAILURE() << removed;
    }
  }

  std::unique_ptr<DrbdPool> open(const std::string& host, const testing::TempDir& dir) {
    auto backing = LoopFileBacking::open(runner_, {"rep", dir.file("files"), losetup_});
    EXPECT_TRUE(backing.ok()) << backing.status();
    if (!backing.ok()) return nullptr;
    DrbdPoolOptions options;
    options.name = "rep";
    const DrbdPoolNode alpha{"alpha", "10.0.0.1", 0}, beta{"beta", "10.0.0.2", 1};
    options.local = host == "alpha" ? alpha : beta;
    options.peer = host == "alpha" ? beta : alpha;
    options.resource_dir = dir.file("resources");
    options.drbdadm = drbdadm_;
    options.dry_run = true;
    auto pool = DrbdPool::open(runner_, options, std::move(*backing));
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  // `drbdadm -c FILE ARGS...` for real as node `node`.
  absl::StatusOr<std::string> drbdadm(const std::string& file, const std::string& node,
                                      std::vector<std::string> args) {
    std::vector<std::string> argv = {drbdadm_, "-c", file};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandOptions options;
    options.env = {"__DRBD_NODE__=" + node};
    SystemCommandRunner runner;
    return runChecked(runner, argv, options);
  }

  std::string drbdadm_, losetup_;
  testing::TempDir alpha_dir_, beta_dir_;
  RecordingRunner runner_;
  std::unique_ptr<DrbdPool> alpha_, beta_;
};

TEST_F(DrbdPoolIntegrationTest, CreateLifecycleMigrationRemove) {
  const DrbdVolumePlacement placement{100, 7789};
  absl::StatusOr<VolumeInfo> a = alpha_->create("web1", 64 << 20, placement);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::vector<std::string> alpha_create = runner_.take();
  absl::StatusOr<VolumeInfo> b = beta_->create("web1", 64 << 20, placement);
  ASSERT_TRUE(b.ok()) << b.status();
  const std::vector<std::string> beta_create = runner_.take();

  SystemCommandRunner plain;
  absl::StatusOr<std::string> alpha_out =
      runChecked(plain, {losetup_, "-j", alpha_dir_.file("files/web1.img")});
  ASSERT_TRUE(alpha_out.ok()) << alpha_out.status();
  const std::string alpha_loop = alpha_out->substr(0, alpha_out->find(':'));
  absl::StatusOr<std::string> beta_out =
      runChecked(plain, {losetup_, "-j", beta_dir_.file("files/web1.img")});
  ASSERT_TRUE(beta_out.ok()) << beta_out.status();
  const std::string beta_loop = beta_out->substr(0, beta_out->find(':'));
  ASSERT_TRUE(alpha_loop.starts_with("/dev/loop")) << *alpha_out;
  ASSERT_TRUE(beta_loop.starts_with("/dev/loop")) << *beta_out;

  const std::string peer_options =
      " --after-sb-2pri=disconnect --after-sb-1pri=discard-secondary "
      "--after-sb-0pri=discard-zero-changes";
  // alpha (node 0): metadata, up, the one forced promotion, secondary.
  EXPECT_THAT(alpha_create,
              ElementsAre("drbdmeta 100 v09 " + alpha_loop + " internal create-md 1 --force",
                          "drbdsetup new-resource rep-web1 0 --auto-promote=no",
                          "drbdsetup new-minor rep-web1 100 0",
                          "drbdsetup new-peer rep-web1 1 --_name=beta" + peer_options +
                              " --allow-two-primaries=no --protocol=C",
                          "drbdsetup new-path rep-web1 1 ipv4:10.0.0.1:7789 ipv4:10.0.0.2:7789",
                          "drbdmeta 100 v09 " + alpha_loop + " internal apply-al",
                          "drbdsetup attach 100 " + alpha_loop + " " + alpha_loop + " internal",
                          "drbdsetup connect rep-web1 1", "drbdsetup primary rep-web1 --force",
                          "drbdsetup secondary rep-web1"));
  // beta (node 1): metadata and up; it syncs from alpha.
  EXPECT_THAT(beta_create,
              ElementsAre("drbdmeta 100 v09 " + beta_loop + " internal create-md 1 --force",
                          "drbdsetup new-resource rep-web1 1 --auto-promote=no",
                          "drbdsetup new-minor rep-web1 100 0",
                          "drbdsetup new-peer rep-web1 0 --_name=alpha" + peer_options +
                              " --allow-two-primaries=no --protocol=C",
                          "drbdsetup new-path rep-web1 0 ipv4:10.0.0.2:7789 ipv4:10.0.0.1:7789",
                          "drbdmeta 100 v09 " + beta_loop + " internal apply-al",
                          "drbdsetup attach 100 " + beta_loop + " " + beta_loop + " internal",
                          "drbdsetup connect rep-web1 0"));

  // drbdadm parses and accepts both files, each as its own node.
  const std::string alpha_file = alpha_->resourceFile("rep-web1");
  const std::string beta_file = beta_->resourceFile("rep-web1");
  for (const auto& [file, node] : {std::pair{alpha_file, "alpha"}, std::pair{beta_file, "beta"}}) {
    absl::StatusOr<std::string> dumped = drbdadm(file, node, {"dump", "rep-web1"});
    ASSERT_TRUE(dumped.ok()) << node << ": " << dumped.status();
    EXPECT_THAT(*dumped, HasSubstr("resource rep-web1"));
    EXPECT_THAT(*dumped, HasSubstr("device           minor 100;"));
    EXPECT_TRUE(drbdadm(file, node, {"sh-nop"}).ok()) << node;
  }
  EXPECT_EQ(*alpha_->diskOption("web1"), "path=/dev/drbd100");

  // The VM starts on alpha, moves live to beta, stops there.
  ASSERT_TRUE(alpha_->promote("web1").ok());
  ASSERT_TRUE(alpha_->allowTwoPrimaries("web1", true).ok());
  EXPECT_THAT(runner_.take(),
              ElementsAre("drbdsetup primary rep-web1",
                          "drbdsetup net-options rep-web1 1 --_name=beta" + peer_options +
                              " --protocol=C --allow-two-primaries=yes"));
  ASSERT_TRUE(beta_->allowTwoPrimaries("web1", true).ok());
  ASSERT_TRUE(beta_->promote("web1").ok());
  EXPECT_THAT(runner_.take(),
              ElementsAre("drbdsetup net-options rep-web1 0 --_name=alpha" + peer_options +
                              " --protocol=C --allow-two-primaries=yes",
                          "drbdsetup primary rep-web1"));
  ASSERT_TRUE(alpha_->demote("web1").ok());
  ASSERT_TRUE(alpha_->allowTwoPrimaries("web1", false).ok());
  EXPECT_THAT(runner_.take(),
              ElementsAre("drbdsetup secondary rep-web1",
                          "drbdsetup net-options rep-web1 1 --_name=beta" + peer_options +
                              " --protocol=C --allow-two-primaries=no"));
  ASSERT_TRUE(beta_->demote("web1").ok());
  EXPECT_THAT(runner_.take(), ElementsAre("drbdsetup secondary rep-web1"));

  // The size the pool reports is where drbdmeta puts the bitmap on the real loop device.
  ASSERT_TRUE(drbdadm(alpha_file, "alpha", {"create-md", "--force", "rep-web1"}).ok());
  absl::StatusOr<std::string> md = drbdadm(alpha_file, "alpha", {"dump-md", "rep-web1"});
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_THAT(*md, HasSubstr(fmt::format("# bm_offset {}\n", a->size_bytes)));
  EXPECT_GE(a->size_bytes, uint64_t{64} << 20);
  EXPECT_EQ(a->size_bytes, b->size_bytes);

  // remove: down (dry run), the file, the loop device, the backing file.
  ASSERT_TRUE(alpha_->remove("web1").ok());
  EXPECT_THAT(runner_.take(), ElementsAre("drbdsetup down rep-web1"));
  absl::StatusOr<std::string> loops = runChecked(plain, {losetup_, "-a"});
  ASSERT_TRUE(loops.ok()) << loops.status();
  EXPECT_THAT(*loops, ::testing::Not(HasSubstr(alpha_dir_.file("files/web1.img"))));
  EXPECT_NE(::access(alpha_file.c_str(), F_OK), 0);
  EXPECT_NE(::access(alpha_dir_.file("files/web1.img").c_str(), F_OK), 0);
  EXPECT_THAT(alpha_->list().value(), IsEmpty());
  EXPECT_THAT(beta_->list().value().size(), 1u);
}

}  // namespace
}  // namespace flotilla::storage
