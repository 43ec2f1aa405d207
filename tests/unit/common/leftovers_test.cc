// findLeftovers (tests/support/leftovers.h) sees a process that names the test's directory,
// the directory itself and a missing namespace, link or cgroup as what they are; once the
// process and the directory are gone, nothing.
#include "tests/support/leftovers.h"

#include <filesystem>
#include <optional>

#include "common/process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(LeftoversTest, FindsWhatIsStillThereAndOnlyThat) {
  std::optional<TempDir> dir;
  dir.emplace();
  const std::string path = dir->path();
  Traces traces{.namespaces = {"flotilla-no-such-ns"},
                .links = {"flno0"},
                .paths = {path},
                .cgroups = {"flotilla-no-such-cgroup"},
                .command_lines = {path}};
  SpawnOptions options;
  options.argv = {"sh", "-c", "sleep 60; : " + path};
  auto sleeper = ChildProcess::spawn(options);
  ASSERT_TRUE(sleeper.ok()) << sleeper.status();
  // spawn() returns before the child has exec'd sh (until then its command line is ours).
  std::vector<std::string> left = findLeftovers(traces);
  for (int attempt = 0; attempt < 100 && left.size() < 2; ++attempt) {
    absl::SleepFor(absl::Milliseconds(20));
    left = findLeftovers(traces);
  }
  ASSERT_EQ(left.size(), 2U) << ::testing::PrintToString(left);
  EXPECT_EQ(left[0], "path " + path);
  EXPECT_THAT(left[1], HasSubstr("sleep 60; : " + path));

  ASSERT_TRUE(sleeper->terminate(absl::Seconds(5)).ok());
  dir.reset();
  EXPECT_THAT(findLeftovers(traces), IsEmpty());
}

}  // namespace
}  // namespace flotilla::testing
