// Tests of LocalDirPool (storage/local_dir_pool.h) in real temporary directories: name and
// size rules, create (sparse, never overwriting), grow-only resize, idempotent remove, clone
// (content and holes kept, both temporary-file strategies, nothing left behind when it fails
// half-way), list/get/diskOption, stale temporary files, concurrent creates, open errors.
#include "storage/local_dir_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = uint64_t{1} << 20;

std::vector<std::string> directoryNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void writeAt(const std::string& path, uint64_t offset, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << path;
  ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(data.size()));
}

std::string readAt(const std::string& path, uint64_t offset, size_t length) {
  std::string data(length, '\0');
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd.valid()) << path;
  EXPECT_EQ(::pread(fd.get(), data.data(), length, static_cast<off_t>(offset)),
            static_cast<ssize_t>(length));
  return data;
}

std::string pattern(char seed, size_t length) {
  std::string data(length, '\0');
  for (size_t i = 0; i < length; ++i) data[i] = static_cast<char>(seed + static_cast<char>(i % 97));
  return data;
}

class LocalDirPoolTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { pool_ = openPool(); }

  std::unique_ptr<LocalDirPool> openPool() {
    LocalDirPoolOptions options;
    options.name = "local";
    options.directory = dir_.path();
    options.unnamed_temp_files = GetParam();
    absl::StatusOr<std::unique_ptr<LocalDirPool>> pool = LocalDirPool::open(options);
    EXPECT_TRUE(pool.ok()) << pool.status();
    return pool.ok() ? std::move(*pool) : nullptr;
  }

  testing::TempDir dir_;
  std::unique_ptr<LocalDirPool> pool_;
};

INSTANTIATE_TEST_SUITE_P(TempFiles, LocalDirPoolTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "Unnamed" : "Named";
                         });

TEST_P(LocalDirPoolTest, CreatesSparseFilesOfTheGivenSize) {
  absl::StatusOr<VolumeInfo> info = pool_->create("web1", 64 * kMiB);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name, "web1");
  EXPECT_EQ(info->size_bytes, 64 * kMiB);
  EXPECT_LT(info->allocated_bytes, kMiB);  // nothing written
  struct stat st {};
  ASSERT_EQ(::stat(dir_.file("web1.img").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(64 * kMiB));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_THAT(directoryNames(dir_.path()), ElementsAre("web1.img"));  // no temporary left
  EXPECT_EQ(readAt(dir_.file("web1.img"), 10 * kMiB, 4), std::string(4, '\0'));
}

TEST_P(LocalDirPoolTest, NeverOverwritesAnExistingVolume) {
  ASSERT_TRUE(pool_->create("web1", kMiB).ok());
  writeAt(dir_.file("web1.img"), 0, "guest data");
  absl::StatusOr<VolumeInfo> again = pool_->create("web1", 2 * kMiB);
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  EXPECT_THAT(again.status().message(), HasSubstr("volume web1 already exists"));
  EXPECT_EQ(readAt(dir_.file("web1.img"), 0, 10), "guest data");
  EXPECT_EQ(pool_->get("web1")->size_bytes, kMiB);
}

TEST_P(LocalDirPoolTest, RejectsBadNamesAndSizes) {
  for (const char* name : {"", "Web1", "web_1", "-web", "web-", "a/b", "..", "web1.img"}) {
    absl::StatusOr<VolumeInfo> info = pool_->create(name, kMiB);
    EXPECT_TRUE(absl::IsInvalidArgument(info.status())) << name << ": " << info.status();
    EXPECT_THAT(info.status().message(), HasSubstr("lowercase letters, digits and '-'")) << name;
  }
  EXPECT_THAT(pool_->create(std::string(64, 'a'), kMiB).status().message(),
              HasSubstr("64 characters"));
  EXPECT_TRUE(pool_->create(std::string(63, 'a'), kMiB).ok());
  EXPECT_THAT(pool_->create("web1", 0).status().message(), HasSubstr("must be positive"));
  absl::Status unaligned = pool_->create("web1", 1000).status();
  EXPECT_TRUE(absl::IsInvalidArgument(unaligned));
  EXPECT_THAT(unaligned.message(), HasSubstr("size 1000 bytes is not a multiple of 512; use 1024"));
  EXPECT_FALSE(pool_->get("web1").ok());
}

TEST_P(LocalDirPoolTest, GrowsButNeverShrinks) {
  ASSERT_TRUE(pool_->create("db", 4 * kMiB).ok());
  writeAt(dir_.file("db.img"), 4 * kMiB - 5, "tail!");
  ASSERT_TRUE(pool_->resize("db", 8 * kMiB).ok());
  EXPECT_EQ(pool_->get("db")->size_bytes, 8 * kMiB);
  EXPECT_EQ(readAt(dir_.file("db.img"), 4 * kMiB - 5, 5), "tail!");
  EXPECT_TRUE(pool_->resize("db", 8 * kMiB).ok());  // same size: nothing to do

  absl::Status shrink = pool_->resize("db", 2 * kMiB);
  EXPECT_TRUE(absl::IsFailedPrecondition(shrink)) << shrink;
  EXPECT_THAT(shrink.message(), HasSubstr("cannot shrink volume db from 8388608 to 2097152 bytes"));
  EXPECT_EQ(pool_->get("db")->size_bytes, 8 * kMiB);

  EXPECT_TRUE(absl::IsNotFound(pool_->resize("nope", 8 * kMiB)));
  EXPECT_TRUE(absl::IsInvalidArgument(pool_->resize("db", 8 * kMiB + 1)));
}

