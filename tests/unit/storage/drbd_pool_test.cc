// Tests of DrbdPool (storage/drbd_pool.h) without drbdadm or loop devices: the pools of both
// hosts of one DRBD pool, each over an in-memory backing and a recording FakeCommandRunner,
// checked command line by command line (create on both nodes with the one forced promotion,
// promote/demote, dual-primary, remove), plus the placement and name checks, undo on failure,
// the volume-size arithmetic, reconcile after the backing device changed, and LoopFileBacking's
// losetup lines.
#include "storage/drbd_pool.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/testing/fake_command_runner.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Backing devices in memory: /dev/fakeN, numbered in creation order.
class FakeBacking final : public DrbdBacking {
 public:
  explicit FakeBacking(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::StatusOr<std::string> create(std::string_view volume, uint64_t size_bytes) override {
    if (devices_.count(std::string(volume)) != 0) return absl::AlreadyExistsError("exists");
    devices_[std::string(volume)] = fmt::format("{}{}", prefix_, next_++);
    sizes_[std::string(volume)] = size_bytes;
    return devices_[std::string(volume)];
  }
  absl::StatusOr<std::string> attach(std::string_view volume) override {
    auto it = devices_.find(std::string(volume));
    if (it == devices_.end()) return absl::NotFoundError("no backing");
    return it->second;
  }
  absl::Status remove(std::string_view volume) override {
    devices_.erase(std::string(volume));
    sizes_.erase(std::string(volume));
    return absl::OkStatus();
  }
  absl::StatusOr<VolumeInfo> info(std::string_view volume) override {
    auto it = sizes_.find(std::string(volume));
    if (it == sizes_.end()) return absl::NotFoundError("no backing");
    return VolumeInfo{std::string(volume), it->second, 4096};
  }
  absl::StatusOr<std::vector<std::string>> volumes() override {
    std::vector<std::string> names;
    for (const auto& [name, device] : devices_) names.push_back(name);
    return names;
  }
  std::map<std::string, std::string> devices_;
  std::map<std::string, uint64_t> sizes_;

 private:
  std::string prefix_;
  int next_ = 0;
};

// One host of the pool "rep" between alpha (node 0) and beta (node 1).
struct Host {
  Host(const std::string& name, const std::string& dir) {
    DrbdPoolOptions options;
    options.name = "rep";
    options.local = name == "alpha" ? DrbdPoolNode{"alpha", "10.0.0.1", 0}
                                    : DrbdPoolNode{"beta", "10.0.0.2", 1};
    options.peer = name == "alpha" ? DrbdPoolNode{"beta", "10.0.0.2", 1}
                                   : DrbdPoolNode{"alpha", "10.0.0.1", 0};
    options.resource_dir = dir;
    auto fake = std::make_unique<FakeBacking>(name == "alpha" ? "/dev/loop" : "/dev/loop1");
    backing = fake.get();
    auto opened = DrbdPool::open(runner, options, std::move(fake));
    EXPECT_TRUE(opened.ok()) << opened.status();
    pool = std::move(*opened);
  }
  // The calls since the last take(), as "drbdadm ARGS" without the -c FILE option.
  std::vector<std::string> take() {
    std::vector<std::string> lines;
    for (const FakeCommandRunner::Call& call : runner.calls()) {
      std::vector<std::string> argv = call.argv;
      if (argv.size() > 2 && argv[1] == "-c") argv.erase(argv.begin() + 1, argv.begin() + 3);
      lines.push_back(formatCommandLine(argv));
    }
    runner.clearCalls();
    return lines;
  }
  FakeCommandRunner runner;
  FakeBacking* backing = nullptr;
  std::unique_ptr<DrbdPool> pool;
};

class DrbdPoolTest : public ::testing::Test {
 protected:
  testing::TempDir alpha_dir_, beta_dir_;
  Host alpha_{"alpha", alpha_dir_.path()};
  Host beta_{"beta", beta_dir_.path()};
  const DrbdVolumePlacement placement_{100, 7789};
};

TEST_F(DrbdPoolTest, CreatesOnBothNodesWithOneForcedPromotion) {
  absl::StatusOr<VolumeInfo> a = alpha_.pool->create("web1", 1 << 30, placement_);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<VolumeInfo> b = beta_.pool->create("web1", 1 << 30, placement_);
  ASSERT_TRUE(b.ok()) << b.status();
  // Every call names the resource file and which node this host is.
  const FakeCommandRunner::Call call = beta_.runner.lastCall();
  // The lower node-id holds the first UpToDate copy: forced once, at creation, then secondary.
  EXPECT_THAT(alpha_.take(),
              ElementsAre("drbdadm create-md --force rep-web1", "drbdadm up rep-web1",
                          "drbdadm primary --force rep-web1", "drbdadm secondary rep-web1"));
  EXPECT_THAT(beta_.take(),
              ElementsAre("drbdadm create-md --force rep-web1", "drbdadm up rep-web1"));
  ASSERT_TRUE(alpha_.pool->get("web1").ok());
  EXPECT_EQ(a->size_bytes, b->size_bytes);
  EXPECT_GE(a->size_bytes, uint64_t{1} << 30);
  EXPECT_EQ(alpha_.backing->info("web1").value().size_bytes, drbdBackingBytes(1 << 30));

  const std::string file = beta_dir_.file("rep-web1.res");
  EXPECT_EQ(call.argv[1], "-c");
  EXPECT_EQ(call.argv[2], file);
  EXPECT_THAT(call.options.env, ElementsAre("__DRBD_NODE__=beta"));
  const std::string text = readFile(file);
  EXPECT_THAT(text, HasSubstr("resource rep-web1 {"));
  EXPECT_THAT(text, HasSubstr("  on alpha {\n    node-id 0;\n    device minor 100;\n"
                              "    disk /dev/loop10;\n"));
  EXPECT_THAT(text, HasSubstr("  on beta {\n    node-id 1;\n    device minor 100;\n"
                              "    disk /dev/loop10;\n    meta-disk internal;\n"
                              "    address ipv4 10.0.0.2:7789;\n"));
  EXPECT_EQ(*alpha_.pool->diskOption("web1"), "path=/dev/drbd100");
  EXPECT_EQ(*beta_.pool->diskOption("web1"), "path=/dev/drbd100");
  absl::StatusOr<std::vector<VolumeInfo>> listed = beta_.pool->list();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "web1");
}

