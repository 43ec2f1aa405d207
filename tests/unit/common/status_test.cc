// Tests of the status helpers and macros.
#include "common/status.h"

#include <cerrno>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla {
namespace {

using ::testing::HasSubstr;

absl::Status failsWhen(bool fail) {
  return fail ? absl::NotFoundError("no such vm") : absl::OkStatus();
}

absl::StatusOr<int> valueOrError(bool fail) {
  if (fail) return absl::InvalidArgumentError("bad");
  return 7;
}

absl::Status useReturnIfError(bool fail, int* reached) {
  RETURN_IF_ERROR(failsWhen(fail));
  *reached = 1;
  return absl::OkStatus();
}

absl::StatusOr<int> useAssignOrReturn(bool fail) {
  ASSIGN_OR_RETURN(int value, valueOrError(fail));
  ASSIGN_OR_RETURN(const int doubled, absl::StatusOr<int>(value * 2));
  return doubled + 1;
}

TEST(StatusTest, ReturnIfErrorReturnsEarlyOnlyOnError) {
  int reached = 0;
  EXPECT_TRUE(absl::IsNotFound(useReturnIfError(true, &reached)));
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(useReturnIfError(false, &reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(StatusTest, AssignOrReturnMovesTheValueOrReturnsTheError) {
  EXPECT_EQ(*useAssignOrReturn(false), 15);
  absl::StatusOr<int> failed = useAssignOrReturn(true);
  EXPECT_TRUE(absl::IsInvalidArgument(failed.status()));
  EXPECT_EQ(failed.status().message(), "bad");
}

TEST(StatusTest, ErrnoStatusMapsTheCodeAndNamesTheOperation) {
  absl::Status status = errnoStatus(ENOENT, "open /dev/kvm");
  EXPECT_TRUE(absl::IsNotFound(status));
  EXPECT_THAT(status.message(), HasSubstr("open /dev/kvm"));
  EXPECT_THAT(status.message(), HasSubstr("No such file or directory"));
  EXPECT_TRUE(absl::IsPermissionDenied(errnoStatus(EACCES, "x")));
  EXPECT_TRUE(absl::IsAlreadyExists(errnoStatus(EEXIST, "x")));
}

TEST(StatusTest, AnnotatePrefixesTheMessageAndKeepsTheCode) {
  absl::Status status = annotate(absl::NotFoundError("no such file"), "loading agent.yaml");
  EXPECT_TRUE(absl::IsNotFound(status));
  EXPECT_EQ(status.message(), "loading agent.yaml: no such file");
  EXPECT_TRUE(annotate(absl::OkStatus(), "anything").ok());
}

TEST(StatusTest, FmtFormatsStatusAndAbslStringView) {
  EXPECT_EQ(fmt::format("{}", absl::NotFoundError("gone")), "NOT_FOUND: gone");
  absl::Status status = absl::InternalError("boom");
  EXPECT_EQ(fmt::format("[{}]", status.message()), "[boom]");
}

}  // namespace
}  // namespace flotilla
