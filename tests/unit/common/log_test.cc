// Tests of the logging wrapper: line format with component and object tags, levels, and rate
// limiting with an injected clock.
#include "common/log.h"

#include <fstream>
#include <sstream>

#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"

namespace flotilla {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(initLogging({.level = LogLevel::kInfo, .file = dir_.file("test.log")}).ok());
  }
  void TearDown() override { ASSERT_TRUE(initLogging({}).ok()); }  // back to stderr

  std::string logged() {
    flushLogs();
    return readFile(dir_.file("test.log"));
  }

  testing::TempDir dir_;
};

TEST_F(LogTest, LinesCarryTimestampLevelComponentAndTags) {
  Logger log = Logger("vmm").with("vm", "web1").with("vcpu", "0");
  log.info("paused in {}ms", 2);
  log.warn("note with \"quotes\"");
  Logger quoted = Logger("agent").with("path", "a b");
  quoted.error("x");
  std::string text = logged();
  EXPECT_THAT(
      text,
      ContainsRegex(
          "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}[+-][0-9]{2}:[0-9]{2} "
          "I vmm vm=web1 vcpu=0: paused in 2ms"));
  EXPECT_THAT(text, HasSubstr(" W vmm vm=web1 vcpu=0: note with \"quotes\""));
  EXPECT_THAT(text, HasSubstr(" E agent path=\"a b\": x"));
}

TEST_F(LogTest, LinesBelowTheLevelAreDropped) {
  Logger log("controller");
  EXPECT_FALSE(log.enabled(LogLevel::kDebug));
  log.debug("hidden {}", 1);
  log.info("shown");
  std::string text = logged();
  EXPECT_THAT(text, Not(HasSubstr("hidden")));
  EXPECT_THAT(text, HasSubstr("shown"));
}

TEST_F(LogTest, RateLimiterAllowsABurstPerPeriodAndCountsTheRest) {
  FakeClock clock;
  LogRateLimiter limiter(clock, /*burst=*/2, absl::Seconds(1));
  Logger log("vmm");
  for (int i = 0; i < 5; ++i) log.limited(limiter, LogLevel::kWarn, "guest fault {}", i);
  clock.advance(absl::Seconds(1));
  log.limited(limiter, LogLevel::kWarn, "guest fault {}", 5);
  std::string text = logged();
  EXPECT_THAT(text, HasSubstr("guest fault 0\n"));
  EXPECT_THAT(text, HasSubstr("guest fault 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("guest fault 2")));
  EXPECT_THAT(text, Not(HasSubstr("guest fault 4")));
  EXPECT_THAT(text, HasSubstr("guest fault 5 (3 similar lines suppressed)"));
}

TEST(LogLevelTest, ParsesNamesAndRejectsOthersWithTheChoices) {
  EXPECT_EQ(*parseLogLevel("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(*parseLogLevel("warning"), LogLevel::kWarn);
  auto bad = parseLogLevel("verbose");
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_THAT(bad.status().message(), HasSubstr("'verbose': use debug, info, warn or error"));
}

TEST(LogInitTest, UnwritableLogFileIsAClearError) {
  absl::Status status = initLogging({.file = "/dev/null/x.log"});
  EXPECT_TRUE(absl::IsFailedPrecondition(status));
  EXPECT_THAT(status.message(), HasSubstr("/dev/null/x.log"));
}

}  // namespace
}  // namespace flotilla
