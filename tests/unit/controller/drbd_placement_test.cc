// DRBD volumes in the controller (controller/api/drbd_placement.h): the lowest free minor and
// port from their bases, exhaustion, and the two hosts of a DRBD pool as their reports say.
#include "controller/api/drbd_placement.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::controller {
namespace {

using ::testing::HasSubstr;

TEST(DrbdPlacementTest, TakesTheLowestFreeMinorAndPort) {
  absl::StatusOr<v1::DrbdPlacement> first = allocateDrbdPlacement({}, {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->minor(), kDrbdFirstMinor);
  EXPECT_EQ(first->port(), kDrbdFirstPort);
  // A gap left by a deleted volume is reused; minors and ports are chosen independently.
  absl::StatusOr<v1::DrbdPlacement> next = allocateDrbdPlacement({100, 102}, {7789, 7790, 7791});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->minor(), 101u);
  EXPECT_EQ(next->port(), 7792u);
  // Numbers below the bases (resources made by hand) do not matter.
  EXPECT_EQ(allocateDrbdPlacement({1, 2, 3}, {7788}).value().minor(), 100u);
}

TEST(DrbdPlacementTest, SaysWhenNoPortIsLeft) {
  std::set<uint32_t> ports;
  for (uint32_t port = kDrbdFirstPort; port <= kDrbdLastPort; ++port) ports.insert(port);
  absl::Status full = allocateDrbdPlacement({}, ports).status();
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_THAT(full.message(), HasSubstr("no free DRBD port"));
  EXPECT_THAT(full.message(), HasSubstr("delete unused DRBD volumes"));
}

TEST(DrbdPlacementTest, ClaimKeys) {
  EXPECT_EQ(drbdMinorClaimKey(100), "/flotilla/v1/drbd-minors/100");
  EXPECT_EQ(drbdPortClaimKey(7789), "/flotilla/v1/drbd-ports/7789");
}

HostView reporting(const std::string& name, std::vector<std::string> pools) {
  HostView host;
  host.name = name;
  host.record.mutable_meta()->set_name(name);
  host.status.emplace();
  for (const std::string& pool : pools) host.status->mutable_inventory()->add_pools(pool);
  return host;
}

TEST(DrbdPlacementTest, ThePoolsTwoHostsAreTheOnesThatReportIt) {
  ClusterView view;
  view.hosts["a"] = reporting("a", {"local", "rep"});
  view.hosts["b"] = reporting("b", {"san"});
  EXPECT_THAT(drbdPoolHosts(view, "rep").status().message(),
              HasSubstr("needs its two hosts reporting it; hosts reporting it: a"));
  view.hosts["c"] = reporting("c", {"rep"});
  absl::StatusOr<std::array<const HostView*, 2>> hosts = drbdPoolHosts(view, "rep");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  EXPECT_EQ((*hosts)[0]->name, "a");
  EXPECT_EQ((*hosts)[1]->name, "c");
  view.hosts["c"].record.set_state(v1::HOST_STATE_UNREACHABLE);
  EXPECT_THAT(drbdPoolHosts(view, "rep").status().message(), HasSubstr("host c is not ready"));
  EXPECT_THAT(drbdPoolHosts(view, "none").status().message(), HasSubstr("no host reports it"));
}

}  // namespace
}  // namespace flotilla::controller