TEST_F(DrbdPoolTest, LifecycleAndMigrationSteps) {
  ASSERT_TRUE(alpha_.pool->create("web1", 1 << 20, placement_).ok());
  ASSERT_TRUE(beta_.pool->create("web1", 1 << 20, placement_).ok());
  alpha_.take();
  beta_.take();
  // The VM runs on alpha, then moves to beta.
  ASSERT_TRUE(alpha_.pool->promote("web1").ok());
  ASSERT_TRUE(alpha_.pool->allowTwoPrimaries("web1", true).ok());
  ASSERT_TRUE(beta_.pool->allowTwoPrimaries("web1", true).ok());
  ASSERT_TRUE(beta_.pool->promote("web1").ok());
  ASSERT_TRUE(alpha_.pool->demote("web1").ok());
  ASSERT_TRUE(alpha_.pool->allowTwoPrimaries("web1", false).ok());
  ASSERT_TRUE(beta_.pool->allowTwoPrimaries("web1", false).ok());
  EXPECT_THAT(alpha_.take(), ElementsAre("drbdadm primary rep-web1",
                                         "drbdadm net-options --allow-two-primaries=yes rep-web1",
                                         "drbdadm secondary rep-web1",
                                         "drbdadm net-options --allow-two-primaries=no rep-web1"));
  EXPECT_THAT(beta_.take(), ElementsAre("drbdadm net-options --allow-two-primaries=yes rep-web1",
                                        "drbdadm primary rep-web1",
                                        "drbdadm net-options --allow-two-primaries=no rep-web1"));
  EXPECT_TRUE(absl::IsNotFound(alpha_.pool->promote("other")));
  EXPECT_THAT(alpha_.take(), IsEmpty());
}