TEST_P(LocalDirPoolTest, RemoveIsIdempotent) {
  ASSERT_TRUE(pool_->create("tmp1", kMiB).ok());
  EXPECT_TRUE(pool_->remove("tmp1").ok());
  EXPECT_TRUE(absl::IsNotFound(pool_->get("tmp1").status()));
  EXPECT_TRUE(pool_->remove("tmp1").ok());  // already gone
  EXPECT_TRUE(pool_->remove("never-existed").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(pool_->remove("../etc")));
  EXPECT_TRUE(directoryNames(dir_.path()).empty());
}

TEST_P(LocalDirPoolTest, ClonesContentAndKeepsHoles) {
  ASSERT_TRUE(pool_->create("golden", 32 * kMiB).ok());
  const std::string first = pattern('a', 70000);  // not a whole number of blocks
  const std::string last = pattern('k', 4096);
  writeAt(dir_.file("golden.img"), 0, first);
  writeAt(dir_.file("golden.img"), 20 * kMiB + 512, std::string(kMiB, '\0'));  // allocated zeroes
  writeAt(dir_.file("golden.img"), 32 * kMiB - 4096, last);

  absl::StatusOr<VolumeInfo> copy = pool_->clone("golden", "web2");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->name, "web2");
  EXPECT_EQ(copy->size_bytes, 32 * kMiB);
  EXPECT_EQ(readAt(dir_.file("web2.img"), 0, first.size()), first);
  EXPECT_EQ(readAt(dir_.file("web2.img"), 32 * kMiB - 4096, 4096), last);
  EXPECT_EQ(readAt(dir_.file("web2.img"), 10 * kMiB, 8), std::string(8, '\0'));
  // Holes stay holes: the copy allocates about what the source's data needs.
  EXPECT_LT(copy->allocated_bytes, 4 * kMiB);
  EXPECT_THAT(directoryNames(dir_.path()), ElementsAre("golden.img", "web2.img"));
  const CloneMethod method = pool_->lastCloneMethod();
  EXPECT_FALSE(cloneMethodName(method).empty());
}

TEST_P(LocalDirPoolTest, CloneRefusesExistingTargetsMissingSourcesAndItself) {
  ASSERT_TRUE(pool_->create("src", kMiB).ok());
  ASSERT_TRUE(pool_->create("dst", 2 * kMiB).ok());
  writeAt(dir_.file("dst.img"), 0, "keep me");
  absl::StatusOr<VolumeInfo> onto = pool_->clone("src", "dst");
  EXPECT_TRUE(absl::IsAlreadyExists(onto.status())) << onto.status();
  EXPECT_EQ(readAt(dir_.file("dst.img"), 0, 7), "keep me");
  EXPECT_EQ(pool_->get("dst")->size_bytes, 2 * kMiB);

  absl::StatusOr<VolumeInfo> missing = pool_->clone("nothing", "new1");
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_THAT(missing.status().message(), HasSubstr("no volume nothing to clone"));
  EXPECT_TRUE(absl::IsInvalidArgument(pool_->clone("src", "src").status()));
  EXPECT_THAT(directoryNames(dir_.path()), ElementsAre("dst.img", "src.img"));
}

// A clone or create that fails half-way (here: the file size limit of the process is below
// the volume's size, so ftruncate fails with EFBIG after the temporary file exists) leaves
// nothing behind: no target file and no temporary file. Run in a child process so that the
// limit does not reach the test runner.
TEST_P(LocalDirPoolTest, FailuresHalfWayLeaveNothingBehind) {
  ASSERT_TRUE(pool_->create("big", 64 * kMiB).ok());
  writeAt(dir_.file("big.img"), 0, "data");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
    rlimit limit{};
    limit.rlim_cur = limit.rlim_max = 8 * kMiB;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(10);
    absl::StatusOr<VolumeInfo> cloned = pool_->clone("big", "copy");
    if (cloned.ok()) ::_exit(11);
    absl::StatusOr<VolumeInfo> created = pool_->create("huge", 64 * kMiB);
    if (created.ok()) ::_exit(12);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: setrlimit failed, 11: clone succeeded, 12: create "
                                       "succeeded";
  EXPECT_THAT(directoryNames(dir_.path()), ElementsAre("big.img"));
}

