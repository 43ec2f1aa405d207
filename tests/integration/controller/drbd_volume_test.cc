// DRBD volumes through flotilla-controller (docs/controller.md "DRBD volumes"): one replica,
// one etcd member, two hosts whose agents both configure the DRBD pool "rep" (sparse files on
// real loop devices; drbdadm in dry-run mode, as this kernel has no drbd module). CreateVolume
// allocates the lowest free minor and port, records them with the volume and creates it on
// both hosts with them; a failure on the second host removes it from the first and leaves no
// record; DeleteVolume removes both copies and frees the numbers for the next volume.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/command.h"
#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/controller/controller_cluster.h"

namespace flotilla::controller {
namespace {

using ::flotilla::controller::testing::ControllerCluster;
using ::testing::HasSubstr;

using Stub = v1::ClusterService::Stub;

constexpr char kDrbdadm[] = "/usr/sbin/drbdadm";
constexpr char kLosetup[] = "/usr/sbin/losetup";

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// Detaches every loop device still attached to a backing file under `dir` (a failed test's).
class LoopCleanup {
 public:
  explicit LoopCleanup(std::string dir) : dir_(std::move(dir)) {}
  ~LoopCleanup() {
    std::error_code error;
    SystemCommandRunner runner;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_, error)) {
      if (entry.path().extension() != ".img") continue;
      absl::StatusOr<std::string> out = runChecked(runner, {kLosetup, "-j", entry.path()});
      if (!out.ok() || out->empty()) continue;
      const std::string device = out->substr(0, out->find(':'));
      ADD_FAILURE() << "loop device " << device << " was left on " << entry.path();
      (void)runChecked(runner, {kLosetup, "-d", device});
    }
  }

 private:
  std::string dir_;
};

class DrbdVolumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kDrbdadm, X_OK), 0) << "this test needs drbdadm: install drbd-utils";
    ASSERT_EQ(::geteuid(), 0u) << "this test needs root (loop devices, namespaces)";
    auto cluster = ControllerCluster::start(
        {.hosts = 2,
         .controllers = 1,
         .etcd_members = 1,
         .storage = false,
         .more_pools = [this](int index, const agent::testing::ClusterNetwork& network) {
           const int peer = 1 - index;
           return fmt::format(
               "  - name: rep\n"
               "    type: drbd\n"
               "    path: {}\n"
               "    drbd:\n"
               "      node: {{address: {}, node_id: {}}}\n"
               "      peer: {{host: {}, address: {}, node_id: {}}}\n"
               "      resource_dir: {}\n"
               "      drbdadm: {}\n"
               "      losetup: {}\n"
               "      dry_run: true\n",
               files(index), network.hostAddress(index), index, hostName(peer),
               network.hostAddress(peer), peer, resources(index), kDrbdadm, kLosetup);
         }});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(cluster_->waitForLeader(absl::Seconds(30)).ok());
    v1::PoolRecord rep;
    rep.mutable_meta()->set_name("rep");
    rep.set_type(v1::POOL_TYPE_DRBD);
    v1::PoolRecord made;
    grpc::Status status = cluster_->call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.CreatePool(&context, rep, &made);
    });
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  static std::string hostName(int index) {
    return fmt::format("host-{}", static_cast<char>('a' + index));
  }
  std::string files(int index) const { return dir_.file(hostName(index) + "/files"); }
  std::string resources(int index) const { return dir_.file(hostName(index) + "/resources"); }
  std::string resourceFile(int index, const std::string& volume) const {
    return fmt::format("{}/rep-{}.res", resources(index), volume);
  }

  // CreateVolume rep/NAME, retried while the hosts' first reports are not in yet.
  grpc::Status createVolume(const std::string& name, v1::VolumeRecord* made) {
    v1::CreateVolumeRequest request;
    request.set_pool("rep");
    request.set_name(name);
    request.set_size_bytes(uint64_t{16} << 20);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (true) {
      grpc::Status status = cluster_->call([&](Stub& stub, grpc::ClientContext& context) {
        return stub.CreateVolume(&context, request, made);
      });
      if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION ||
          status.error_message().find("needs its two hosts") == std::string::npos ||
          absl::Now() > deadline) {
        return status;
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
  }

  grpc::Status deleteVolume(const std::string& name) {
    v1::VolumeNameRequest request;
    request.set_pool("rep");
    request.set_name(name);
    v1::DeleteResponse deleted;
    return cluster_->call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.DeleteVolume(&context, request, &deleted);
    });
  }

  std::vector<std::string> recordedVolumes() {
    v1::ListVolumesClusterRequest request;
    request.set_pool("rep");
    v1::ListVolumesClusterResponse response;
    grpc::Status status = cluster_->call([&](Stub& stub, grpc::ClientContext& context) {
      return stub.ListVolumes(&context, request, &response);
    });
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> names;
    for (const v1::VolumeRecord& volume : response.volumes()) names.push_back(volume.meta().name());
    return names;
  }

  ::flotilla::testing::TempDir dir_;
  LoopCleanup loops_{dir_.path()};  // runs after the cluster (and its agents) is gone
  std::unique_ptr<ControllerCluster> cluster_;
};

