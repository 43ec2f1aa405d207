// nextGeneration: above the previous generation, and at least the Unix time in seconds.
#include "controller/model/cluster_view.h"
#include "gtest/gtest.h"

namespace flotilla::controller {
namespace {

TEST(GenerationTest, ANewVmStartsAtTheUnixTime) {
  EXPECT_EQ(nextGeneration(0, 1'795'000'000), 1'795'000'000u);
}

TEST(GenerationTest, ARestartComesAboveThePreviousGenerationWhateverTheClock) {
  EXPECT_EQ(nextGeneration(1'795'000'000, 1'795'000'100), 1'795'000'100u);
  // Twice in one second, or a replica whose clock is behind: still above.
  EXPECT_EQ(nextGeneration(1'795'000'100, 1'795'000'100), 1'795'000'101u);
  EXPECT_EQ(nextGeneration(1'795'000'100, 1'700'000'000), 1'795'000'101u);
  // A VM from before generations followed the clock.
  EXPECT_EQ(nextGeneration(1, 1'795'000'000), 1'795'000'000u);
}

TEST(GenerationTest, AVmCreatedLaterWithTheSameVolumeComesAboveItsHaRestarts) {
  const uint64_t created = nextGeneration(0, 1'795'000'000);
  const uint64_t restarted = nextGeneration(created, 1'795'000'000);  // HA, the same second
  const uint64_t recreated = nextGeneration(0, 1'795'000'060);        // deleted, created again
  EXPECT_GT(restarted, created);
  EXPECT_GT(recreated, restarted);
}

}  // namespace
}  // namespace flotilla::controller