TEST_F(DrbdPoolTest, RemoveIsIdempotent) {
  ASSERT_TRUE(beta_.pool->create("web1", 1 << 20, placement_).ok());
  beta_.take();
  ASSERT_TRUE(beta_.pool->remove("web1").ok());
  EXPECT_THAT(beta_.take(), ElementsAre("drbdadm down rep-web1"));
  EXPECT_TRUE(beta_.backing->devices_.empty());
  EXPECT_TRUE(absl::IsNotFound(beta_.pool->get("web1").status()));
  ASSERT_TRUE(beta_.pool->remove("web1").ok());
  EXPECT_THAT(beta_.take(), IsEmpty());  // nothing left to take down

  // A resource still in use: down fails, the volume stays.
  ASSERT_TRUE(beta_.pool->create("web2", 1 << 20, placement_).ok());
  beta_.runner.setHandler([](const std::vector<std::string>& argv, const CommandOptions&) {
    if (argv[3] == "down") {
      return FakeCommandRunner::exited(11, "",
                                       "rep-web2: State change failed: (-12) Device is "
                                       "held open by someone\n");
    }
    return FakeCommandRunner::exited(0);
  });
  absl::Status busy = beta_.pool->remove("web2");
  EXPECT_THAT(busy.message(), HasSubstr("held open by someone"));
  EXPECT_THAT(busy.message(), HasSubstr("delete the VM first"));
  EXPECT_TRUE(beta_.pool->get("web2").ok());
}

TEST_F(DrbdPoolTest, AFailedCreateLeavesNothing) {
  alpha_.runner.setHandler([](const std::vector<std::string>& argv, const CommandOptions&) {
    if (argv[3] == "up") return FakeCommandRunner::exited(10, "", "up failed\n");
    return FakeCommandRunner::exited(0);
  });
  absl::Status failed = alpha_.pool->create("web1", 1 << 20, placement_).status();
  EXPECT_THAT(failed.message(), HasSubstr("pool rep: creating volume web1"));
  EXPECT_THAT(failed.message(), HasSubstr("up failed"));
  EXPECT_THAT(alpha_.take(), ElementsAre("drbdadm create-md --force rep-web1",
                                         "drbdadm up rep-web1", "drbdadm down rep-web1"));
  EXPECT_TRUE(alpha_.backing->devices_.empty());
  EXPECT_TRUE(absl::IsNotFound(alpha_.pool->get("web1").status()));
  alpha_.runner.setHandler(nullptr);
  EXPECT_TRUE(alpha_.pool->create("web1", 1 << 20, placement_).ok());
}