TEST_F(DrbdVolumeTest, CreatedOnBothHostsWithOnePlacement) {
  v1::VolumeRecord d1;
  grpc::Status status = createVolume("d1", &d1);
  ASSERT_TRUE(status.ok()) << status.error_message() << cluster_->logs();
  EXPECT_EQ(d1.drbd().minor(), 100u);
  EXPECT_EQ(d1.drbd().port(), 7789u);
  for (int host = 0; host < 2; ++host) {
    const std::string text = readFile(resourceFile(host, "d1"));
    EXPECT_THAT(text, HasSubstr("resource rep-d1 {")) << hostName(host);
    EXPECT_THAT(text, HasSubstr("device minor 100;")) << hostName(host);
    EXPECT_THAT(text, HasSubstr(fmt::format("address ipv4 {}:7789;",
                                            cluster_->network().hostAddress(1 - host))))
        << hostName(host);
    EXPECT_TRUE(exists(files(host) + "/d1.img")) << hostName(host);
  }
  v1::VolumeRecord d2;
  ASSERT_TRUE(createVolume("d2", &d2).ok());
  EXPECT_EQ(d2.drbd().minor(), 101u);
  EXPECT_EQ(d2.drbd().port(), 7790u);

  // host-b already has a resource file for d3 (left by hand): its create fails, host-a's copy
  // is removed again and no record is left.
  std::filesystem::create_directories(resources(1));
  { std::ofstream(resourceFile(1, "d3")) << "# not Flotilla's\n"; }
  v1::VolumeRecord d3;
  status = createVolume("d3", &d3);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("on host host-b"));
  EXPECT_FALSE(exists(resourceFile(0, "d3")));
  EXPECT_FALSE(exists(files(0) + "/d3.img"));
  EXPECT_THAT(recordedVolumes(), ::testing::ElementsAre("d1", "d2"));
  std::filesystem::remove(resourceFile(1, "d3"));

  // The numbers d3 had are free again; d1's are once d1 is deleted (on both hosts).
  v1::VolumeRecord d4;
  ASSERT_TRUE(createVolume("d4", &d4).ok());
  EXPECT_EQ(d4.drbd().minor(), 102u);
  ASSERT_TRUE(deleteVolume("d1").ok());
  for (int host = 0; host < 2; ++host) {
    EXPECT_FALSE(exists(resourceFile(host, "d1"))) << hostName(host);
    EXPECT_FALSE(exists(files(host) + "/d1.img")) << hostName(host);
  }
  v1::VolumeRecord d5;
  ASSERT_TRUE(createVolume("d5", &d5).ok());
  EXPECT_EQ(d5.drbd().minor(), 100u);
  EXPECT_EQ(d5.drbd().port(), 7789u);

  for (const char* name : {"d2", "d4", "d5"}) {
    status = deleteVolume(name);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
  }
  EXPECT_THAT(recordedVolumes(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace flotilla::controller
