// Tests of strong ids and object name validation.
#include "common/ids.h"

#include <unordered_set>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla {
namespace {

using ::testing::HasSubstr;

static_assert(!std::is_convertible_v<VmId, HostId>, "ids of different kinds do not mix");
static_assert(!std::is_convertible_v<std::string, VmId>, "ids are constructed explicitly");

TEST(IdsTest, StrongIdsCompareHashAndFormatLikeTheirValue) {
  VmId a("web-1");
  VmId b("web-2");
  EXPECT_LT(a, b);
  EXPECT_EQ(a, VmId("web-1"));
  EXPECT_EQ(fmt::format("vm={}", a), "vm=web-1");
  EXPECT_EQ(fmt::format("vcpu={}", VcpuIndex(3)), "vcpu=3");

  absl::flat_hash_set<VmId> absl_set = {a, b, VmId("web-1")};
  EXPECT_EQ(absl_set.size(), 2u);
  std::unordered_set<HostId> std_set = {HostId("h1"), HostId("h1")};
  EXPECT_EQ(std_set.size(), 1u);
}

TEST(IdsTest, ValidNamesAreDnsLabels) {
  for (const std::string& name :
       std::vector<std::string>{"a", "web-1", "0", "db01", std::string(63, 'x')}) {
    EXPECT_TRUE(validateName("vm", name).ok()) << name;
  }
}

TEST(IdsTest, InvalidNamesGetAnErrorNamingTheObjectAndTheRule) {
  struct Case {
    std::string name;
    const char* why;
  };
  for (const Case& c :
       {Case{"", "it is empty"}, Case{"Web", "other than [a-z0-9-]"},
        Case{"web_1", "other than [a-z0-9-]"}, Case{"-web", "starts or ends"},
        Case{"web-", "starts or ends"}, Case{std::string(64, 'x'), "it has 64 characters"},
        Case{"a b", "other than"}}) {
    absl::Status status = validateName("host", c.name);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.name;
    EXPECT_THAT(status.message(), HasSubstr("host name '" + c.name + "' is invalid"));
    EXPECT_THAT(status.message(), HasSubstr(c.why));
    EXPECT_THAT(status.message(), HasSubstr("lowercase letters, digits and '-'"));
  }
}

}  // namespace
}  // namespace flotilla
