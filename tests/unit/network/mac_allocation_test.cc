// Tests of deterministic MAC allocation: the documented scheme (prefix 02:f1 + SHA-256 of the
// seed, checked against values computed with sha256sum), the address bits, and probing on
// collisions.
#include "network/mac_allocation.h"

#include <set>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::network {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MacAllocationTest, DeterministicMacIsThePrefixAndTheSeedsSha256) {
  // printf %s vm-1/0 | sha256sum → e1cd616b...
  EXPECT_EQ(deterministicMac("vm-1/0").toString(), "02:f1:e1:cd:61:6b");
  // The empty seed: SHA-256("") = e3b0c442...
  EXPECT_EQ(deterministicMac("").toString(), "02:f1:e3:b0:c4:42");
  EXPECT_EQ(deterministicMac("vm-1/0"), deterministicMac(std::string("vm-1/") + "0"));
  EXPECT_NE(deterministicMac("vm-1/0"), deterministicMac("vm-1/1"));
}

TEST(MacAllocationTest, AddressesAreLocallyAdministeredUnicastWithThePrefix) {
  std::set<MacAddress> seen;
  for (int vm = 0; vm < 500; ++vm) {
    for (int nic = 0; nic < 2; ++nic) {
      const MacAddress mac = deterministicMac(fmt::format("vm-{}/{}", vm, nic));
      EXPECT_TRUE(mac.isUnicast()) << mac.toString();
      EXPECT_TRUE(mac.isLocallyAdministered()) << mac.toString();
      EXPECT_TRUE(isFlotillaMac(mac)) << mac.toString();
      EXPECT_EQ(mac.bytes()[0] & 0x0c, 0) << "SLAP quadrant AAI: " << mac.toString();
      seen.insert(mac);
    }
  }
  EXPECT_EQ(seen.size(), 1000u);  // 32 hash bits: no collision among these seeds
  EXPECT_FALSE(isFlotillaMac(*MacAddress::parse("52:54:00:12:34:56")));
  EXPECT_FALSE(isFlotillaMac(*MacAddress::parse("02:f2:00:00:00:01")));
}

TEST(MacAllocationTest, AllocateTakesTheSeedsOwnAddressWhenFree) {
  int asked = 0;
  auto mac = allocateMac("vm-1/0", [&](const MacAddress&) {
    ++asked;
    return false;
  });
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(*mac, deterministicMac("vm-1/0"));
  EXPECT_EQ(asked, 1);
}

TEST(MacAllocationTest, AllocateProbesSeedHashOneTwoOnCollision) {
  const std::set<MacAddress> taken = {deterministicMac("vm-1/0"), deterministicMac("vm-1/0#1")};
  std::vector<std::string> tried;
  auto mac = allocateMac(
      "vm-1/0",
      [&](const MacAddress& candidate) {
        tried.push_back(candidate.toString());
        return taken.count(candidate) != 0;
      },
      5);
  ASSERT_TRUE(mac.ok()) << mac.status();
  // printf %s 'vm-1/0#2' | sha256sum → b8319ac2...
  EXPECT_EQ(mac->toString(), "02:f1:b8:31:9a:c2");
  EXPECT_EQ(*mac, deterministicMac("vm-1/0#2"));
  EXPECT_THAT(tried, ElementsAre("02:f1:e1:cd:61:6b", "02:f1:e3:57:fd:3a", "02:f1:b8:31:9a:c2"));
}

TEST(MacAllocationTest, AllocateFailsClearlyWhenEveryCandidateIsTaken) {
  int asked = 0;
  auto mac = allocateMac(
      "vm-9/1",
      [&](const MacAddress&) {
        ++asked;
        return true;
      },
      3);
  ASSERT_FALSE(mac.ok());
  EXPECT_EQ(mac.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(asked, 3);
  EXPECT_THAT(mac.status().message(), HasSubstr("\"vm-9/1\""));
  EXPECT_THAT(mac.status().message(), HasSubstr("all 3 candidates (\"vm-9/1\" to \"vm-9/1#2\""));
  EXPECT_THAT(mac.status().message(), HasSubstr(deterministicMac("vm-9/1#2").toString()));
  EXPECT_THAT(mac.status().message(), HasSubstr("raise max_attempts"));

  auto single = allocateMac(
      "x", [](const MacAddress&) { return true; }, 1);
  EXPECT_THAT(single.status().message(), HasSubstr("all 1 candidates (\"x\", the last"));
}

TEST(MacAllocationTest, AllocateRejectsANonPositiveAttemptCount) {
  bool asked = false;
  auto mac = allocateMac(
      "vm-1/0",
      [&](const MacAddress&) {
        asked = true;
        return false;
      },
      0);
  ASSERT_FALSE(mac.ok());
  EXPECT_EQ(mac.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mac.status().message(), HasSubstr("max_attempts is 0"));
  EXPECT_FALSE(asked);
}

}  // namespace
}  // namespace flotilla::network