TEST_F(DrbdPoolTest, ChecksNamesPlacementsAndClashes) {
  EXPECT_TRUE(absl::IsFailedPrecondition(alpha_.pool->create("web1", 1 << 20).status()));
  EXPECT_THAT(alpha_.pool->create("web1", 1 << 20).status().message(),
              HasSubstr("through the controller"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      alpha_.pool->create("web1", 1 << 20, DrbdVolumePlacement{100, 0}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(alpha_.pool->create("Web1", 1 << 20, placement_).status()));
  EXPECT_THAT(alpha_.pool->create(std::string(62, 'a'), 1 << 20, placement_).status().message(),
              HasSubstr("at most 59 characters"));
  ASSERT_TRUE(alpha_.pool->create("web1", 1 << 20, placement_).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(alpha_.pool->create("web1", 1 << 20, placement_).status()));
  EXPECT_THAT(
      alpha_.pool->create("web2", 1 << 20, DrbdVolumePlacement{100, 7790}).status().message(),
      HasSubstr("both use minor 100 on host alpha"));
  EXPECT_THAT(
      alpha_.pool->create("web2", 1 << 20, DrbdVolumePlacement{101, 7789}).status().message(),
      HasSubstr("port 7789"));
  alpha_.take();
  EXPECT_TRUE(alpha_.pool->create("web2", 1 << 20, DrbdVolumePlacement{101, 7790}).ok());
  EXPECT_TRUE(absl::IsUnimplemented(alpha_.pool->resize("web1", 2 << 20)));
  EXPECT_THAT(alpha_.pool->resize("web1", 2 << 20).message(), HasSubstr("create a larger volume"));
  EXPECT_TRUE(absl::IsUnimplemented(alpha_.pool->clone("web1", "web3").status()));
}

TEST_F(DrbdPoolTest, ReconcileRewritesTheFileWhenTheLoopDeviceChanged) {
  ASSERT_TRUE(beta_.pool->create("web1", 1 << 20, placement_).ok());
  beta_.take();
  beta_.backing->devices_["web1"] = "/dev/loop7";  // after a reboot
  absl::StatusOr<DrbdReconcileReport> report = beta_.pool->reconcile();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->rewritten, ElementsAre("web1"));
  EXPECT_THAT(report->adjusted, ElementsAre("web1"));
  EXPECT_THAT(readFile(beta_dir_.file("rep-web1.res")), HasSubstr("disk /dev/loop7;"));
  EXPECT_THAT(beta_.take(), ElementsAre("drbdadm adjust rep-web1"));
  report = beta_.pool->reconcile();
  ASSERT_TRUE(report.ok());
  EXPECT_THAT(report->rewritten, IsEmpty());
}

TEST(DrbdSizeTest, BackingHoldsTheDataAndTheInternalMetadata) {
  // What drbdmeta 9.22 laid out (dump-md after create-md on loop devices): 64 MiB backing →
  // bm_offset 67067904; 1 GiB + 68 KiB → bm_offset 1073737728 (a 36 KiB bitmap).
  EXPECT_EQ(drbdUsableBytes(uint64_t{64} << 20), 67067904u);
  EXPECT_EQ(drbdUsableBytes(1073811456), 1073737728u);
  EXPECT_EQ(drbdBackingBytes(uint64_t{1} << 30), (uint64_t{1} << 30) + 73728);
  EXPECT_EQ(drbdUsableBytes(drbdBackingBytes(uint64_t{1} << 30)), uint64_t{1} << 30);
  for (uint64_t size :
       {uint64_t{512}, uint64_t{1} << 20, (uint64_t{128} << 20) + 512, uint64_t{10} << 30}) {
    const uint64_t backing = drbdBackingBytes(size);
    EXPECT_GE(drbdUsableBytes(backing), size) << size;
    EXPECT_LT(drbdUsableBytes(backing), size + 8192) << size;
    EXPECT_EQ(backing % 4096, 0u);
  }
}

TEST(LoopFileBackingTest, AttachesAndDetachesLoopDevices) {
  testing::TempDir dir;
  FakeCommandRunner runner;
  std::map<std::string, std::string> attached;  // file → device
  runner.setHandler([&](const std::vector<std::string>& argv, const CommandOptions&) {
    if (argv[1] == "-j") {
      auto it = attached.find(argv[2]);
      return FakeCommandRunner::exited(
          0, it == attached.end() ? "" : it->second + ": []: (" + argv[2] + ")\n");
    }
    if (argv[1] == "-f") {
      attached[argv[3]] = "/dev/loop4";
      return FakeCommandRunner::exited(0, "/dev/loop4\n");
    }
    return FakeCommandRunner::exited(0);
  });
  auto backing = LoopFileBacking::open(runner, {"rep", dir.path(), "losetup"});
  ASSERT_TRUE(backing.ok()) << backing.status();
  const std::string file = dir.file("web1.img");
  absl::StatusOr<std::string> device = (*backing)->create("web1", 1 << 20);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(*device, "/dev/loop4");
  EXPECT_EQ(*(*backing)->attach("web1"), "/dev/loop4");  // already attached: the same device
  EXPECT_THAT((*backing)->volumes().value(), ElementsAre("web1"));
  ASSERT_TRUE((*backing)->remove("web1").ok());
  EXPECT_THAT(runner.commandLines(),
              ElementsAre("losetup -j " + file, "losetup -f --show " + file, "losetup -j " + file,
                          "losetup -j " + file, "losetup -d /dev/loop4"));
  EXPECT_TRUE(absl::IsNotFound((*backing)->info("web1").status()));
  EXPECT_TRUE((*backing)->remove("web1").ok());
}

}  // namespace
}  // namespace flotilla::storage
