// Tests of the fencing keys and the opener's plan (storage/iscsi_fencing.h): the key layout,
// keys that are not Flotilla's, newer generations refusing, older ones preempted once each.
#include "storage/iscsi_fencing.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::storage {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

uint64_t keyOf(uint64_t generation) {
  absl::StatusOr<uint64_t> key = fencingKey(generation);
  EXPECT_TRUE(key.ok()) << key.status();
  return key.value_or(0);
}

TEST(FencingKeyTest, TagInTheHighHalfGenerationPlusOneInTheLow) {
  EXPECT_EQ(keyOf(0), 0x464c4f5400000001ull);
  EXPECT_EQ(keyOf(41), 0x464c4f540000002aull);
  EXPECT_EQ(keyOf(kMaxFencingGeneration), 0x464c4f54ffffffffull);
}

TEST(FencingKeyTest, GenerationsPastTheLowHalfAreRefused) {
  absl::StatusOr<uint64_t> key = fencingKey(kMaxFencingGeneration + 1);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(key.status().message(), HasSubstr("4294967295"));
}

TEST(FencingKeyTest, GenerationOfAKeyRoundTrips) {
  for (uint64_t generation : {uint64_t{0}, uint64_t{1}, uint64_t{7}, kMaxFencingGeneration}) {
    EXPECT_EQ(fencingGeneration(keyOf(generation)), generation);
  }
}

TEST(FencingKeyTest, OtherInitiatorsKeysAreNotGenerations) {
  EXPECT_EQ(fencingGeneration(0), std::nullopt);
  EXPECT_EQ(fencingGeneration(0x1234), std::nullopt);
  EXPECT_EQ(fencingGeneration(0x464c4f5500000002ull), std::nullopt);  // another tag
  EXPECT_EQ(fencingGeneration(0x464c4f5400000000ull), std::nullopt);  // low half 0: not ours
}

TEST(PlanFencingTest, AnEmptyLunIsTakenWithNothingToPreempt) {
  FencingPlan plan = planFencing({}, 3);
  EXPECT_EQ(plan.newer_generation, std::nullopt);
  EXPECT_THAT(plan.preempt, IsEmpty());
}

TEST(PlanFencingTest, TheSameGenerationIsLeftRegistered) {
  // The live-migration case: source and target register the same key.
  std::vector<uint64_t> keys = {keyOf(2), keyOf(2)};
  FencingPlan plan = planFencing(keys, 2);
  EXPECT_EQ(plan.newer_generation, std::nullopt);
  EXPECT_THAT(plan.preempt, IsEmpty());
}

TEST(PlanFencingTest, OlderGenerationsArePreemptedOnceEachOldestFirst) {
  std::vector<uint64_t> keys = {keyOf(3), keyOf(1), keyOf(4), keyOf(1), keyOf(0), keyOf(3)};
  FencingPlan plan = planFencing(keys, 4);
  EXPECT_EQ(plan.newer_generation, std::nullopt);
  EXPECT_THAT(plan.preempt, ElementsAre(keyOf(0), keyOf(1), keyOf(3)));
}

TEST(PlanFencingTest, ANewerGenerationRefusesAndTakesNothing) {
  std::vector<uint64_t> keys = {keyOf(0), keyOf(5), keyOf(2), keyOf(6)};
  FencingPlan plan = planFencing(keys, 2);
  EXPECT_EQ(plan.newer_generation, 6u);
  EXPECT_THAT(plan.preempt, IsEmpty());
}

TEST(PlanFencingTest, KeysThatAreNotFlotillasAreIgnored) {
  std::vector<uint64_t> keys = {0x1234, keyOf(1), 0x464c4f5400000000ull, 0xffffffffffffffffull};
  FencingPlan plan = planFencing(keys, 2);
  EXPECT_EQ(plan.newer_generation, std::nullopt);
  EXPECT_THAT(plan.preempt, ElementsAre(keyOf(1)));
}

TEST(NewerGenerationErrorTest, NamesTheLunBothGenerationsAndWhatItMeans) {
  absl::Status status = newerGenerationError("iscsi://10.0.0.5:3260/iqn.x:web1/1", 1, 2);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("iscsi://10.0.0.5:3260/iqn.x:web1/1"));
  EXPECT_THAT(status.message(), HasSubstr("this VMM has generation 1"));
  EXPECT_THAT(status.message(),
              HasSubstr("this VM was restarted elsewhere as generation 2; this copy must not run"));
}

}  // namespace
}  // namespace flotilla::storage