TEST_P(LocalDirPoolTest, ListsOnlyVolumesSortedByName) {
  ASSERT_TRUE(pool_->create("zeta", kMiB).ok());
  ASSERT_TRUE(pool_->create("alpha", 2 * kMiB).ok());
  ASSERT_TRUE(pool_->create("mid-1", 3 * kMiB).ok());
  // Things that are not volumes of the pool.
  ASSERT_TRUE(dir_.sparseFile("notes.txt", 10).ok());
  ASSERT_TRUE(dir_.sparseFile("UPPER.img", 512).ok());
  ASSERT_TRUE(dir_.sparseFile(".hidden.img", 512).ok());
  std::filesystem::create_directory(dir_.file("sub.img"));
  std::filesystem::create_symlink(dir_.file("alpha.img"), dir_.file("link.img"));

  absl::StatusOr<std::vector<VolumeInfo>> volumes = pool_->list();
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  std::vector<std::string> names;
  for (const VolumeInfo& v : *volumes) names.push_back(v.name);
  EXPECT_THAT(names, ElementsAre("alpha", "mid-1", "zeta"));
  EXPECT_EQ((*volumes)[1].size_bytes, 3 * kMiB);

  EXPECT_TRUE(absl::IsFailedPrecondition(pool_->get("sub").status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(pool_->get("link").status()));
  EXPECT_TRUE(absl::IsFailedPrecondition(pool_->resize("link", 4 * kMiB)));
}

TEST_P(LocalDirPoolTest, DiskOptionIsThePathOfTheFile) {
  ASSERT_TRUE(pool_->create("web1", kMiB).ok());
  absl::StatusOr<std::string> option = pool_->diskOption("web1");
  ASSERT_TRUE(option.ok()) << option.status();
  EXPECT_EQ(*option, "path=" + dir_.file("web1.img"));
  EXPECT_TRUE(absl::IsNotFound(pool_->diskOption("web2").status()));
  EXPECT_EQ(pool_->name(), "local");
}

TEST_P(LocalDirPoolTest, OpenRemovesStaleTemporaryFiles) {
  ASSERT_TRUE(dir_.sparseFile(".web1.img.partial-a1B2c3", kMiB).ok());
  ASSERT_TRUE(dir_.sparseFile(".keep-me", 1).ok());
  std::unique_ptr<LocalDirPool> reopened = openPool();
  ASSERT_NE(reopened, nullptr);
  EXPECT_THAT(directoryNames(dir_.path()), ElementsAre(".keep-me"));
}

TEST_P(LocalDirPoolTest, ConcurrentCreatesOfOneNameLetExactlyOneWin) {
  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::atomic<int> exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<VolumeInfo> info = pool_->create("race", kMiB * static_cast<uint64_t>(i + 1));
      if (info.ok()) ++created;
      if (absl::IsAlreadyExists(info.status())) ++exists;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(exists.load(), kThreads - 1);
  EXPECT_THAT(directoryNames(dir_.path()), ElementsAre("race.img"));
}

TEST(LocalDirPoolOpenTest, ExplainsBadDirectories) {
  testing::TempDir dir;
  LocalDirPoolOptions options;
  options.name = "local";

  options.directory = "relative/dir";
  EXPECT_THAT(LocalDirPool::open(options).status().message(), HasSubstr("absolute path"));

  options.directory = dir.path() + "/a,b";
  EXPECT_THAT(LocalDirPool::open(options).status().message(), HasSubstr("contains ','"));

  options.directory = dir.path() + "/missing";
  absl::Status missing = LocalDirPool::open(options).status();
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_THAT(missing.message(), HasSubstr("mkdir -p " + dir.path() + "/missing"));

  options.create_directory = true;
  absl::StatusOr<std::unique_ptr<LocalDirPool>> created = LocalDirPool::open(options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ((*created)->directory(), dir.path() + "/missing");

  options.create_directory = false;
  options.directory = *dir.sparseFile("file", 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(LocalDirPool::open(options).status()));

  options.directory = dir.path() + "//x/../";
  options.create_directory = true;
  created = LocalDirPool::open(options);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ((*created)->directory(), dir.path());
  EXPECT_EQ((*created)->volumePath("v"), dir.path() + "/v.img");

  options.name = "Local";
  EXPECT_THAT(LocalDirPool::open(options).status().message(), HasSubstr("invalid pool name"));
}

TEST(VolumeNameTest, FollowsTheDnsLabelRule) {
  EXPECT_TRUE(validateVolumeName("a").ok());
  EXPECT_TRUE(validateVolumeName("0").ok());
  EXPECT_TRUE(validateVolumeName("db-data-2").ok());
  EXPECT_THAT(validateVolumeName("Web").message(), HasSubstr("uppercase"));
  EXPECT_THAT(validateVolumeName("a b").message(), HasSubstr("contains ' '"));
  EXPECT_THAT(validateVolumeName("").message(), HasSubstr("it is empty"));
  EXPECT_THAT(validateVolumeName("a-").message(), HasSubstr("starts or ends with '-'"));
  EXPECT_THAT(validateVolumeName("x:y").message(), HasSubstr("invalid volume name 'x:y'"));
}

}  // namespace
}  // namespace flotilla::storage
